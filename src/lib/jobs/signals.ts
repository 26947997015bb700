import {setMaxListeners} from 'node:events'
import type {TimeBox} from './time-box.js'

export type StopSignal = 'SIGINT' | 'SIGTERM'

/** The abort reason when a signal stops a job: it names the signal, so no one has to read it from a message. */
export class SignalReceived extends Error {
  constructor(readonly signal: StopSignal) {
    super(`interrupted by ${signal}`)
    this.name = 'SignalReceived'
  }
}

/** What ended a time-boxed run: its --max-duration, or the end of its --window. */
export type TimeBoxLimit = 'max-duration' | 'window'

/**
 * The abort reason when a run reaches the end of its time box. Not a signal: the job checkpoints and
 * stops as on SIGTERM, but the run is partial and resumable (exit 3), not interrupted (143).
 */
export class TimeBoxReached extends Error {
  constructor(
    readonly stoppedBy: TimeBoxLimit,
    readonly limit: string,
  ) {
    super(`stopped at the end of its ${stoppedBy === 'window' ? `--window ${limit}` : `--max-duration ${limit}`}`)
    this.name = 'TimeBoxReached'
  }
}

/** The time box that aborted `signal`, if that is what aborted it. */
export function timeBoxOf(signal: AbortSignal | undefined): TimeBoxReached | undefined {
  return signal?.aborted && signal.reason instanceof TimeBoxReached ? signal.reason : undefined
}

/**
 * The signal that aborted `signal`, if a signal did (a caller's own AbortController counts as SIGINT).
 * A time box is not a signal: see timeBoxOf.
 */
export function stopSignalOf(signal: AbortSignal | undefined): StopSignal | undefined {
  if (!signal?.aborted || signal.reason instanceof TimeBoxReached) return undefined
  return signal.reason instanceof SignalReceived ? signal.reason.signal : 'SIGINT'
}

export interface Interruptible {
  signal: AbortSignal
  received(): StopSignal | undefined
  dispose(): void
}

/**
 * SIGINT/SIGTERM abort the signal instead of killing the process, so the job saves its checkpoint
 * and exits 130/143. A second signal kills at once.
 */
export function interruptOnSignals(timeBox?: TimeBox): Interruptible {
  const controller = new AbortController()
  let received: StopSignal | undefined
  const handler = (sig: StopSignal) => {
    if (received) process.exit(sig === 'SIGINT' ? 130 : 143)
    received = sig
    controller.abort(new SignalReceived(sig))
  }
  // The end of the time box aborts the same signal every job body already honours, with its own reason.
  const timer = timeBox
    ? setTimeout(
        () => controller.abort(new TimeBoxReached(timeBox.stoppedBy, timeBox.limit)),
        Math.max(0, timeBox.deadline.getTime() - Date.now()),
      )
    : undefined
  timer?.unref()
  const onInt = () => handler('SIGINT')
  const onTerm = () => handler('SIGTERM')
  process.on('SIGINT', onInt)
  process.on('SIGTERM', onTerm)
  return {
    signal: controller.signal,
    received: () => received,
    dispose() {
      clearTimeout(timer)
      process.off('SIGINT', onInt)
      process.off('SIGTERM', onTerm)
    },
  }
}

/**
 * Requests in flight each add an abort listener to the signal they are given (undici and the SDK do), so a
 * signal shared by a job's requests passes Node's leak-warning threshold of 10 without any leak. The bound
 * stays finite, above 3 phases x the 1024 concurrency cap.
 */
export const REQUEST_LISTENERS_PER_SIGNAL = 4096

/** AbortSignal.any for a signal that requests in flight share (see REQUEST_LISTENERS_PER_SIGNAL). */
export function anySignal(signals: AbortSignal[]): AbortSignal {
  const signal = AbortSignal.any(signals)
  setMaxListeners(REQUEST_LISTENERS_PER_SIGNAL, signal)
  return signal
}
