import {hostname} from 'node:os'
import type {Db} from '../metadata/db.js'
import {RefusedError, UsageError, errorMessage} from '../errors.js'

export type JobStatus = 'pending' | 'running' | 'done' | 'failed' | 'interrupted'

export interface Job<C = Record<string, unknown>> {
  id: string
  kind: string
  params: Record<string, unknown>
  shardIndex: number
  shardCount: number
  status: JobStatus
  checkpoint: C | null
  stats: Record<string, unknown>
  owner: string | null
  heartbeatAt: Date | null
  createdAt: Date
  startedAt: Date | null
  finishedAt: Date | null
  error: string | null
  /** the caller's name for the job (--job-key), if it was given one */
  key: string | null
  /** what a done job returned, for a re-run with the same key */
  result: unknown
}

/** A running job whose heartbeat is older than this is taken to be dead (its pod was killed). */
export const STALE_HEARTBEAT_MS = 60_000
const HEARTBEAT_EVERY_MS = 10_000

function toJob<C>(row: Record<string, unknown>): Job<C> {
  return {
    id: String(row.id),
    kind: row.kind as string,
    params: (row.params ?? {}) as Record<string, unknown>,
    shardIndex: row.shard_index as number,
    shardCount: row.shard_count as number,
    status: row.status as JobStatus,
    checkpoint: (row.checkpoint ?? null) as C | null,
    stats: (row.stats ?? {}) as Record<string, unknown>,
    owner: (row.owner ?? null) as string | null,
    heartbeatAt: (row.heartbeat_at ?? null) as Date | null,
    createdAt: row.created_at as Date,
    startedAt: (row.started_at ?? null) as Date | null,
    finishedAt: (row.finished_at ?? null) as Date | null,
    error: (row.error ?? null) as string | null,
    key: (row.job_key ?? null) as string | null,
    result: row.result ?? null,
  }
}

export function ownerId(): string {
  return `${process.env.HOSTNAME ?? hostname()}:${process.pid}`
}

/** What a job key may look like: an Argo workflow name and shard fit ('nightly-audit-x7k2p-3'). */
export const JOB_KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$/

export async function createJob(
  db: Db,
  kind: string,
  params: Record<string, unknown>,
  shard: {index: number; count: number} = {index: 0, count: 1},
  key?: string,
): Promise<Job> {
  const result = await db.query(
    `INSERT INTO regops_jobs (kind, params, shard_index, shard_count, status, owner, heartbeat_at, started_at, job_key)
     VALUES ($1, $2, $3, $4, 'running', $5, now(), now(), $6)
     ON CONFLICT (job_key) DO NOTHING RETURNING *`,
    [kind, JSON.stringify(params), shard.index, shard.count, ownerId(), key ?? null],
  )
  // Only a key can conflict: two runs with one key started at the same instant, and the other one won.
  if (result.rowCount === 0) {
    const winner = key === undefined ? undefined : await findJobByKey(db, key)
    throw new RefusedError(`job key '${key}' was taken by job ${winner?.id ?? '?'} while this run started`, {
      hint: 'two runs with the same --job-key must not run at once; run again to resume that job',
    })
  }
  return toJob(result.rows[0])
}

/** The job a caller named with `key` (--job-key), if there is one. */
export async function findJobByKey<C = Record<string, unknown>>(db: Db, key: string): Promise<Job<C> | undefined> {
  if (!JOB_KEY_PATTERN.test(key))
    throw new UsageError(
      `invalid --job-key '${key}': letters, digits and . _ : / @ -, starting with a letter or digit, at most 200`,
    )
  const result = await db.query('SELECT * FROM regops_jobs WHERE job_key = $1', [key])
  return result.rowCount === 0 ? undefined : toJob<C>(result.rows[0])
}

export async function getJob<C = Record<string, unknown>>(db: Db, id: string): Promise<Job<C>> {
  if (!/^\d+$/.test(id)) throw new UsageError(`invalid job id '${id}': a number, as shown by 'regops jobs list'`)
  const result = await db.query('SELECT * FROM regops_jobs WHERE id = $1', [id])
  if (result.rowCount === 0) throw new UsageError(`no job ${id} (see 'regops jobs list')`)
  return toJob<C>(result.rows[0])
}

export async function listJobs(db: Db, opts: {kind?: string; limit?: number} = {}): Promise<Job[]> {
  const result = await db.query(
    // Not the stored results: a list of fifty sweeps would carry fifty reports (jobs show has each one).
    `SELECT id, kind, params, shard_index, shard_count, status, checkpoint, owner, heartbeat_at, stats, created_at,
            started_at, finished_at, error, job_key
     FROM regops_jobs WHERE ($1::text IS NULL OR kind = $1) ORDER BY id DESC LIMIT $2`,
    [opts.kind ?? null, opts.limit ?? 50],
  )
  return result.rows.map((row) => toJob(row))
}

/**
 * Takes over a job to resume it. Refused when it is finished, of another kind, or still running
 * with a fresh heartbeat (two workers on one checkpoint would each redo the other's work).
 */
export async function resumeJob<C>(db: Db, id: string, kind: string): Promise<Job<C>> {
  const job = await getJob<C>(db, id)
  if (job.kind !== kind) throw new UsageError(`job ${id} is a ${job.kind} job, not ${kind}`)
  if (job.status === 'done') throw new RefusedError(`job ${id} is already done; start a new run instead of --resume`)
  const result = await db.query(
    `UPDATE regops_jobs SET status = 'running', owner = $2, heartbeat_at = now(), error = NULL, finished_at = NULL
     WHERE id = $1 AND (status <> 'running' OR heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => $3))
     RETURNING *`,
    [id, ownerId(), STALE_HEARTBEAT_MS / 1000],
  )
  if (result.rowCount === 0) {
    throw new RefusedError(
      `job ${id} is running on ${job.owner ?? 'another worker'} (heartbeat ${job.heartbeatAt?.toISOString()})`,
      {
        hint: `wait for it, or for its heartbeat to be older than ${STALE_HEARTBEAT_MS / 1000}s if that worker is dead`,
      },
    )
  }
  return toJob<C>(result.rows[0])
}

/**
 * Saves a checkpoint (and the stats `jobs show` prints). Only the job's owner writes it: a worker whose job
 * was taken over after its heartbeat went stale must not overwrite the new owner's progress.
 */
export async function saveCheckpoint(db: Db, id: string, checkpoint: unknown, stats: unknown): Promise<void> {
  const result = await db.query(
    'UPDATE regops_jobs SET checkpoint = $2, stats = $3, heartbeat_at = now() WHERE id = $1 AND owner = $4',
    [id, JSON.stringify(checkpoint), JSON.stringify(stats), ownerId()],
  )
  if (result.rowCount === 0) throw takenOver(id)
}

/** Ends a job; like a checkpoint, only its owner may. */
export async function finishJob(
  db: Db,
  id: string,
  status: Exclude<JobStatus, 'pending' | 'running'>,
  stats: unknown,
  error?: string,
  /** what a done job returned: kept so that a re-run with the job's key hands it back without redoing the work */
  jobResult?: unknown,
): Promise<void> {
  const result = await db.query(
    'UPDATE regops_jobs SET status = $2, stats = $3, error = $4, result = $6, finished_at = now(), heartbeat_at = now() WHERE id = $1 AND owner = $5',
    [
      id,
      status,
      JSON.stringify(stats),
      error ?? null,
      ownerId(),
      jobResult === undefined ? null : JSON.stringify(jobResult),
    ],
  )
  if (result.rowCount === 0) throw takenOver(id)
}

function takenOver(id: string): RefusedError {
  return new RefusedError(
    `job ${id} is no longer owned by this worker (${ownerId()}): another worker resumed it, so this one stopped`,
  )
}

/**
 * Keeps a job's heartbeat fresh while it runs, as long as this worker still owns the job. `onLost` is
 * called once when an update fails or finds the job taken over: after a minute without a heartbeat
 * another worker may resume the job, so this one must stop rather than act beside it.
 */
export function startHeartbeat(
  db: Db,
  id: string,
  onLost: (reason: Error) => void,
  everyMs = HEARTBEAT_EVERY_MS,
): () => void {
  const owner = ownerId()
  let stopped = false
  const lose = (reason: Error) => {
    if (stopped) return
    stopped = true
    clearInterval(timer)
    onLost(reason)
  }
  const timer = setInterval(() => {
    db.query('UPDATE regops_jobs SET heartbeat_at = now() WHERE id = $1 AND owner = $2', [id, owner]).then(
      (result) => {
        if (result.rowCount === 0) lose(new Error(`job ${id} is no longer owned by this worker (${owner})`))
      },
      (error: unknown) =>
        lose(new Error(`the heartbeat of job ${id} could not be written: ${errorMessage(error)}`, {cause: error})),
    )
  }, everyMs)
  timer.unref()
  return () => {
    stopped = true
    clearInterval(timer)
  }
}
