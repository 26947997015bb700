import {redact, redactValue} from './redact.js'
import {writeAboveSpinner} from './progress.js'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent'
export type LogFormat = 'text' | 'json'

const LEVELS: Record<LogLevel, number> = {debug: 10, info: 20, warn: 30, error: 40, silent: 100}

/**
 * Structured log lines on stderr. JSON lines when there is no TTY (Argo, CronJobs collect them),
 * short text lines for a person at a terminal. stdout is reserved for the command's result.
 */
export class Logger {
  constructor(
    readonly level: LogLevel = 'info',
    readonly format: LogFormat = process.stderr.isTTY ? 'text' : 'json',
    private readonly write: (line: string) => void = (line) => writeAboveSpinner(line),
    private readonly bindings: Record<string, unknown> = {},
    /** Sees every warning (whatever the level), so --json can carry them as `warnings[]`. */
    private readonly onWarn?: (message: string) => void,
  ) {}

  child(bindings: Record<string, unknown>): Logger {
    return new Logger(this.level, this.format, this.write, {...this.bindings, ...bindings}, this.onWarn)
  }

  enabled(level: LogLevel): boolean {
    return LEVELS[level] >= LEVELS[this.level]
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.log('debug', msg, fields)
  }

  info(msg: string, fields?: Record<string, unknown>): void {
    this.log('info', msg, fields)
  }

  warn(msg: string, fields?: Record<string, unknown>): void {
    this.onWarn?.(redact(msg))
    this.log('warn', msg, fields)
  }

  error(msg: string, fields?: Record<string, unknown>): void {
    this.log('error', msg, fields)
  }

  private log(level: Exclude<LogLevel, 'silent'>, msg: string, fields: Record<string, unknown> = {}): void {
    if (!this.enabled(level)) return
    const all = redactValue({...this.bindings, ...fields})
    if (this.format === 'json') {
      this.write(JSON.stringify({ts: new Date().toISOString(), level, msg: redact(msg), ...all}) + '\n')
      return
    }
    const extra = Object.entries(all)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ')
    this.write(`${level === 'info' ? '' : `${level}: `}${redact(msg)}${extra ? ` ${extra}` : ''}\n`)
  }
}

/** A logger that writes nothing; for library code called without one. */
export const silentLogger = new Logger('silent', 'json', () => {})

/**
 * Node prints process warnings (the AWS SDK's multi-line Node-version notice, MaxListenersExceededWarning,
 * experimental-feature notes) straight to stderr, between regops' own lines and outside its JSON log
 * format. They are for whoever maintains regops, not for the operator: below --log-level debug they are
 * dropped, at debug they become debug log lines. regops' own (type RegopsWarning) are always warnings.
 */
export function routeProcessWarnings(logger: Logger): void {
  process.removeAllListeners('warning')
  process.on('warning', (warning) => {
    // regops' own warnings (an insecure TLS opt-out) are for the operator: always a warn line and a --json warning.
    if (warning.name === 'RegopsWarning') return logger.warn(warning.message)
    if (logger.enabled('debug'))
      logger.debug(`${warning.name}: ${warning.message}`, {code: (warning as {code?: string}).code})
  })
}
