import type {Db} from '../metadata/db.js'
import type {Logger} from '../output/logger.js'
import {RefusedError, UsageError} from '../errors.js'
import {runJob} from '../jobs/runner.js'
import {shardOfRepository} from '../metadata/import-options.js'
import {measureStorageClock} from '../storage/clock.js'
import type {StorageDriver} from '../storage/driver.js'
import type {Problem} from '../storage/repositories.js'
import {markFromStorage} from './mark-storage.js'
import {shardRange} from './references.js'

/** Marks are written in batches of this many digests: one unnest INSERT each, off the walk's path. */
const MARK_BATCH = 5000

export interface SweepMarkOptions {
  db: Db
  driver: StorageDriver
  /** the mark run this shard belongs to: every shard of the run names it, and the sweep reads it */
  runId: string
  shard: {index: number; count: number}
  minAgeMs: number
  concurrency: number
  signal?: AbortSignal
  logger: Logger
}

export interface SweepMarkResult {
  kind: 'sweep-mark'
  runId: string
  region: string
  shard: {index: number; count: number}
  startedAt: string
  cutoff: string
  repositories: number
  manifests: number
  youngLinks: number
  /** digests written (before deduplication across shards) */
  marks: number
  complete: boolean
  problems: Problem[]
  problemCount: number
  /** every shard of the run has finished: a sweep may read it */
  runFinished: boolean
  /** earlier mark runs of the region deleted because they are older than MARK_RUN_RETENTION_DAYS */
  prunedRuns: string[]
  durationMs: number
}

/**
 * One shard of a sharded storage mark: walks the manifests of the repositories this shard owns (as
 * import shards them) and writes every digest they reference, and every blob a young _layers link
 * protects, to regops_marks under the run's id. The sweep shards then read the marks of their own
 * prefixes, so between them the manifests are read once.
 */
export async function markShard(opts: SweepMarkOptions): Promise<SweepMarkResult> {
  const started = performance.now()
  return runJob<never, SweepMarkResult>(
    opts.db,
    {
      kind: 'sweep-mark',
      params: {runId: opts.runId, minAgeMs: opts.minAgeMs},
      shard: opts.shard,
      region: opts.driver.region,
      signal: opts.signal,
      logger: opts.logger,
    },
    async (job) => {
      const {db, driver, runId, shard} = opts
      await joinRun(db, runId, driver.region, shard.count)
      const prunedRuns = await pruneOldRuns(db, runId, driver.region)
      // Storage time: what this walk cannot see was written after startedAt, which the sweep's
      // re-check before acting walks again.
      const clock = await measureStorageClock(driver)
      const startedAt = clock.now()
      const cutoff = new Date(startedAt.getTime() - opts.minAgeMs)
      await db.query(
        `INSERT INTO regops_mark_shards (run_id, shard_index, started_at, cutoff) VALUES ($1, $2, $3, $4)
         ON CONFLICT (run_id, shard_index) DO UPDATE SET started_at = $3, cutoff = $4, finished_at = NULL,
           complete = NULL, repositories = 0, manifests = 0, young_links = 0, problems = 0`,
        [runId, shard.index, startedAt, cutoff],
      )
      const problems: Problem[] = []
      let problemCount = 0
      let marks = 0
      let batch = new Set<string>()
      let writing = Promise.resolve()
      const flush = () => {
        if (batch.size === 0) return
        const digests = [...batch]
        batch = new Set()
        marks += digests.length
        writing = writing.then(async () => {
          await db.query(
            `INSERT INTO regops_marks (run_id, digest) SELECT $1, d FROM unnest($2::text[]) AS d
             ON CONFLICT DO NOTHING`,
            [runId, digests],
          )
        })
      }
      const marked = await markFromStorage(driver, {
        cutoff,
        walksRepository: (repository) => shardOfRepository(repository, shard.count) === shard.index,
        concurrency: opts.concurrency,
        signal: job.signal,
        // Only sha256 blobs are swept (as the spill of a single-process mark keeps only those).
        mark: (digest) => {
          if (!digest.startsWith('sha256:')) return
          batch.add(digest)
          if (batch.size >= MARK_BATCH) flush()
        },
        onProblem: (problem) => {
          problemCount++
          if (problems.length < 100) problems.push(problem)
          if (problemCount <= 5) opts.logger.warn(problem.message, {problem: problem.kind, key: problem.key})
        },
      })
      flush()
      await writing
      const complete = problemCount === 0
      const finished = await db.query<{finished: string}>(
        `UPDATE regops_mark_shards SET finished_at = now(), complete = $3, repositories = $4, manifests = $5,
           young_links = $6, problems = $7 WHERE run_id = $1 AND shard_index = $2
         RETURNING (SELECT count(*) FROM regops_mark_shards WHERE run_id = $1 AND finished_at IS NOT NULL) + 1 AS finished`,
        [runId, shard.index, complete, marked.repositories, marked.manifests, marked.youngLinks, problemCount],
      )
      const result: SweepMarkResult = {
        kind: 'sweep-mark',
        runId,
        region: driver.region,
        shard,
        startedAt: startedAt.toISOString(),
        cutoff: cutoff.toISOString(),
        repositories: marked.repositories,
        manifests: marked.manifests,
        youngLinks: marked.youngLinks,
        marks,
        complete,
        problems,
        problemCount,
        runFinished: Number(finished.rows[0].finished) >= shard.count,
        prunedRuns,
        durationMs: Math.round(performance.now() - started),
      }
      const {problems: _problems, ...stats} = result
      return {result, stats, failure: complete ? undefined : `${problemCount} problem(s): the mark is incomplete`}
    },
  )
}

/**
 * Mark runs are kept this long. A sweep refuses a run that started before its own cutoff (now minus its
 * grace period), so a run this old serves no new sweep; the margin covers a long sweep still reading one.
 */
export const MARK_RUN_RETENTION_DAYS = 7

/** Deletes the region's mark runs older than the retention (their marks go with them): one digest per reference per run adds up. */
async function pruneOldRuns(db: Db, runId: string, region: string): Promise<string[]> {
  const pruned = await db.query<{id: string}>(
    `DELETE FROM regops_mark_runs WHERE region = $1 AND id <> $2 AND created_at < now() - make_interval(days => $3)
     RETURNING id`,
    [region, runId, MARK_RUN_RETENTION_DAYS],
  )
  return pruned.rows.map((row) => row.id).sort()
}

/** Creates the run, or checks that this shard agrees with the one that created it. */
async function joinRun(db: Db, runId: string, region: string, shardCount: number): Promise<void> {
  await db.query(
    `INSERT INTO regops_mark_runs (id, region, shard_count) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`,
    [runId, region, shardCount],
  )
  const run = await db.query<{region: string; shard_count: number}>(
    'SELECT region, shard_count FROM regops_mark_runs WHERE id = $1',
    [runId],
  )
  const {region: runRegion, shard_count: runShards} = run.rows[0]
  if (runRegion !== region || runShards !== shardCount)
    throw new UsageError(
      `mark run '${runId}' is of region ${runRegion} with ${runShards} shard(s); this shard says region ${region} with ${shardCount}`,
      {
        hint: 'every shard of a mark run names the same region and --shard i/n count; a new run needs a new --mark-run id',
      },
    )
}

/** A finished mark run, as a sweep reads it. */
export interface MarkRun {
  id: string
  /** the earliest shard's start (storage time): the sweep's re-check walks everything written since */
  startedAt: Date
  /** the latest shard's cutoff: every _layers link at or after it was marked */
  cutoff: Date
  complete: boolean
  repositories: number
  manifests: number
  youngLinks: number
}

/**
 * The mark run a sweep reads, refused (exit 4) unless every shard finished, and unless it is fresh for
 * the sweep's cutoff: it must have started after the cutoff, so that every blob written since the mark
 * began is younger than the grace period and never a candidate, and its young-link cutoff must not be
 * later than the sweep's (links between the two would be unmarked). A push after the mark is
 * protected by that grace period and by the re-check just before acting, which walks everything
 * written since the mark's start.
 */
export async function readMarkRun(db: Db, runId: string, region: string, cutoff: Date): Promise<MarkRun> {
  const run = await db.query<{region: string; shard_count: number}>(
    'SELECT region, shard_count FROM regops_mark_runs WHERE id = $1',
    [runId],
  )
  if (run.rows.length === 0)
    throw new UsageError(`no mark run '${runId}'`, {hint: 'run regops sweep mark --mark-run ID --shard i/n first'})
  if (run.rows[0].region !== region)
    throw new UsageError(`mark run '${runId}' is of region ${run.rows[0].region}, not ${region}`)
  const shards = await db.query<{
    shard_index: number
    started_at: Date
    cutoff: Date
    finished_at: Date | null
    complete: boolean | null
    repositories: string
    manifests: string
    young_links: string
  }>('SELECT * FROM regops_mark_shards WHERE run_id = $1 ORDER BY shard_index', [runId])
  const count = run.rows[0].shard_count
  const finished = new Set(shards.rows.filter((s) => s.finished_at !== null).map((s) => s.shard_index))
  const missing = Array.from({length: count}, (_, i) => i).filter((i) => !finished.has(i))
  if (missing.length > 0)
    throw new RefusedError(
      `mark run '${runId}' is not finished: shard(s) ${missing.map((i) => `${i}/${count}`).join(', ')} have not finished`,
      {hint: 'run (or re-run) those shards of regops sweep mark, then sweep again'},
    )
  const startedAt = new Date(Math.min(...shards.rows.map((s) => s.started_at.getTime())))
  const markCutoff = new Date(Math.max(...shards.rows.map((s) => s.cutoff.getTime())))
  if (startedAt < cutoff || markCutoff > cutoff)
    throw new RefusedError(
      `mark run '${runId}' started at ${startedAt.toISOString()}, before this sweep's cutoff ${cutoff.toISOString()}` +
        (markCutoff > cutoff ? ` (or marked young links only from ${markCutoff.toISOString()})` : '') +
        ': blobs written since it began could look unreferenced',
      {hint: 'run the mark again, or sweep with the same --min-age soon after it'},
    )
  const sum = (column: 'repositories' | 'manifests' | 'young_links') =>
    shards.rows.reduce((total, s) => total + Number(s[column]), 0)
  return {
    id: runId,
    startedAt,
    cutoff: markCutoff,
    complete: shards.rows.every((s) => s.complete === true),
    repositories: sum('repositories'),
    manifests: sum('manifests'),
    youngLinks: sum('young_links'),
  }
}

/** The marks of one unit (a two-hex prefix, or a merge unit of it), sorted in storage byte order (the digest is COLLATE "C"). */
export async function readSharedMarks(db: Db, runId: string, unit: string): Promise<string[]> {
  const [low, high] = shardRange(unit)
  const result = await db.query<{digest: string}>(
    'SELECT digest FROM regops_marks WHERE run_id = $1 AND digest >= $2 AND digest < $3 ORDER BY digest',
    [runId, low, high],
  )
  return result.rows.map((row) => row.digest)
}
