import {Flags, type Interfaces} from '@oclif/core'

type OptionFlag<T> = Interfaces.OptionFlag<T>
import {UsageError} from './lib/errors.js'
import {formatDurationSpec, parseDuration, parseSize} from './lib/config/duration.js'
import {parseWindow, type DailyWindow} from './lib/jobs/time-box.js'
import type {RequestRateOptions} from './lib/storage/index.js'

/**
 * Flag definitions shared by commands. Each parses and refuses its own input, so a command's run()
 * receives values that are already valid (milliseconds, bytes, a shard) and never re-checks them.
 */

/** A duration as understood: milliseconds, and the canonical spelling to echo back to the operator. */
export interface Duration {
  ms: number
  text: string
}

export function duration(ms: number): Duration {
  return {ms, text: formatDurationSpec(ms)}
}

interface DurationFlagOptions {
  summary: string
  default?: string
  /**
   * Values below this need --force. The command must declare a boolean `force` flag; the base
   * command enforces the guard after parsing, for every duration flag, so it is written once.
   */
  unsafeBelow?: string
  /** Why a value below unsafeBelow is dangerous, for the refusal message. */
  unsafeBecause?: string
  env?: string
  exclusive?: string[]
}

/** The guard a duration flag carries; read by the base command after parsing. */
export interface UnsafeBelow {
  ms: number
  text: string
  because: string
}

// The flag types oclif infers for a custom flag with and without a default (Duration vs Duration | undefined).
const defaulted = () => Flags.custom<Duration>({})({default: duration(0)})
export function durationFlag(options: DurationFlagOptions & {default: string}): ReturnType<typeof defaulted>
export function durationFlag(options: DurationFlagOptions): OptionFlag<Duration | undefined>
export function durationFlag(options: DurationFlagOptions): OptionFlag<Duration | undefined> {
  const unsafeBelow: UnsafeBelow | undefined = options.unsafeBelow
    ? {
        ms: parseDuration(options.unsafeBelow),
        text: options.unsafeBelow,
        because: options.unsafeBecause ?? 'it is unsafe',
      }
    : undefined
  const flag = Flags.custom<Duration>({
    summary: options.summary,
    helpValue: '<duration>',
    env: options.env,
    exclusive: options.exclusive,
    parse: async (input, context) => duration(parseDuration(input, `--${flagNameOf(context)}`)),
  })(
    options.default === undefined
      ? {}
      : {default: duration(parseDuration(options.default)), defaultHelp: async () => options.default},
  )
  // Read back by the base command after parsing (see RegopsCommand.refuseUnsafeDurations).
  return Object.assign(flag, {unsafeBelow}) as OptionFlag<Duration | undefined>
}

function flagNameOf(context: unknown): string {
  const token = (context as {token?: {flag?: string}})?.token
  return token?.flag ?? 'duration'
}

/** A size in bytes: '500GiB', '2TB', or a plain number of bytes. */
export const sizeFlag = Flags.custom<number>({
  helpValue: '<size>',
  parse: async (input, context) => parseSize(input, `--${flagNameOf(context)}`),
})

/** `--shard i/n`: worker i of n (0-based), each taking a contiguous range of the 256 digest prefixes. */
export const shardFlag = Flags.custom<{index: number; count: number}>({
  summary:
    'Run as worker i of n (0-based, e.g. 2/8); each worker takes its own range of digest prefixes or repositories.',
  helpValue: 'i/n',
  parse: async (input) => {
    const match = /^(\d+)\/(\d+)$/.exec(input)
    const index = Number(match?.[1])
    const count = Number(match?.[2])
    if (!match || count < 1 || count > 256 || index >= count) {
      throw new UsageError(`invalid --shard '${input}': i/n with 0 <= i < n <= 256, e.g. 0/4`)
    }
    return {index, count}
  },
})

/** One definition, so every command reads the same environment variable. */
export const databaseUrlFlag = Flags.string({
  summary: 'PostgreSQL URL (overrides database.url in the config and DATABASE_URL).',
  env: 'REGOPS_DATABASE_URL',
  helpValue: '<url>',
})

export const regionFlag = Flags.string({
  summary: 'Region to act on (default: primary).',
  char: 'r',
  helpValue: '<name>',
})

/**
 * `--dry-run` where dry-run is already the default: runbooks write it out, and `import` and
 * `db migrate` take it, so refusing it here was a trap. It cannot be combined with the acting flags.
 */
export function dryRunFlag(acting: string[]) {
  return Flags.boolean({
    summary: `Report only; change nothing (the default unless ${acting.map((a) => `--${a}`).join(' or ')}).`,
    exclusive: acting,
  })
}

/**
 * How fast a long job talks to storage: by default an adaptive limit per region that grows while round
 * trips stay near their best and shrinks on 503 SlowDown and latency growth; `--concurrency` pins it.
 * `inFlight` names what --concurrency counts for the command ('Re-hashes and copies in flight'): the
 * flag keeps the meaning it had where it existed before, now with an adaptive default.
 */
export function requestRateFlags(inFlight = 'Storage requests in flight') {
  return {
    concurrency: Flags.integer({
      summary: `${inFlight}, fixed (default: adaptive, up to --max-concurrency).`,
      min: 1,
      max: 1024,
      exclusive: ['max-concurrency'],
    }),
    'max-concurrency': Flags.integer({
      summary: "Ceiling of the adaptive request limit (default: the region's concurrency, 64 on S3).",
      min: 1,
      max: 1024,
    }),
    'tps-limit': Flags.integer({summary: 'Storage requests started per second, at most (default: no cap).', min: 1}),
  }
}

/** Every long-running command takes both; the base command writes and pushes on every exit. */
export const metricsFlags = {
  'metrics-file': Flags.string({
    summary: 'Write Prometheus metrics (textfile collector format) here, atomically, on every exit.',
    helpValue: '<file>',
  }),
  pushgateway: Flags.string({
    summary: 'Push the same metrics to this Prometheus Pushgateway on every exit; a failed push is only a warning.',
    helpValue: '<url>',
    env: 'REGOPS_PUSHGATEWAY',
    parse: async (input) => {
      if (!/^https?:\/\/[^/]/.test(input)) throw new UsageError(`invalid --pushgateway '${input}': an http(s) URL`)
      return input
    },
  }),
}

/**
 * The flags of every long job (import, sweep blobs, audit regions, audit integrity, replicate): a key
 * that makes a re-run (an Argo retry) continue the same job, and a time box that checkpoints and stops
 * it cleanly (exit 3, resumable). The base command and the job runner act on them, once for all commands.
 */
export const jobControlFlags = {
  'job-key': Flags.string({
    summary:
      'Name the job: a re-run with the same key resumes it, or returns its result when it is done (e.g. {{workflow.name}}-3).',
    helpValue: '<key>',
    exclusive: ['resume'],
  }),
  'max-duration': durationFlag({
    summary: 'Checkpoint and stop after this long (exit 3, resumable), e.g. 4h.',
  }),
  window: Flags.custom<DailyWindow>({
    summary:
      'Run only inside this daily UTC window (HH:MM-HH:MM, may cross midnight): refused outside it (exit 4), checkpoints and stops at its end (exit 3).',
    helpValue: 'HH:MM-HH:MM',
    parse: async (input) => parseWindow(input),
  })(),
}

/**
 * `--fail-on never`: a scheduled dry-run that finds something exits 0 instead of 1, so it does not fail
 * its workflow step; the base command applies it to the formatter's exit code. 2, 3, 4 and 70 are unaffected.
 */
export const failOnFlag = Flags.option({
  options: ['findings', 'never'] as const,
  default: 'findings' as const,
  summary: 'Exit 1 when something is found (findings, the default), or 0 (never); errors keep their codes.',
})

/**
 * A job id as `regops jobs list` shows it (a bigint). Checked at parse time, so anything else is a usage
 * error naming the value, never a failed bigint cast in the database reported as an internal error.
 */
export const jobIdFlag = Flags.custom<string>({
  helpValue: 'ID',
  parse: async (input) => {
    if (!/^\d{1,18}$/.test(input))
      throw new UsageError(`invalid job id '${input}': a number, as shown by 'regops jobs list'`)
    return input
  },
})
/** The request rates stated by requestRateFlags(), for applyRequestRates() and requestsToQueue(). */
export function requestRatesOf(flags: {
  concurrency?: number
  'max-concurrency'?: number
  'tps-limit'?: number
}): RequestRateOptions {
  return {concurrency: flags.concurrency, maxConcurrency: flags['max-concurrency'], tpsLimit: flags['tps-limit']}
}
