import {ExitCode, RefusedError, RegopsError, UsageError} from '../errors.js'
import {formatDurationSpec} from '../config/duration.js'
import type {TimeBoxLimit} from './signals.js'

/** A daily window in UTC, minutes after midnight; `end` below `start` crosses midnight (22:00-04:00). */
export interface DailyWindow {
  start: number
  end: number
  /** as the operator wrote it, for messages: '01:00-05:00' */
  text: string
}

/** When a run must stop, and which limit that is. */
export interface TimeBox {
  deadline: Date
  stoppedBy: TimeBoxLimit
  /** the limit as stated ('4h', '01:00-05:00'), for the stop message */
  limit: string
}

const MINUTE_MS = 60_000
const DAY_MINUTES = 24 * 60
// setTimeout fires at once beyond 2^31-1 ms (24.8 days): a longer box would stop the job on its first tick.
const LONGEST_TIMER_MS = 2 ** 31 - 1

/** Parses '01:00-05:00' (UTC, 24-hour clock; crossing midnight allowed, an empty window is not). */
export function parseWindow(input: string): DailyWindow {
  const match = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$/.exec(input.trim())
  const start = match ? Number(match[1]) * 60 + Number(match[2]) : NaN
  const end = match ? (Number(match[3]) * 60 + Number(match[4])) % DAY_MINUTES : NaN
  if (!match || (match[3] === '24' && match[4] !== '00'))
    throw new UsageError(`invalid --window '${input}': HH:MM-HH:MM in UTC, e.g. 01:00-05:00 or 22:00-04:00`)
  if (start === end) throw new UsageError(`invalid --window '${input}': it starts where it ends`)
  return {start, end, text: input.trim()}
}

/** The instant `minutes` after the UTC midnight of `day`, `plusDays` days on. */
function atMinute(day: Date, minutes: number, plusDays = 0): Date {
  const midnight = Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate())
  return new Date(midnight + plusDays * DAY_MINUTES * MINUTE_MS + minutes * MINUTE_MS)
}

/** The end of the window occurrence that `now` falls in, or undefined when `now` is outside the window. */
export function windowEnd(window: DailyWindow, now: Date): Date | undefined {
  const minute =
    now.getUTCHours() * 60 + now.getUTCMinutes() + now.getUTCSeconds() / 60 + now.getUTCMilliseconds() / 60_000
  if (window.start < window.end)
    return minute >= window.start && minute < window.end ? atMinute(now, window.end) : undefined
  if (minute >= window.start) return atMinute(now, window.end, 1)
  if (minute < window.end) return atMinute(now, window.end)
  return undefined
}

/** When the window next opens after `now` (today's start if still ahead, else tomorrow's). */
export function nextOpening(window: DailyWindow, now: Date): Date {
  const today = atMinute(now, window.start)
  return today.getTime() > now.getTime() ? today : atMinute(now, window.start, 1)
}

/**
 * The time box of a run started at `now`: the earlier of `now + maxDuration` and the end of the current
 * window. Outside the window the run is refused before anything is done, saying when the window opens.
 */
export function resolveTimeBox(
  limits: {maxDuration?: {ms: number; text: string}; window?: DailyWindow},
  now: Date = new Date(),
): TimeBox | undefined {
  const boxes: TimeBox[] = []
  if (limits.maxDuration) {
    if (limits.maxDuration.ms <= 0) throw new UsageError('--max-duration must be more than 0')
    if (limits.maxDuration.ms > LONGEST_TIMER_MS)
      throw new UsageError(`--max-duration ${limits.maxDuration.text} is longer than the longest supported, 24d`)
    boxes.push({
      deadline: new Date(now.getTime() + limits.maxDuration.ms),
      stoppedBy: 'max-duration',
      limit: limits.maxDuration.text,
    })
  }
  if (limits.window) {
    const end = windowEnd(limits.window, now)
    if (!end) {
      const opens = nextOpening(limits.window, now)
      throw new RefusedError(
        `outside the window ${limits.window.text} UTC: it opens at ${opens.toISOString()} (in ${formatDurationSpec(Math.ceil((opens.getTime() - now.getTime()) / MINUTE_MS) * MINUTE_MS)})`,
        {
          code: 'OUTSIDE_WINDOW',
          hint: 'start it inside the window, or leave out --window',
          details: {window: limits.window.text, opensAt: opens.toISOString()},
        },
      )
    }
    boxes.push({deadline: end, stoppedBy: 'window', limit: `${limits.window.text} UTC`})
  }
  return boxes.sort((a, b) => a.deadline.getTime() - b.deadline.getTime())[0]
}

/**
 * A run stopped at the end of its time box after saving its checkpoint: partial and resumable (exit 3),
 * and `stoppedBy` says which limit ended it.
 */
export class TimeBoxError extends RegopsError {
  readonly stoppedBy: TimeBoxLimit
  constructor(reached: {stoppedBy: TimeBoxLimit; limit: string; message: string}, job?: {id: string; key?: string}) {
    super(`${reached.message}${job ? `; job ${job.id} checkpointed` : ''}`, ExitCode.Partial, {
      code: 'TIME_BOX',
      hint: job
        ? `resume it with ${job.key ? `the same --job-key ${job.key}` : `--resume ${job.id}`}`
        : 'this run kept no job (no database): run it again',
      details: {stoppedBy: reached.stoppedBy, limit: reached.limit, jobId: job?.id},
    })
    this.stoppedBy = reached.stoppedBy
  }
}
