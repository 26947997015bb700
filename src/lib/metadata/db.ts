/**
 * A thin layer over `pg`: one pool, clear connection errors, no secrets in any message.
 *
 * - application_name is 'regops' (or opts.applicationName); a URL's own application_name wins.
 * - statement_timeout is 0 (none) unless opts.statementTimeoutMs says otherwise: sent as the startup
 *   option `-c statement_timeout=…` so a role/database default cannot cut a long migration or sweep
 *   query short. PgBouncer rejects the `options` startup parameter unless it is in its
 *   ignore_startup_parameters; pass statementTimeoutMs: null there to keep the server's default.
 * - Connecting gives up after opts.connectTimeoutMs (default 10 s) instead of hanging on a dead host.
 * - Any failure to connect is a DatabaseConnectionError (exit 2, nothing was done) whose message names the
 *   redacted URL; the password never appears in a message, a hint, details or a cause.
 */
import {createRequire} from 'node:module'
import type pg from 'pg'
import {ConfigError, ExitCode, RegopsError, type RegopsErrorOptions} from '../errors.js'
import {REDACTED, redactUrl} from '../output/redact.js'

export type QueryResultRow = pg.QueryResultRow
export type QueryResult<R extends QueryResultRow = QueryResultRow> = pg.QueryResult<R>
export type DbClient = pg.PoolClient

export interface OpenDatabaseOptions {
  /** application_name shown in pg_stat_activity; default 'regops' */
  applicationName?: string
  /** pool size; default 10 */
  max?: number
  /** give up connecting after this long; default 10 000 ms (0 = wait forever) */
  connectTimeoutMs?: number
  /** statement_timeout for every session; default 0 (none); null = do not set it (PgBouncer) */
  statementTimeoutMs?: number | null
  /** called with idle-client errors (server restart, network drop); default: ignored, the pool drops the client */
  onIdleError?: (error: RegopsError) => void
}

export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable'

export interface TransactionOptions {
  isolation?: IsolationLevel
  readOnly?: boolean
}

export interface Db {
  /** the URL with its password replaced by *** (safe to print) */
  readonly redactedUrl: string
  /** the underlying pool, for code that needs pg directly */
  readonly pool: pg.Pool
  /** One statement on any pooled connection. */
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: readonly unknown[]): Promise<QueryResult<R>>
  /** One dedicated connection for the duration of fn (session state, advisory locks, cursors). */
  withClient<T>(fn: (client: DbClient) => Promise<T>): Promise<T>
  /** BEGIN; fn; COMMIT — ROLLBACK if fn throws (and rethrow). */
  transaction<T>(fn: (client: DbClient) => Promise<T>, options?: TransactionOptions): Promise<T>
  /** Ends the pool. Idempotent. */
  close(): Promise<void>
}

/** The database could not be reached or refused us. Exit 2: nothing was done. */
export class DatabaseConnectionError extends RegopsError {
  constructor(message: string, options: RegopsErrorOptions = {}) {
    super(message, ExitCode.Usage, {code: 'DB_CONNECT', ...options})
  }
}

/** Every spelling of the password that could leak into a message. */
function secretsOf(url: string): string[] {
  const secrets = new Set<string>()
  const add = (value: string | null | undefined): void => {
    if (!value) return
    secrets.add(value)
    try {
      secrets.add(decodeURIComponent(value))
    } catch {
      // keep the raw form only
    }
    secrets.add(encodeURIComponent(value))
  }
  try {
    const u = new URL(url)
    add(u.password)
    add(u.searchParams.get('password'))
    add(u.searchParams.get('sslpassword'))
  } catch {
    const m = /^[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:(.*)@/i.exec(url)
    add(m?.[1])
  }
  add(process.env.PGPASSWORD)
  return [...secrets].filter((s) => s.length > 0).sort((a, b) => b.length - a.length)
}

function scrub(text: string, secrets: readonly string[]): string {
  let out = text
  for (const secret of secrets) out = out.split(secret).join(REDACTED)
  return out
}

interface PgLikeError {
  message?: string
  code?: string
  severity?: string
}

function describeConnectError(error: unknown): {reason: string; code?: string; hint?: string} {
  const e = (error ?? {}) as PgLikeError & {errors?: PgLikeError[]}
  // AggregateError from a host that resolves to several addresses: report the first.
  const first = Array.isArray(e.errors) && e.errors.length > 0 ? e.errors[0] : e
  const code = first.code ?? e.code
  const message = first.message || e.message || String(error)
  switch (code) {
    case 'ECONNREFUSED':
      return {reason: 'connection refused', code, hint: 'is PostgreSQL running and listening on that host and port?'}
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return {reason: 'host not found', code, hint: 'check the host name in the database URL'}
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return {reason: `network unreachable (${code})`, code, hint: 'check the host, port, firewall and network policy'}
    case 'ECONNRESET':
      return {
        reason: 'connection reset by the server',
        code,
        hint: 'a proxy or TLS requirement may be closing the connection (try ?sslmode=require)',
      }
    case '28P01':
      return {reason: message, code, hint: 'check the user and password (PGPASSWORD, ~/.pgpass or the URL)'}
    case '28000':
      return {
        reason: message,
        code,
        hint: /pg_hba|encryption/i.test(message)
          ? 'the server does not accept this user/host/encryption (pg_hba.conf); try ?sslmode=require'
          : 'check the user and password (PGPASSWORD, ~/.pgpass or the URL)',
      }
    case '3D000':
      return {reason: message, code, hint: 'create the database first, or fix the database name in the URL'}
    case '53300':
      return {
        reason: message,
        code,
        hint: 'the server has no free connection slots; lower --concurrency or the pool size',
      }
    case '57P03':
      return {reason: message, code, hint: 'the server is starting up or shutting down; retry shortly'}
    case '08P01':
      return {reason: message, code, hint: 'behind PgBouncer? it may reject startup options such as statement_timeout'}
    default:
      if (/timeout/i.test(message))
        return {
          reason: 'timed out connecting',
          code,
          hint: 'check the host and port; the server did not answer in time',
        }
      return {reason: message, code}
  }
}

function validateUrl(url: string): void {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new ConfigError(
      `not a valid URL: ${redactUrl(url)}`,
      {field: 'database.url'},
      {hint: 'expected postgres://user@host:5432/database'},
    )
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw new ConfigError(`expected a postgres:// or postgresql:// URL, got ${u.protocol}//…`, {field: 'database.url'})
  }
}

/** Opens a pool on `url`. Connects lazily: the first query reports an unreachable server. */
// pg is loaded when a database is first opened, not when this module is: most commands import this file
// for its types and errors, and an audit or a load test without a database should not carry pg's memory.
const requireCommonJs = createRequire(import.meta.url)
function loadPg(): typeof pg {
  return requireCommonJs('pg') as typeof pg
}

export function openDatabase(url: string, opts: OpenDatabaseOptions = {}): Db {
  validateUrl(url)
  const redactedUrl = redactUrl(url)
  const secrets = secretsOf(url)
  const statementTimeout = opts.statementTimeoutMs === undefined ? 0 : opts.statementTimeoutMs

  const pool = new (loadPg().Pool)({
    connectionString: url,
    application_name: opts.applicationName ?? 'regops',
    max: opts.max ?? 10,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
    keepAlive: true,
    ...(statementTimeout === null
      ? {}
      : {options: `-c statement_timeout=${Math.max(0, Math.floor(statementTimeout))}`}),
  })

  const wrapConnectError = (error: unknown): DatabaseConnectionError => {
    const {reason, code, hint} = describeConnectError(error)
    return new DatabaseConnectionError(
      scrub(`cannot connect to the metadata database ${redactedUrl}: ${reason}`, secrets),
      {
        hint: hint === undefined ? undefined : scrub(hint, secrets),
        // A sanitized cause only: the original may carry the URL (e.g. ERR_INVALID_URL's `input`).
        cause: new Error(scrub(String((error as PgLikeError | undefined)?.message ?? error), secrets)),
        details: {url: redactedUrl, reason: code},
      },
    )
  }

  pool.on('error', (error) => {
    // An idle client died; the pool has already discarded it. Never let this crash the process.
    opts.onIdleError?.(
      new DatabaseConnectionError(
        scrub(`metadata database connection lost (${redactedUrl}): ${error.message}`, secrets),
      ),
    )
  })
  // A checked-out client between two queries (a migration's locked session, a transaction) has no
  // query to fail when the server goes away: pg emits 'error' on the client itself, which would crash
  // the process. Its holder learns of it from its next query.
  pool.on('connect', (client) => client.on('error', () => {}))

  const connect = async (): Promise<pg.PoolClient> => {
    try {
      return await pool.connect()
    } catch (error) {
      throw wrapConnectError(error)
    }
  }

  const withClient = async <T>(fn: (client: DbClient) => Promise<T>): Promise<T> => {
    const client = await connect()
    let broken: Error | undefined
    try {
      return await fn(client)
    } catch (error) {
      // A dead connection must not go back into the pool.
      if (isConnectionLoss(error)) broken = error instanceof Error ? error : new Error(String(error))
      throw error
    } finally {
      client.release(broken)
    }
  }

  let closing: Promise<void> | undefined

  return {
    redactedUrl,
    pool,
    query: <R extends QueryResultRow = QueryResultRow>(text: string, values?: readonly unknown[]) =>
      withClient((client) => client.query<R>(text, values as unknown[] | undefined)),
    withClient,
    async transaction<T>(fn: (client: DbClient) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
      const client = await connect()
      let releaseWith: Error | undefined
      try {
        const mode = [
          options.isolation ? `ISOLATION LEVEL ${options.isolation.toUpperCase()}` : '',
          options.readOnly ? 'READ ONLY' : '',
        ]
          .filter(Boolean)
          .join(' ')
        await client.query(mode ? `BEGIN ${mode}` : 'BEGIN')
        let result: T
        try {
          result = await fn(client)
        } catch (error) {
          try {
            await client.query('ROLLBACK')
          } catch (rollbackError) {
            releaseWith = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError))
          }
          throw error
        }
        await client.query('COMMIT')
        return result
      } catch (error) {
        if (!releaseWith && isConnectionLoss(error))
          releaseWith = error instanceof Error ? error : new Error(String(error))
        throw error
      } finally {
        client.release(releaseWith)
      }
    },
    close() {
      closing ??= pool.end()
      return closing
    },
  }
}

function isConnectionLoss(error: unknown): boolean {
  const e = error as PgLikeError | undefined
  if (!e) return false
  if (
    typeof e.code === 'string' &&
    (e.code.startsWith('08') || e.code === '57P01' || e.code === 'ECONNRESET' || e.code === 'EPIPE')
  )
    return true
  return (
    typeof e.message === 'string' && /Connection terminated|Client has encountered a connection error/i.test(e.message)
  )
}
