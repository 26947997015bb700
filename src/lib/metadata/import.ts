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
import pLimit from 'p-limit'
import {MediaTypeIds} from './import-db.js'
import {addCounts, addWrites, zeroCounts, zeroWrites, type ImportCounts, type ImportWrites} from './import-counts.js'
import {importRepository, type ImportShared, type RepositoryOutcome} from './import-repository.js'
import {dryRunRepository} from './import-dry-run.js'
import {scanRepository, writeGroup, type LargeRepository, type RepositoryScan} from './import-group.js'
import {removeVanishedRepositories} from './import-vanished.js'
import {dropBlobListing, listBlobsForImport} from './import-blob-listing.js'
import {CheckpointWindow, type Slot} from './import-window.js'
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

/** Manifest payload bytes of one group of repositories written together. */
const GROUP_BYTES = 8 * 1024 * 1024
/** Repositories written together at most (repositories with no manifest count for nothing otherwise). */
const GROUP_REPOSITORIES = 1000

/** What reading a repository gave: a small one whole, a large one's name, or (dry-run) its counts. */
type Scanned = RepositoryScan | LargeRepository | {kind: 'walked'; outcome: RepositoryOutcome}

/** A repository listed, read (or being read) ahead of the writer, in listing order. */
interface Pending {
  name: string
  slot: Slot<RepositoryOutcome>
  scan: Promise<Scanned>
}

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
  /** every repository of this shard the listing named, before the checkpoint too */
  private readonly listed = new Set<string>()
  private listingComplete = false
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
      removedRepositories: [],
      problems: [],
      problemCount: 0,
      blobsListed: null,
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
      batchSize: opts.batchSize ?? 1000,
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
    try {
      await this.listBlobs()
      await this.walk()
    } finally {
      if (this.shared.blobListingJobId !== undefined)
        await dropBlobListing(this.opts.db!, this.shared.blobListingJobId).catch(() => undefined)
    }
    await this.removeVanished()
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

  /**
   * Lists blobs/ into the database first (see import-blob-listing.ts): on object storage a stat is a
   * request, and an import stat'ed every blob its manifests named that the database lacked (3,789
   * manifests on radosgw: 17,673 stats, 22.5 s; without them 8.8 s). A resumed run lists again: the
   * listing is fresh, and costs a thousandth of the stats it saves. A listing that fails part way is
   * used as far as it got; what it did not reach is stat'ed as before.
   */
  private async listBlobs(): Promise<void> {
    const {opts, job, result, logger} = this
    const wanted = opts.blobListing ?? (opts.driver.kind !== 'file' && !result.filters)
    if (!wanted || this.dryRun || !opts.db || job.id === null) return
    const started = Date.now()
    this.shared.blobListingJobId = job.id
    try {
      result.blobsListed = await listBlobsForImport(opts.db, opts.driver, job.id, job.signal)
      logger.info('blobs listed', {blobs: result.blobsListed, ms: Date.now() - started})
    } catch (error) {
      job.signal.throwIfAborted()
      logger.warn("listing blobs/ failed: blobs it did not reach are stat'ed one by one", {
        error: errorMessage(error),
      })
    }
  }

  /**
   * Lists the repositories of this shard and reads a few at once, ahead of the writes (bounded); the
   * writer takes them in listing order and writes small ones many to a transaction, a large one alone.
   */
  private async walk(): Promise<void> {
    const {opts, job, result, logger} = this
    const selected = repositoryFilter(result.filters)
    const after = this.base.after
    const readers = Math.max(1, opts.repositoryConcurrency ?? 8)
    // A writer holds one connection for its transaction and may borrow a second one for the shared rows
    // (blobs, media types); the job's heartbeat and checkpoint need one more.
    const poolMax = opts.db?.pool.options.max ?? 10
    const writers = Math.max(1, Math.min(opts.writers ?? 2, Math.floor((poolMax - 1) / 2)))
    const maxAhead = Math.max(2 * readers, 64)
    const queue: Pending[] = []
    let listingDone = false
    let wakeWriter: (() => void) | undefined
    let wakeReader: (() => void) | undefined
    const readLimit = pLimit(readers)
    const producer = (async () => {
      try {
        for await (const name of listRepositories(opts.driver, (p: Problem) => this.shared.report(p), job.signal)) {
          if (job.signal.aborted) break
          if (!selected(name)) continue
          if (shardOfRepository(name, job.shard.count) !== job.shard.index) continue
          if (!result.filters) this.listed.add(name)
          if (after !== null && compareRepositories(name, after) <= 0) continue
          this.current = name
          const scan = readLimit(() => this.scanOne(name))
          scan.catch(() => {}) // awaited by the writer
          queue.push({name, slot: this.window.start(name), scan})
          wakeWriter?.()
          while (queue.length >= maxAhead && !job.signal.aborted) await new Promise<void>((r) => (wakeReader = r))
        }
        this.listingComplete = !job.signal.aborted
      } catch (error) {
        if (!job.signal.aborted) {
          // The repository listing itself failed: what was imported stays, the job is resumable.
          result.failed.push({repository: '(listing)', message: errorMessage(error)})
          logger.error('listing repositories failed', {error: errorMessage(error)})
        }
      } finally {
        listingDone = true
        wakeWriter?.()
      }
    })()
    const take = async (): Promise<Pending | undefined> => {
      while (queue.length === 0 && !listingDone) await new Promise<void>((r) => (wakeWriter = r))
      const item = queue.shift()
      wakeReader?.()
      return item
    }

    const writeLimit = pLimit(writers)
    const writes = new Set<Promise<void>>()
    const dispatch = async (task: () => Promise<void>): Promise<void> => {
      const tracked: Promise<void> = writeLimit(task).finally(() => {
        writes.delete(tracked)
        this.advance()
      })
      writes.add(tracked)
      if (writes.size >= writers) await Promise.race(writes)
    }
    let group: Array<{item: Pending; scan: RepositoryScan}> = []
    let groupManifests = 0
    let groupBytes = 0
    const flush = async (): Promise<void> => {
      if (group.length === 0) return
      const taken = group
      group = []
      groupManifests = 0
      groupBytes = 0
      await dispatch(() => this.writeScans(taken))
    }
    try {
      for (;;) {
        const item = await take()
        if (!item) break
        if (job.signal.aborted) {
          item.slot.failed()
          continue
        }
        let scanned: Scanned
        try {
          scanned = await item.scan
        } catch (error) {
          this.fail(item, error)
          continue
        }
        if (scanned.kind === 'walked') {
          this.finish(item, scanned.outcome)
          this.advance()
        } else if (scanned.kind === 'large') {
          await flush()
          await dispatch(() => this.importLarge(item))
        } else {
          group.push({item, scan: scanned})
          groupManifests += scanned.manifests
          groupBytes += scanned.bytes
          if (
            groupManifests >= this.shared.batchSize ||
            groupBytes >= GROUP_BYTES ||
            group.length >= GROUP_REPOSITORIES
          )
            await flush()
        }
      }
      if (job.signal.aborted) for (const {item} of group) item.slot.failed()
      else await flush()
    } finally {
      for (const item of queue.splice(0)) item.slot.failed()
      wakeReader?.()
      await Promise.allSettled([...writes])
      await producer
    }
  }

  /**
   * A full import (no --repository) whose listing completed removes the repositories of its shard that
   * storage no longer has; a shard removes only those of its own shard, which its listing looked at.
   */
  private async removeVanished(): Promise<void> {
    const {opts, job, result} = this
    if (this.dryRun || !opts.db || result.filters || !this.listingComplete || job.signal.aborted) return
    try {
      const removed = await removeVanishedRepositories({
        db: opts.db,
        driver: opts.driver,
        listed: this.listed,
        shard: job.shard,
        jobId: job.id,
        report: this.shared.report,
        signal: job.signal,
      })
      this.runWrites.deleted.repositories += removed.length
      result.removedRepositories = removed.slice(0, opts.maxProblems ?? 1000)
      for (const name of removed) this.logger.info('removed a repository storage no longer has', {repository: name})
    } catch (error) {
      if (job.signal.aborted) return
      result.failed.push({repository: '(repositories storage no longer has)', message: errorMessage(error)})
      this.logger.error('removing repositories storage no longer has failed', {error: errorMessage(error)})
    }
  }

  /** Reads one repository: whole when it is small, only its size when not; dry-run: the walk that counts. */
  private async scanOne(name: string): Promise<Scanned> {
    if (!this.shared.db) return {kind: 'walked', outcome: await dryRunRepository(this.shared, name)}
    return scanRepository(this.shared, name)
  }

  private async writeScans(group: Array<{item: Pending; scan: RepositoryScan}>): Promise<void> {
    const shared = {...this.shared, db: this.shared.db!}
    try {
      const outcomes = await writeGroup(
        shared,
        group.map((g) => g.scan),
      )
      for (const {item} of group) this.finish(item, outcomes.get(item.name)!)
    } catch (error) {
      if (this.job.signal.aborted || group.length === 1) {
        for (const {item} of group) this.fail(item, error)
        return
      }
      // One repository's bad data must not fail the others: each is written again on its own.
      this.logger.warn('a group of repositories failed to write; writing each on its own', {
        repositories: group.length,
        error: errorMessage(error),
      })
      for (const {item, scan} of group) {
        try {
          this.finish(item, (await writeGroup(shared, [scan])).get(item.name)!)
        } catch (single) {
          this.fail(item, single)
        }
      }
    }
  }

  private async importLarge(item: Pending): Promise<void> {
    try {
      this.finish(item, await importRepository({...this.shared, db: this.shared.db!}, item.name))
    } catch (error) {
      this.fail(item, error)
    }
  }

  private finish(item: Pending, outcome: RepositoryOutcome): void {
    item.slot.done(outcome)
    addCounts(this.runCounts, outcome.counts)
    addWrites(this.runWrites, outcome.written)
    this.shared.progress()
  }

  private fail(item: Pending, error: unknown): void {
    item.slot.failed()
    if (this.job.signal.aborted) return
    const message = errorMessage(error)
    this.result.failed.push({repository: item.name, message})
    this.logger.error('repository import failed; it is retried on --resume', {repository: item.name, error: message})
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
