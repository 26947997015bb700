import type {Ora} from 'ora'
import type {Logger} from './logger.js'

/**
 * A progress line: an ora spinner on a TTY (stderr), otherwise a log line every `intervalMs`
 * so that a job in a pod still says it is alive.
 */
export interface Progress {
  /**
   * `fields` are the same figures as data (phase, counters): a JSON log line carries them as fields
   * under the progress label, so that a log query reads numbers rather than parsing `msg`.
   */
  update(text: string, fields?: Record<string, unknown>): void
  succeed(text: string): void
  fail(text: string): void
  stop(): void
}

let active: Ora | undefined

/**
 * ora (with chalk, cli-spinners and string-width's tables) adds 12 MiB of RSS and its load time to
 * every command; only a terminal shows a spinner, so only a terminal loads it.
 */
const ora = process.stderr.isTTY ? (await import('ora')).default : undefined

/** Writes a line to stderr without tearing the spinner: clear it, write, draw it again. */
export function writeAboveSpinner(line: string): void {
  if (!active?.isSpinning) {
    process.stderr.write(line)
    return
  }
  active.clear()
  process.stderr.write(line)
  active.render()
}

export function startProgress(
  text: string,
  logger: Logger,
  opts: {enabled?: boolean; intervalMs?: number} = {},
): Progress {
  // A terminal that reports no width (a bare pty) makes ora's line arithmetic loop: no spinner there.
  const tty = Boolean(process.stderr.isTTY) && (process.stderr.columns ?? 0) > 0 && opts.enabled !== false
  if (tty && ora) {
    // discardStdin off: ora would put stdin in raw mode to swallow keys, which spins on a closed stdin.
    const spinner: Ora = ora({text, stream: process.stderr, discardStdin: false}).start()
    active = spinner
    const done = (fn: () => void) => {
      fn()
      if (active === spinner) active = undefined
    }
    return {
      update: (t) => {
        spinner.text = t
      },
      succeed: (t) => done(() => spinner.succeed(t)),
      fail: (t) => done(() => spinner.fail(t)),
      stop: () => done(() => spinner.stop()),
    }
  }
  const interval = opts.intervalMs ?? 10_000
  let last = 0
  const label = text
  return {
    update(t, fields) {
      const now = Date.now()
      if (now - last < interval) return
      last = now
      if (fields && logger.format === 'json') logger.info(label, {progress: true, ...fields})
      else logger.info(t, {progress: true})
    },
    succeed: (t) => logger.debug(t),
    fail: (t) => logger.warn(t),
    stop() {},
  }
}
