/**
 * One error hierarchy for the whole tool. Every error a user can see carries the exit code
 * of the documented table (README, "Output and exit codes"), so the base command maps errors to codes in one place.
 */
export const ExitCode = {
  /** done, and clean */
  Ok: 0,
  /** done, and it found something: orphans in dry-run, drift, a threshold breached */
  Found: 1,
  /** usage or configuration error: nothing was done */
  Usage: 2,
  /** partial: some objects failed and were recorded; the job can be resumed */
  Partial: 3,
  /** refused: a precondition failed (lock held, schema not current, unsafe settings) */
  Refused: 4,
  /** internal error: a bug in regops (sysexits EX_SOFTWARE); a running job can be resumed */
  Internal: 70,
  /** interrupted by SIGINT after saving a checkpoint */
  Interrupted: 130,
  /** interrupted by SIGTERM after saving a checkpoint */
  Terminated: 143,
} as const
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

export const EXIT_CODE_TABLE: ReadonlyArray<readonly [number, string]> = [
  [ExitCode.Ok, 'done, and clean'],
  [ExitCode.Found, 'done, and it found something: orphans found in dry-run, drift, a threshold breached'],
  [ExitCode.Usage, 'usage or configuration error: nothing was done'],
  [ExitCode.Partial, 'partial: some objects failed and were recorded; the job can be resumed'],
  [ExitCode.Refused, 'refused: a precondition failed (lock held, schema not current, unsafe settings)'],
  [ExitCode.Internal, 'internal error: a bug in regops; the job, if one was running, can be resumed'],
  [ExitCode.Interrupted, 'interrupted by SIGINT after saving a checkpoint'],
  [ExitCode.Terminated, 'interrupted by SIGTERM after saving a checkpoint'],
]

export interface RegopsErrorOptions {
  /** machine-readable code, e.g. CONFIG_INVALID */
  code?: string
  /** what the operator can do next */
  hint?: string
  cause?: unknown
  /** structured detail for --json (never secrets) */
  details?: Record<string, unknown>
}

export class RegopsError extends Error {
  readonly exitCode: number
  readonly code: string
  readonly hint?: string
  readonly details?: Record<string, unknown>

  constructor(message: string, exitCode: number, options: RegopsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = new.target.name
    this.exitCode = exitCode
    this.code = options.code ?? 'REGOPS_ERROR'
    this.hint = options.hint
    this.details = options.details
  }
}

/** Bad flags or arguments. Nothing was done. */
export class UsageError extends RegopsError {
  constructor(message: string, options: RegopsErrorOptions = {}) {
    super(message, ExitCode.Usage, {code: 'USAGE', ...options})
  }
}

/** The configuration is malformed; names the field and, when known, the file and line. */
export class ConfigError extends RegopsError {
  readonly field?: string
  readonly file?: string
  readonly line?: number

  constructor(
    message: string,
    where: {field?: string; file?: string; line?: number} = {},
    options: RegopsErrorOptions = {},
  ) {
    const location = [where.file, where.line === undefined ? undefined : `line ${where.line}`].filter(Boolean).join(':')
    const prefix = [where.field ? `${where.field}` : undefined, location ? `(${location})` : undefined]
      .filter(Boolean)
      .join(' ')
    super(prefix ? `config ${prefix}: ${message}` : `config: ${message}`, ExitCode.Usage, {
      code: 'CONFIG_INVALID',
      ...options,
      details: {field: where.field, file: where.file, line: where.line, ...options.details},
    })
    this.field = where.field
    this.file = where.file
    this.line = where.line
  }
}

/** A precondition failed: a lock is held, the schema is not current, settings are unsafe. */
export class RefusedError extends RegopsError {
  constructor(message: string, options: RegopsErrorOptions = {}) {
    super(message, ExitCode.Refused, {code: 'REFUSED', ...options})
  }
}

/** Input data (a key, a link file, a manifest) that cannot be parsed. Carries where it was found. */
export class InvalidInputError extends RegopsError {
  readonly key?: string
  constructor(message: string, key?: string, options: RegopsErrorOptions = {}) {
    super(key ? `${message} (at ${key})` : message, ExitCode.Usage, {
      code: 'INVALID_INPUT',
      ...options,
      details: {key, ...options.details},
    })
    this.key = key
  }
}

/** A storage or network operation that failed after retries. */
export class StorageError extends RegopsError {
  readonly region?: string
  readonly key?: string
  constructor(message: string, where: {region?: string; key?: string} = {}, options: RegopsErrorOptions = {}) {
    super(message, ExitCode.Partial, {code: 'STORAGE', ...options, details: {...where, ...options.details}})
    this.region = where.region
    this.key = where.key
  }
}

/** An object that does not exist. Sweeps and walks tolerate these: the object may have gone mid-walk. */
export class NotFoundError extends StorageError {
  constructor(key: string, region?: string) {
    super(`not found: ${key}`, {key, region}, {code: 'NOT_FOUND'})
  }
}

/**
 * A running job stopped on a failure that is not about its input (the database went away, storage
 * failed past its retries). What it finished is checkpointed, so it exits "partial" and says how to resume.
 */
export class JobFailedError extends RegopsError {
  readonly jobId: string
  constructor(jobId: string, cause: unknown) {
    super(`job ${jobId} stopped: ${errorMessage(cause)}`, ExitCode.Partial, {
      code: 'JOB_FAILED',
      cause,
      hint: `its checkpoint is saved: fix the cause, then resume with --resume ${jobId}`,
      details: {jobId},
    })
    this.jobId = jobId
  }
}

/** A bug in regops: never reported as a usage error ("nothing was done" may be false). */
export class InternalError extends RegopsError {
  constructor(cause: unknown) {
    super(`internal error: ${errorMessage(cause)}`, ExitCode.Internal, {
      code: 'INTERNAL',
      cause,
      hint: 'this is a bug in regops; a running job keeps its checkpoint and can be resumed with --resume',
    })
  }
}

/** A job was interrupted by a signal after saving its checkpoint. */
export class InterruptedError extends RegopsError {
  constructor(signal: 'SIGINT' | 'SIGTERM', jobId?: string) {
    super(
      `interrupted by ${signal}${jobId ? `; checkpoint saved, resume with --resume ${jobId}` : ''}`,
      signal === 'SIGINT' ? ExitCode.Interrupted : ExitCode.Terminated,
      {code: 'INTERRUPTED', details: {signal, jobId}},
    )
  }
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message
  return String(error)
}

/** A value as an error message shows it: printable ASCII only (others as '?'), at most 80 characters. */
export function printableExcerpt(text: string): string {
  const printable = text.replace(/[^\x20-\x7e]/g, '?')
  return printable.length > 80 ? `${printable.slice(0, 77)}...` : printable
}
