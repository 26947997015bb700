// Own small engine rather than node-pg-migrate: we need checksummed plain-SQL files with drift refusal, one advisory-locked session per run, a transaction per file and dry-run SQL output — less code here than bending a JS-migration framework to it.
/**
 * Schema migrations of the metadata database.
 *
 * Files: `<dir>/NNNN_name.up.sql` + `NNNN_name.down.sql`, versions 1..N without gaps or duplicates.
 * Bookkeeping: regops_schema_migrations (version, name, checksum = sha256 of the up file with CRLF
 * normalised to LF, applied_at, execution_ms).
 *
 * A run (up or down) takes a PostgreSQL session advisory lock (MIGRATION_LOCK_KEY) on ONE dedicated
 * connection and keeps it until the end; a second run waits up to lockTimeoutMs and is then refused
 * (exit 4). Each file runs in its own transaction together with its bookkeeping row, so a failing file
 * leaves nothing of itself behind and the files before it stay applied. A file must not contain its
 * own BEGIN/COMMIT. A file whose first line is `-- regops:no-transaction` runs outside a transaction,
 * statement by statement (for CREATE INDEX CONCURRENTLY, which refuses to run in one), and is recorded
 * only after its last statement succeeded: such a file must be safe to run again from the start
 * (IF NOT EXISTS / IF EXISTS), since a failure leaves the statements before it applied.
 * Every statement runs under lock_timeout (default 10 s): a migration that needs a lock a long
 * transaction holds fails with what to do, instead of queueing behind it (and stalling every query that
 * queues behind the migration) for as long as that transaction lives. Applied files whose checksum changed ("drifted") are refused before anything runs.
 * Advisory locks are per session: run migrations on a direct connection or a session-mode pooler,
 * not through PgBouncer in transaction mode.
 */
import path from 'node:path'
import {ExitCode, RefusedError, RegopsError, UsageError} from '../errors.js'
import {DEFAULT_MIGRATIONS_DIR, loadMigrations, splitStatements, type Migration} from './migration-files.js'
import type {Db, DbClient} from './db.js'

export {
  DEFAULT_MIGRATIONS_DIR,
  NO_TRANSACTION_MARKER,
  createMigration,
  loadMigrations,
  splitStatements,
  type Migration,
} from './migration-files.js'

export const MIGRATIONS_TABLE = 'regops_schema_migrations'

/** pg_try_advisory_lock key: the bytes 'regops' + 0x0001, a positive bigint. */
export const MIGRATION_LOCK_KEY = '8243111596538413057'
const LOCK_KEY_HI = Number(BigInt(MIGRATION_LOCK_KEY) >> 32n)
const LOCK_KEY_LO = Number(BigInt(MIGRATION_LOCK_KEY) & 0xffffffffn)

export const DEFAULT_LOCK_TIMEOUT_MS = 30_000

/** lock_timeout of the statements of a migration (0 = wait for locks as long as it takes). */
export const DEFAULT_STATEMENT_LOCK_TIMEOUT_MS = 10_000

export interface AppliedRow {
  version: number
  name: string
  checksum: string
  appliedAt: Date
  executionMs: number
}

export interface MigrationRef {
  version: number
  name: string
  file: string
}

export interface MigrationRun extends MigrationRef {
  ms: number
}

export interface MigrateUpResult {
  kind: 'migrate-up'
  dryRun: boolean
  /** highest applied version before the run (0 = none) */
  from: number
  /** highest applied version after the run (dry run: after it would have run) */
  to: number
  /** what this run applies (dry run: would apply), in order */
  planned: MigrationRef[]
  /** what it applied ([] on dry run) */
  applied: MigrationRun[]
  /** what is still pending after the run (beyond `to`) */
  pending: MigrationRef[]
  /** dry run only: the SQL of each planned file, with a header comment */
  sql?: string[]
}

export interface MigrateDownResult {
  kind: 'migrate-down'
  dryRun: boolean
  from: number
  to: number
  planned: MigrationRef[]
  reverted: MigrationRun[]
  sql?: string[]
}

export type MigrationState = 'applied' | 'pending' | 'drifted' | 'missing-file'

export interface MigrationStatusEntry {
  version: number
  name: string
  state: MigrationState
  /** file checksum (recorded checksum when the file is missing) */
  checksum: string
  /** recorded checksum, when applied */
  recordedChecksum: string | null
  appliedAt: string | null
  executionMs: number | null
}

export interface MigrationStatus {
  kind: 'migrate-status'
  /** highest applied version (0 = none) */
  current: number
  /** highest version among the files */
  latest: number
  migrations: MigrationStatusEntry[]
}

export interface MigrateUpOptions {
  /** apply up to and including this version (default: all) */
  to?: number
  dryRun?: boolean
  dir?: string
  lockTimeoutMs?: number
  /** lock_timeout of each migration statement (default DEFAULT_STATEMENT_LOCK_TIMEOUT_MS; 0 = none) */
  statementLockTimeoutMs?: number
  /** called after each applied migration (progress output) */
  onApplied?: (run: MigrationRun) => void
}

export interface MigrateDownOptions {
  /** how many of the latest applied migrations to revert (default 1) */
  steps?: number
  /** revert everything above this version instead (0 = all); overrides steps */
  to?: number
  dryRun?: boolean
  dir?: string
  lockTimeoutMs?: number
  /** lock_timeout of each migration statement (default DEFAULT_STATEMENT_LOCK_TIMEOUT_MS; 0 = none) */
  statementLockTimeoutMs?: number
  onReverted?: (run: MigrationRun) => void
}

// ---------------------------------------------------------------------------------------------
// Database side

interface Queryable {
  query: DbClient['query']
}

const BOOKKEEPING_DDL = `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
  version integer PRIMARY KEY,
  name text NOT NULL,
  checksum text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  execution_ms integer NOT NULL
)`

async function readApplied(q: Queryable): Promise<AppliedRow[]> {
  const present = await q.query<{present: boolean}>(`SELECT to_regclass($1) IS NOT NULL AS present`, [MIGRATIONS_TABLE])
  if (!present.rows[0]?.present) return []
  const rows = await q.query<{version: number; name: string; checksum: string; applied_at: Date; execution_ms: number}>(
    `SELECT version, name, checksum, applied_at, execution_ms FROM ${MIGRATIONS_TABLE} ORDER BY version`,
  )
  return rows.rows.map((r) => ({
    version: r.version,
    name: r.name,
    checksum: r.checksum,
    appliedAt: r.applied_at,
    executionMs: r.execution_ms,
  }))
}

function ref(m: Migration): MigrationRef {
  return {version: m.version, name: m.name, file: m.file}
}

function vname(version: number): string {
  return String(version).padStart(4, '0')
}

function buildStatus(migrations: Migration[], applied: AppliedRow[]): MigrationStatus {
  const byVersion = new Map(applied.map((a) => [a.version, a]))
  const entries: MigrationStatusEntry[] = []
  for (const m of migrations) {
    const a = byVersion.get(m.version)
    byVersion.delete(m.version)
    entries.push({
      version: m.version,
      name: m.name,
      state: !a ? 'pending' : a.checksum === m.checksum && a.name === m.name ? 'applied' : 'drifted',
      checksum: m.checksum,
      recordedChecksum: a?.checksum ?? null,
      appliedAt: a ? a.appliedAt.toISOString() : null,
      executionMs: a?.executionMs ?? null,
    })
  }
  for (const a of byVersion.values()) {
    entries.push({
      version: a.version,
      name: a.name,
      state: 'missing-file',
      checksum: a.checksum,
      recordedChecksum: a.checksum,
      appliedAt: a.appliedAt.toISOString(),
      executionMs: a.executionMs,
    })
  }
  entries.sort((x, y) => x.version - y.version)
  return {
    kind: 'migrate-status',
    current: applied.reduce((max, a) => Math.max(max, a.version), 0),
    latest: migrations.length === 0 ? 0 : migrations[migrations.length - 1].version,
    migrations: entries,
  }
}

/** Refuses (exit 4) when the recorded history does not match the files. */
function assertConsistent(status: MigrationStatus, dir: string, migrations: Migration[]): void {
  const drifted = status.migrations.find((e) => e.state === 'drifted')
  if (drifted) {
    const file =
      migrations.find((m) => m.version === drifted.version)?.file ?? `${vname(drifted.version)}_${drifted.name}.up.sql`
    throw new RefusedError(
      `migration ${vname(drifted.version)} (${file}) has drifted: the file changed after it was applied (checksum ${drifted.checksum.slice(0, 12)}… ≠ recorded ${String(drifted.recordedChecksum).slice(0, 12)}…)`,
      {
        code: 'MIGRATION_DRIFTED',
        hint: 'restore the applied file and put the change in a new migration (regops db migrate create NAME)',
        details: {
          version: drifted.version,
          file: path.join(dir, file),
          checksum: drifted.checksum,
          recordedChecksum: drifted.recordedChecksum,
        },
      },
    )
  }
  const missing = status.migrations.find((e) => e.state === 'missing-file')
  if (missing) {
    throw new RefusedError(
      `migration ${vname(missing.version)} (${missing.name}) is applied in the database but has no file in ${dir}: the database is newer than this regops`,
      {
        code: 'MIGRATION_MISSING_FILE',
        hint: 'upgrade regops to a version that has this migration',
        details: {version: missing.version, name: missing.name},
      },
    )
  }
  const firstPending = status.migrations.find((e) => e.state === 'pending')
  if (firstPending && firstPending.version < status.current) {
    throw new RefusedError(
      `migration ${vname(firstPending.version)} (${firstPending.name}) is pending but ${vname(status.current)} is already applied (out of order)`,
      {
        code: 'MIGRATION_OUT_OF_ORDER',
        hint: 'renumber the new migration after the applied ones',
        details: {version: firstPending.version},
      },
    )
  }
}

function lineOf(sql: string, position: number | undefined): number | undefined {
  if (!position || position < 1) return undefined
  return sql.slice(0, position - 1).split('\n').length
}

function migrationFailed(
  m: Migration,
  direction: 'up' | 'down',
  error: unknown,
  done: MigrationRun[],
  lockTimeoutMs: number,
): RegopsError {
  const e = error as {
    message?: string
    code?: string
    position?: string
    where?: string
    statementOffset?: number
    statementStart?: number
  }
  const file = direction === 'up' ? m.file : m.downFile
  const sql = direction === 'up' ? m.upSql : m.downSql
  const outside = direction === 'up' ? m.upNoTransaction : m.downNoTransaction
  // Outside a transaction the position is within the statement; an error without one names the statement's line.
  const position =
    e.position !== undefined
      ? Number(e.position) + (e.statementOffset ?? 0)
      : e.statementStart !== undefined
        ? e.statementStart + 1
        : undefined
  const line = lineOf(sql, position)
  const undone = outside
    ? 'it ran outside a transaction: the statements before the failing one stay applied, and it is not recorded'
    : 'it was rolled back'
  if (e.code === LOCK_NOT_AVAILABLE) {
    return new RefusedError(
      `migration ${file} waited ${formatMs(lockTimeoutMs)} (lock_timeout) for a lock that another session holds${line ? ` (line ${line})` : ''}; ${undone}`,
      {
        code: 'MIGRATION_LOCK_TIMEOUT',
        hint: `a long transaction holds a lock on a table it changes: find it with SELECT pid, state, xact_start, query FROM pg_stat_activity WHERE state <> 'idle' ORDER BY xact_start, let it finish (or end it), and run again; --statement-lock-timeout waits longer`,
        details: {version: m.version, file: direction === 'up' ? m.upPath : m.downPath, line, sqlstate: e.code},
      },
    )
  }
  return new RegopsError(
    `migration ${file} failed${line ? ` at line ${line}` : ''}: ${e.message ?? String(error)}; ${undone}`,
    ExitCode.Partial,
    {
      code: 'MIGRATION_FAILED',
      hint:
        done.length > 0
          ? `${done.map((d) => vname(d.version)).join(', ')} ${done.length === 1 ? 'was' : 'were'} applied before it and stay${done.length === 1 ? 's' : ''}; fix the file and run again`
          : 'nothing was applied; fix the file and run again',
      details: {
        version: m.version,
        file: direction === 'up' ? m.upPath : m.downPath,
        line,
        sqlstate: e.code,
        where: e.where,
        done: done.map((d) => d.version),
      },
    },
  )
}

async function acquireLock(client: DbClient, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + Math.max(0, timeoutMs)
  let delay = 50
  for (;;) {
    const r = await client.query<{locked: boolean}>(`SELECT pg_try_advisory_lock(${MIGRATION_LOCK_KEY}) AS locked`)
    if (r.rows[0]?.locked) return
    const left = deadline - Date.now()
    if (left <= 0) break
    await new Promise((resolve) => setTimeout(resolve, Math.min(delay, left)))
    delay = Math.min(delay * 2, 500)
  }
  const holder = await client
    .query<{pid: number; application_name: string | null; client_addr: string | null; backend_start: Date | null}>(
      `SELECT l.pid, a.application_name, host(a.client_addr) AS client_addr, a.backend_start
         FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1
        LIMIT 1`,
      [LOCK_KEY_HI, LOCK_KEY_LO],
    )
    .then((r) => r.rows[0])
    .catch(() => undefined)
  const who = holder
    ? ` (pid ${holder.pid}${holder.application_name ? `, ${holder.application_name}` : ''}${holder.client_addr ? ` from ${holder.client_addr}` : ''}${holder.backend_start ? `, connected ${holder.backend_start.toISOString()}` : ''})`
    : ''
  throw new RefusedError(`another migration holds the lock${who}; waited ${Math.round(timeoutMs / 1000)}s`, {
    code: 'MIGRATION_LOCKED',
    hint: 'wait for the other run to finish, then run again',
    details: {
      lockKey: MIGRATION_LOCK_KEY,
      holderPid: holder?.pid,
      holderApplication: holder?.application_name ?? undefined,
    },
  })
}

/** Runs fn on one dedicated connection holding the migration advisory lock. */
async function withMigrationLock<T>(
  db: Db,
  timeoutMs: number,
  statementLockTimeoutMs: number,
  fn: (client: DbClient) => Promise<T>,
): Promise<T> {
  return db.withClient(async (client) => {
    await acquireLock(client, timeoutMs)
    try {
      // The session's, so it holds for the statements of a file run outside a transaction as well.
      await client.query(`SET lock_timeout = ${Math.max(0, Math.round(statementLockTimeoutMs))}`)
      return await fn(client)
    } finally {
      await client.query('RESET lock_timeout').catch(() => undefined)
      // If the connection died the server has already released the lock with the session.
      await client.query(`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY})`).catch(() => undefined)
    }
  })
}

/** lock_not_available: lock_timeout ran out (or NOWAIT). */
const LOCK_NOT_AVAILABLE = '55P03'

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`
}

/** Runs a file outside a transaction, statement by statement, then records it. */
async function runOutsideTransaction(
  client: DbClient,
  sql: string,
  bookkeeping: () => {text: string; values: unknown[]},
): Promise<void> {
  for (const statement of splitStatements(sql)) {
    try {
      await client.query(statement.text)
    } catch (error) {
      if (error && typeof error === 'object')
        Object.assign(error, {
          statementOffset: statement.offset,
          statementStart: statement.offset + statement.text.length - statement.text.trimStart().length,
        })
      throw error
    }
  }
  const {text, values} = bookkeeping()
  await client.query(text, values)
}

function sqlFor(m: Migration, direction: 'up' | 'down'): string {
  const file = direction === 'up' ? m.file : m.downFile
  const sql = direction === 'up' ? m.upSql : m.downSql
  const after =
    direction === 'up'
      ? `then records version ${m.version} (sha256 ${m.checksum}) in ${MIGRATIONS_TABLE}`
      : `then deletes version ${m.version} from ${MIGRATIONS_TABLE}`
  const how = (direction === 'up' ? m.upNoTransaction : m.downNoTransaction)
    ? 'runs outside a transaction, statement by statement'
    : 'runs in one transaction'
  return `-- ${file}: ${how}, ${after}\n${sql.endsWith('\n') ? sql : `${sql}\n`}`
}

async function runInTransaction(
  client: DbClient,
  sql: string,
  bookkeeping: () => {text: string; values: unknown[]},
): Promise<void> {
  await client.query('BEGIN')
  try {
    await client.query(sql)
    const {text, values} = bookkeeping()
    await client.query(text, values)
    await client.query('COMMIT')
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined)
    throw error
  }
}

function checkVersionOption(value: number | undefined, label: string): void {
  if (value === undefined) return
  if (!Number.isInteger(value) || value < 0)
    throw new UsageError(`${label} must be a whole number ≥ 0, got ${value}`, {code: 'USAGE'})
}

function planUp(migrations: Migration[], status: MigrationStatus, to: number | undefined): Migration[] {
  if (to !== undefined && to > status.latest) {
    throw new UsageError(`there is no migration ${vname(to)}; the latest is ${vname(status.latest)}`)
  }
  if (to !== undefined && to < status.current) {
    throw new UsageError(
      `target ${vname(to)} is below the current version ${vname(status.current)}; use regops db migrate down`,
    )
  }
  const limit = to ?? status.latest
  const pendingVersions = new Set(status.migrations.filter((e) => e.state === 'pending').map((e) => e.version))
  return migrations.filter((m) => pendingVersions.has(m.version) && m.version <= limit)
}

/** Applies pending migrations (all, or up to `to`), each in its own transaction, under the lock. */
export async function migrateUp(db: Db, opts: MigrateUpOptions = {}): Promise<MigrateUpResult> {
  checkVersionOption(opts.to, 'the target version')
  const dir = opts.dir ?? DEFAULT_MIGRATIONS_DIR
  const migrations = await loadMigrations(dir)
  const result = (
    status: MigrationStatus,
    planned: Migration[],
    applied: MigrationRun[],
    dryRun: boolean,
  ): MigrateUpResult => {
    const to = dryRun
      ? planned.length > 0
        ? planned[planned.length - 1].version
        : status.current
      : applied.reduce((max, a) => Math.max(max, a.version), status.current)
    return {
      kind: 'migrate-up',
      dryRun,
      from: status.current,
      to,
      planned: planned.map(ref),
      applied,
      pending: migrations
        .filter(
          (m) => m.version > to && status.migrations.some((e) => e.version === m.version && e.state === 'pending'),
        )
        .map(ref),
      ...(dryRun ? {sql: planned.map((m) => sqlFor(m, 'up'))} : {}),
    }
  }

  if (opts.dryRun) {
    const status = buildStatus(migrations, await db.withClient((c) => readApplied(c)))
    assertConsistent(status, dir, migrations)
    return result(status, planUp(migrations, status, opts.to), [], true)
  }

  const statementLockTimeoutMs = opts.statementLockTimeoutMs ?? DEFAULT_STATEMENT_LOCK_TIMEOUT_MS
  return withMigrationLock(
    db,
    opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS,
    statementLockTimeoutMs,
    async (client) => {
      await client.query(BOOKKEEPING_DDL)
      const status = buildStatus(migrations, await readApplied(client))
      assertConsistent(status, dir, migrations)
      const planned = planUp(migrations, status, opts.to)
      const applied: MigrationRun[] = []
      for (const m of planned) {
        const started = performance.now()
        try {
          await (m.upNoTransaction ? runOutsideTransaction : runInTransaction)(client, m.upSql, () => ({
            text: `INSERT INTO ${MIGRATIONS_TABLE} (version, name, checksum, execution_ms) VALUES ($1, $2, $3, $4)`,
            values: [m.version, m.name, m.checksum, Math.round(performance.now() - started)],
          }))
        } catch (error) {
          throw migrationFailed(m, 'up', error, applied, statementLockTimeoutMs)
        }
        const run = {...ref(m), ms: Math.round(performance.now() - started)}
        applied.push(run)
        opts.onApplied?.(run)
      }
      return result(status, planned, applied, false)
    },
  )
}

function planDown(migrations: Migration[], status: MigrationStatus, opts: MigrateDownOptions): Migration[] {
  const appliedVersions = status.migrations
    .filter((e) => e.state === 'applied')
    .map((e) => e.version)
    .sort((a, b) => b - a)
  let versions: number[]
  if (opts.to !== undefined) {
    if (opts.to > status.current)
      throw new UsageError(
        `target ${vname(opts.to)} is above the current version ${vname(status.current)}; use regops db migrate up`,
      )
    versions = appliedVersions.filter((v) => v > opts.to!)
  } else {
    const steps = opts.steps ?? 1
    if (!Number.isInteger(steps) || steps < 1) throw new UsageError(`steps must be a whole number ≥ 1, got ${steps}`)
    if (steps > appliedVersions.length) {
      throw new UsageError(
        `cannot revert ${steps} migration${steps === 1 ? '' : 's'}: only ${appliedVersions.length} ${appliedVersions.length === 1 ? 'is' : 'are'} applied`,
      )
    }
    versions = appliedVersions.slice(0, steps)
  }
  const byVersion = new Map(migrations.map((m) => [m.version, m]))
  return versions.map((v) => byVersion.get(v)!)
}

/** Reverts the latest applied migrations (default 1) in reverse order, each in its own transaction. */
export async function migrateDown(db: Db, opts: MigrateDownOptions = {}): Promise<MigrateDownResult> {
  checkVersionOption(opts.to, 'the target version')
  const dir = opts.dir ?? DEFAULT_MIGRATIONS_DIR
  const migrations = await loadMigrations(dir)
  const result = (
    status: MigrationStatus,
    planned: Migration[],
    reverted: MigrationRun[],
    dryRun: boolean,
  ): MigrateDownResult => {
    const lowest = dryRun ? planned.at(-1)?.version : reverted.at(-1)?.version
    const below =
      lowest === undefined
        ? status.current
        : status.migrations
            .filter((e) => e.state === 'applied' && e.version < lowest)
            .reduce((max, e) => Math.max(max, e.version), 0)
    return {
      kind: 'migrate-down',
      dryRun,
      from: status.current,
      to: below,
      planned: planned.map(ref),
      reverted,
      ...(dryRun ? {sql: planned.map((m) => sqlFor(m, 'down'))} : {}),
    }
  }

  if (opts.dryRun) {
    const status = buildStatus(migrations, await db.withClient((c) => readApplied(c)))
    assertConsistent(status, dir, migrations)
    return result(status, planDown(migrations, status, opts), [], true)
  }

  const statementLockTimeoutMs = opts.statementLockTimeoutMs ?? DEFAULT_STATEMENT_LOCK_TIMEOUT_MS
  return withMigrationLock(
    db,
    opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS,
    statementLockTimeoutMs,
    async (client) => {
      const status = buildStatus(migrations, await readApplied(client))
      assertConsistent(status, dir, migrations)
      const planned = planDown(migrations, status, opts)
      const reverted: MigrationRun[] = []
      for (const m of planned) {
        const started = performance.now()
        try {
          await (m.downNoTransaction ? runOutsideTransaction : runInTransaction)(client, m.downSql, () => ({
            text: `DELETE FROM ${MIGRATIONS_TABLE} WHERE version = $1`,
            values: [m.version],
          }))
        } catch (error) {
          throw migrationFailed(m, 'down', error, reverted, statementLockTimeoutMs)
        }
        const run = {...ref(m), ms: Math.round(performance.now() - started)}
        reverted.push(run)
        opts.onReverted?.(run)
      }
      return result(status, planned, reverted, false)
    },
  )
}

/** Applied / pending / drifted / missing-file per version. Reads only; takes no lock. */
export async function migrationStatus(db: Db, opts: {dir?: string} = {}): Promise<MigrationStatus> {
  const migrations = await loadMigrations(opts.dir ?? DEFAULT_MIGRATIONS_DIR)
  return buildStatus(migrations, await db.withClient((c) => readApplied(c)))
}

/**
 * Refuses (exit 4) unless every migration file is applied and unchanged and the database has nothing
 * this regops does not know. Commands call it before touching the metadata database.
 */
export async function assertSchemaCurrent(db: Db, opts: {dir?: string} = {}): Promise<MigrationStatus> {
  const status = await migrationStatus(db, opts)
  const by = (state: MigrationState): MigrationStatusEntry[] => status.migrations.filter((e) => e.state === state)
  const drifted = by('drifted')
  const missing = by('missing-file')
  const pending = by('pending')
  const list = (entries: MigrationStatusEntry[]): string =>
    entries.map((e) => `${vname(e.version)}_${e.name}`).join(', ')
  if (drifted.length > 0) {
    throw new RefusedError(`metadata schema has drifted migrations: ${list(drifted)}`, {
      code: 'SCHEMA_DRIFTED',
      hint: 'run regops db migrate status; an applied migration file was changed',
      details: {drifted: drifted.map((e) => e.version)},
    })
  }
  if (missing.length > 0) {
    throw new RefusedError(`metadata schema is newer than this regops (unknown applied migrations: ${list(missing)})`, {
      code: 'SCHEMA_NEWER',
      hint: 'upgrade regops',
      details: {unknown: missing.map((e) => e.version)},
    })
  }
  if (pending.length > 0) {
    throw new RefusedError(
      `metadata schema is not current: ${pending.length} pending migration${pending.length === 1 ? '' : 's'} (${list(pending)})`,
      {
        code: 'SCHEMA_NOT_CURRENT',
        hint: 'run regops db migrate up',
        details: {current: status.current, latest: status.latest, pending: pending.map((e) => e.version)},
      },
    )
  }
  return status
}
