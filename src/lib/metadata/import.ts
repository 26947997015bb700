/**
 * `regops import`: walks a registry's storage (distribution v2 layout) and writes the metadata database.
 *
 * - Streams: repositories one by one (a few at once), each repository's manifest revisions in batches;
 *   nothing is collected over the whole store, so memory stays flat however large it is.
 * - Batched and idempotent writes (see import-db.ts): a second run over an unchanged store changes no row.
 * - One transaction per repository: a process killed at any instant leaves each repository either fully
 *   imported or untouched (blobs, namespaces and media types are written before, idempotently).
 * - Resumable: a job row (kind 'import') whose checkpoint is the last repository imported with all
 *   repositories before it, in listing order (byte order of `name + '/'`). `resumeJobId` continues after it.
 * - Sharded by repository: shard = first 4 bytes of sha256(name) mod count, stable everywhere.
 * - Bad input is a Problem with its key, never a crash: the rest is imported.
 */
import {randomUUID} from 'node:crypto'
import {MediaTypeIds} from './import-db.js'
import {addCounts, addWrites, zeroCounts, zeroWrites, type ImportCounts, type ImportWrites} from './import-counts.js'
import {importRepository, type ImportShared, type RepositoryOutcome} from './import-repository.js'
import {dryRunRepository} from './import-dry-run.js'
import {CheckpointWindow} from './import-window.js'
import {
  compareRepositories,
  repositoryFilter,
  shardOfRepository,
  type ImportOptions,
  type ImportResult,
} from './import-options.js'
import {UsageError, errorMessage} from '../errors.js'
import {runJob, type JobEnd, type RunningJob} from '../jobs/runner.js'
import {silentLogger, type Logger} from '../output/logger.js'
import {listRepositories, type Problem} from '../storage/repositories.js'

export type {ImportCounts, ImportProblem, ImportProblemKind, ImportWrites} from './import-counts.js'
export {compareRepositories, repositoryFilter, shardOfRepository} from './import-options.js'
export type {ImportOptions, ImportProgress, ImportResult} from './import-options.js'

export const IMPORT_JOB_KIND = 'import'

interface ImportCheckpoint {
  after: string | null
  counts: ImportCounts
  written: ImportWrites
  problemCount: number
}

/**
 * Imports the storage of one region into the metadata database (or, with dryRun, only walks it and
 * counts). A signal stops it after the repositories in flight, with the checkpoint saved.
 */
export async function importStorage(opts: ImportOptions): Promise<ImportResult> {
  const {driver, db} = opts
  const dryRun = Boolean(opts.dryRun)
  if (!dryRun && !db)
    throw new UsageError(
      'import needs a database (database.url, DATABASE_URL or --database-url); --dry-run walks storage without one',
    )
  if (dryRun && opts.resumeJobId)
    throw new UsageError('--resume and --dry-run do not go together: a dry-run writes no job')
  const shard = opts.shard
  if (shard && (shard.count < 1 || shard.index < 0 || shard.index >= shard.count))
    throw new UsageError(`invalid shard ${shard.index}/${shard.count}`)
  const filters = opts.repositories && opts.repositories.length > 0 ? [...opts.repositories] : undefined
  // A resume states only what was given; a new job stores its group (shared by its shards), and whether it covers everything.
  const params = opts.resumeJobId
    ? {repositories: filters, group: opts.group}
    : {
        group: dryRun ? opts.group : (opts.group ?? randomUUID()),
        location: driver.location,
        repositories: filters ?? null,
        complete: filters === undefined,
      }
  return runJob<ImportCheckpoint, ImportResult>(
    dryRun ? undefined : db,
    {
      kind: IMPORT_JOB_KIND,
      params,
      shard,
      resume: opts.resumeJobId,
      key: opts.jobKey,
      // a keyed re-run states its group only when given: a new job's generated one is no statement
      stated: {...params, group: opts.group},
      region: driver.region,
      signal: opts.signal,
      logger: opts.logger ?? silentLogger,
    },
    (job) => new ImportRun(opts, job, dryRun).run(),
  )
}

/** One run of an import job: the walk over repositories, a few at once, and the in-order checkpoint. */
class ImportRun {
  private readonly started = Date.now()
  private readonly logger: Logger
  private readonly base: ImportCheckpoint
  private readonly result: ImportResult
  private readonly shared: ImportShared
  private readonly runCounts = zeroCounts()
  private readonly runWrites = zeroWrites()
  private readonly window = new CheckpointWindow<RepositoryOutcome>()
  private readonly checkpointed: ImportCheckpoint
  private current: string | undefined
  private dirty = false
  private lastSave = 0
  private saving: Promise<void> = Promise.resolve()

  constructor(
    private readonly opts: ImportOptions,
    private readonly job: RunningJob<ImportCheckpoint>,
    private readonly dryRun: boolean,
  ) {
    this.logger = opts.logger ?? silentLogger
    const cp = job.checkpoint
    this.base = cp
      ? {
          after: cp.after,
          counts: {...zeroCounts(), ...cp.counts},
          written: {...zeroWrites(), ...cp.written, deleted: {...zeroWrites().deleted, ...cp.written?.deleted}},
          problemCount: cp.problemCount ?? 0,
        }
      : {after: null, counts: zeroCounts(), written: zeroWrites(), problemCount: 0}
    this.checkpointed = {...this.base, counts: {...this.base.counts}, written: structuredClone(this.base.written)}
    const params = job.params as {group?: string; repositories?: string[] | null}
    this.result = {
      kind: 'import',
      jobId: job.id ?? undefined,
      group: params.group,
      dryRun,
      region: opts.driver.region,
      location: opts.driver.location,
      shard: job.shard,
      filters: params.repositories ?? undefined,
      resumedAfter: this.base.after ?? undefined,
      checkpoint: this.base.after ?? undefined,
      ...zeroCounts(),
      written: zeroWrites(),
      failed: [],
      problems: [],
      problemCount: 0,
      durationMs: 0,
    }
    this.shared = this.makeShared()
  }

  private makeShared(): ImportShared {
    const {opts, result, logger} = this
    const maxProblems = opts.maxProblems ?? 1000
    const db = this.dryRun ? undefined : opts.db
    const shared: ImportShared = {
      driver: opts.driver,
      db,
      mediaTypes: db ? new MediaTypeIds(db) : undefined,
      namespaces: new Map(),
      concurrency: opts.concurrency ?? 16,
      batchSize: opts.batchSize ?? 200,
      signal: this.job.signal,
      live: {manifests: 0, blobs: 0},
      report(p) {
        result.problemCount++
        if (result.problems.length < maxProblems) result.problems.push(p)
        logger.debug('problem', {problem: p.kind, key: p.key, message: p.message})
      },
      progress: () => {
        opts.onProgress?.({
          repositories: this.runCounts.repositories,
          manifests: shared.live.manifests,
          blobs: shared.live.blobs,
          problems: result.problemCount,
          failed: result.failed.length,
          current: this.current,
          elapsedMs: Date.now() - this.started,
        })
      },
    }
    return shared
  }

  async run(): Promise<JobEnd<ImportResult>> {
    const {result, job} = this
    await this.walk()
    this.advance()
    await this.save(true)
    result.checkpoint = this.checkpointed.after ?? undefined
    addCounts(result, this.base.counts)
    addCounts(result, this.runCounts)
    addWrites(result.written, this.base.written)
    addWrites(result.written, this.runWrites)
    result.durationMs = Date.now() - this.started
    const stats = {
      counts: Object.fromEntries(Object.keys(zeroCounts()).map((k) => [k, result[k as keyof ImportCounts]])),
      written: result.written,
      problemCount: this.base.problemCount + result.problemCount,
      failed: result.failed.length,
      durationMs: result.durationMs,
    }
    job.showStats(() => ({...stats, checkpoint: this.checkpointed}))
    // Stopped by a signal (or a lost heartbeat): the checkpoint is saved; the runner ends the job.
    job.signal.throwIfAborted()
    // The checkpoint stays as saved: a failed job resumes after its last complete repository.
    const failure =
      result.failed.length > 0
        ? `${result.failed.length} repositories failed; resume with --resume ${job.id}`
        : undefined
    return {result, stats, failure}
  }

  /** Lists the repositories and imports those of this shard, a few at once. */
  private async walk(): Promise<void> {
    const {opts, job, shared, result, logger} = this
    const selected = repositoryFilter(result.filters)
    const after = this.base.after
    // Each repository in flight holds one connection for its transaction and borrows a second one for
    // the shared rows (blobs, media types): more repositories than the pool can serve would wait forever.
    const poolMax = opts.db?.pool.options.max ?? 10
    const repositoryConcurrency = Math.max(
      1,
      Math.min(opts.repositoryConcurrency ?? 4, this.dryRun ? Infinity : Math.floor((poolMax - 1) / 2)),
    )
    const inflight = new Set<Promise<void>>()
    try {
      for await (const name of listRepositories(opts.driver, (p: Problem) => shared.report(p), job.signal)) {
        if (job.signal.aborted) break
        if (!selected(name)) continue
        if (shardOfRepository(name, job.shard.count) !== job.shard.index) continue
        if (after !== null && compareRepositories(name, after) <= 0) continue
        this.current = name
        const tracked: Promise<void> = this.importOne(name).finally(() => {
          inflight.delete(tracked)
          this.advance()
        })
        inflight.add(tracked)
        if (inflight.size >= repositoryConcurrency) await Promise.race(inflight)
      }
    } catch (error) {
      if (!job.signal.aborted) {
        // The repository listing itself failed: what was imported stays, the job is resumable.
        result.failed.push({repository: '(listing)', message: errorMessage(error)})
        logger.error('listing repositories failed', {error: errorMessage(error)})
      }
    } finally {
      await Promise.allSettled([...inflight])
    }
  }

  private async importOne(name: string): Promise<void> {
    const slot = this.window.start(name)
    const shared = this.shared
    try {
      const outcome = shared.db
        ? await importRepository({...shared, db: shared.db}, name)
        : await dryRunRepository(shared, name)
      slot.done(outcome)
      addCounts(this.runCounts, outcome.counts)
      addWrites(this.runWrites, outcome.written)
      shared.progress()
    } catch (error) {
      slot.failed()
      if (this.job.signal.aborted) return
      const message = errorMessage(error)
      this.result.failed.push({repository: name, message})
      this.logger.error('repository import failed; it is retried on --resume', {repository: name, error: message})
    }
  }

  /** Moves the checkpoint past the repositories now complete in listing order. */
  private advance(): void {
    for (const {name, outcome} of this.window.advance()) {
      this.checkpointed.after = name
      addCounts(this.checkpointed.counts, outcome.counts)
      addWrites(this.checkpointed.written, outcome.written)
      this.dirty = true
    }
    void this.save()
  }

  /** Writes the checkpoint at most every checkpointEveryMs (default 500 ms), and at the end. */
  private save(force = false): Promise<void> {
    const {job, checkpointed} = this
    if (job.id === null || !this.dirty) return this.saving
    if (!force && Date.now() - this.lastSave < (this.opts.checkpointEveryMs ?? 500)) return this.saving
    this.dirty = false
    this.lastSave = Date.now()
    const snapshot = {
      ...checkpointed,
      counts: {...checkpointed.counts},
      written: structuredClone(checkpointed.written),
      problemCount: this.base.problemCount + this.result.problemCount,
    }
    const jobId = job.id
    this.saving = this.saving.then(() =>
      job
        .save(snapshot, snapshot)
        .catch((error: unknown) =>
          this.logger.warn('could not save the checkpoint', {jobId, error: errorMessage(error)}),
        ),
    )
    return this.saving
  }
}
