import ora, {type Ora} from 'ora'
import type {Logger} from './logger.js'

/**
 * A progress line: an ora spinner on a TTY (stderr), otherwise a log line every `intervalMs`
 * so that a job in a pod still says it is alive.
 */
export interface Progress {
  update(text: string): void
  succeed(text: string): void
  fail(text: string): void
  stop(): void
}

export function startProgress(text: string, logger: Logger, opts: {enabled?: boolean; intervalMs?: number} = {}): Progress {
  const tty = Boolean(process.stderr.isTTY) && opts.enabled !== false
  if (tty) {
    const spinner: Ora = ora({text, stream: process.stderr}).start()
    return {
      update: (t) => {
        spinner.text = t
      },
      succeed: (t) => spinner.succeed(t),
      fail: (t) => spinner.fail(t),
      stop: () => spinner.stop(),
    }
  }
  const interval = opts.intervalMs ?? 10_000
  let last = 0
  let current = text
  return {
    update(t) {
      current = t
      const now = Date.now()
      if (now - last >= interval) {
        last = now
        logger.info(current, {progress: true})
      }
    },
    succeed: (t) => logger.debug(t),
    fail: (t) => logger.warn(t),
    stop() {},
  }
}
