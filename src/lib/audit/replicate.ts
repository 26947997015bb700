import {createHash} from 'node:crypto'
import type {Db} from '../metadata/db.js'
import {UsageError, errorMessage} from '../errors.js'
import {runJob, type RunningJob, type Shard} from '../jobs/runner.js'
import type {Logger} from '../output/logger.js'
import type {ObjectInfo, StorageDriver} from '../storage/driver.js'
import {REPOSITORIES_PREFIX, parseKey, shardOfDigest, shardsFor, type PathSpec} from '../storage/layout.js'
import {copyVerified, finishInterruptedCopies, type VerifiedCopier} from './copy.js'
import type {AuditProblem} from './findings.js'
import {UNKNOWN, mergeSorted} from './merge.js'
import {blobPrefix} from './sources.js'
import {Bounded} from './verify.js'

export const REPLICATE_KIND = 'replicate'
const MAX_PROBLEMS_IN_RESULT = 100
/** Repository keys copied between checkpoints: a resume redoes at most this many verified copies. */
const LINK_BATCH = 200

export type ReplicateOptions = {
  from: StorageDriver
  to: StorageDriver
  shard?: Shard
  resume?: string
  /** --job-key: a re-run with the same key resumes the job, or returns its result when done */
  jobKey?: string
  concurrency: number
  logger: Logger
  signal?: AbortSignal
  onProgress?: (p: {phase: string; copied: number; planned: number}) => void
} & ({mode: 'dry-run'; db?: Db} | {mode: 'apply'; db: Db})

export interface ReplicateResult {
  kind: 'replicate'
  jobId: string | null
  from: string
  to: string
  mode: 'dry-run' | 'apply'
  shard: Shard
  /** objects the target lacks (in a dry-run: what --apply would copy) */
  planned: {blobs: number; bytes: number; links: number; tags: number}
  copied: {blobs: number; bytes: number; links: number; tags: number}
  failed: number
  /** present in the target with other content: never overwritten (audit regions, then repair, decides) */
  conflicts: Array<{key: string; reason: string}>
  conflictCount: number
  problems: AuditProblem[]
  problemCount: number
  durationMs: number
}

interface ReplicateCheckpoint {
  phase: 'blobs' | 'repositories' | 'done'
  prefixesDone: number
  /** the last repository key whose batch is complete */
  repositoriesAfter?: string
  result: Pick<ReplicateResult, 'planned' | 'copied' | 'failed' | 'conflictCount' | 'problemCount'>
}

/**
 * New-region backfill and storage migration: copies every blob, then every manifest revision link,
 * _layers link and tag that the target lacks, each verified (blobs re-hashed where they land, links read
 * back) and journaled. Blobs go first, so that no link or tag ever names content the target does not
 * hold yet. Dry-run unless mode is 'apply'. A job: checkpoints after each prefix and each batch of links.
 */
export async function replicate(opts: ReplicateOptions): Promise<ReplicateResult> {
  const started = performance.now()
  if (opts.from.region === opts.to.region)
    throw new UsageError(`--from and --to are the same region (${opts.from.region})`)
  const db = opts.mode === 'apply' || opts.resume ? opts.db : undefined
  if (opts.resume && !db) throw new UsageError('--resume needs the database that holds the job')
  return runJob<ReplicateCheckpoint, ReplicateResult>(
    db,
    {
      kind: REPLICATE_KIND,
      params: {from: opts.from.region, to: opts.to.region, mode: opts.mode},
      shard: opts.shard,
      resume: opts.resume,
      key: opts.jobKey,
      region: opts.to.region,
      signal: opts.signal,
      logger: opts.logger,
    },
    async (job) => {
      const result = await new Replication(opts, job).run(started)
      return {
        result,
        stats: {copied: result.copied, failed: result.failed},
        failure: result.failed > 0 || result.problemCount > 0 ? 'some objects could not be read or copied' : undefined,
      }
    },
  )
}

class Replication {
  private readonly state: ReplicateCheckpoint
  private readonly shards: string[]
  private readonly conflicts: ReplicateResult['conflicts'] = []
  private readonly problems: AuditProblem[] = []
  private readonly copier?: VerifiedCopier
  private readonly pool: Bounded

  constructor(
    private readonly opts: ReplicateOptions,
    private readonly job: RunningJob<ReplicateCheckpoint>,
  ) {
    this.shards = shardsFor(job.shard.index, job.shard.count)
    this.state = job.checkpoint ?? {
      phase: 'blobs',
      prefixesDone: 0,
      result: {
        planned: {blobs: 0, bytes: 0, links: 0, tags: 0},
        copied: {blobs: 0, bytes: 0, links: 0, tags: 0},
        failed: 0,
        conflictCount: 0,
        problemCount: 0,
      },
    }
    this.pool = new Bounded(opts.concurrency)
    if (opts.mode === 'apply')
      this.copier = {db: opts.db, jobId: job.id, action: 'replicate', source: opts.from, signal: job.signal}
  }

  private get tally() {
    return this.state.result
  }

  private problem(region: string, where: string, error: unknown): void {
    this.tally.problemCount++
    if (this.problems.length < MAX_PROBLEMS_IN_RESULT) this.problems.push({region, where, message: errorMessage(error)})
    this.opts.logger.warn('replicate: unreadable input, skipped', {region, where, error: errorMessage(error)})
  }

  private conflict(key: string, reason: string): void {
    this.tally.conflictCount++
    if (this.conflicts.length < MAX_PROBLEMS_IN_RESULT) this.conflicts.push({key, reason})
  }

  private async save(): Promise<void> {
    await this.job.save(this.state, this.tally)
  }

  async run(started: number): Promise<ReplicateResult> {
    if (this.copier) {
      for (const finished of await finishInterruptedCopies(this.copier, [this.opts.from, this.opts.to])) {
        if (finished.outcome === 'copied') continue
        this.tally.failed++
        this.problem(this.opts.to.region, 'a copy interrupted by the previous run', finished.message)
      }
    }
    if (this.state.phase === 'blobs') {
      for (let i = this.state.prefixesDone; i < this.shards.length; i++) {
        this.job.signal.throwIfAborted()
        await this.replicatePrefix(this.shards[i])
        this.state.prefixesDone = i + 1
        await this.save()
      }
      this.state.phase = 'repositories'
      await this.save()
    }
    if (this.state.phase === 'repositories') {
      await this.replicateRepositories()
      this.state.phase = 'done'
      await this.save()
    }
    const t = this.tally
    return {
      kind: 'replicate',
      jobId: this.job.id,
      from: this.opts.from.region,
      to: this.opts.to.region,
      mode: this.opts.mode,
      shard: this.job.shard,
      planned: t.planned,
      copied: t.copied,
      failed: t.failed,
      conflicts: this.conflicts,
      conflictCount: t.conflictCount,
      problems: this.problems,
      problemCount: t.problemCount,
      durationMs: Math.round(performance.now() - started),
    }
  }

  private async copy(key: string, size: number, what: 'blobs' | 'links' | 'tags'): Promise<void> {
    this.tally.planned[what]++
    if (what === 'blobs') this.tally.planned.bytes += size
    if (!this.copier) return
    await this.pool.run(async () => {
      const outcome = await copyVerified(this.copier!, this.opts.to, key, {})
      if (outcome.outcome === 'copied') {
        this.tally.copied[what]++
        if (what === 'blobs') this.tally.copied.bytes += outcome.size ?? 0
        this.opts.onProgress?.({
          phase: what,
          copied: this.tally.copied.blobs + this.tally.copied.links + this.tally.copied.tags,
          planned: this.tally.planned.blobs + this.tally.planned.links + this.tally.planned.tags,
        })
      } else if (outcome.outcome === 'failed') {
        this.tally.failed++
        this.problem(this.opts.to.region, key, outcome.message)
      } else {
        this.problem(this.opts.from.region, key, outcome.message)
      }
    })
  }

  private async replicatePrefix(prefix: string): Promise<void> {
    const {from, to} = this.opts
    const signal = this.job.signal
    const rows = mergeSorted([from.list(blobPrefix(prefix), {signal}), to.list(blobPrefix(prefix), {signal})], (f) =>
      this.problem(f.source === 0 ? from.region : to.region, blobPrefix(prefix), f.error),
    )
    for await (const row of rows) {
      const [source, target] = row.slots
      if (source === undefined || source === UNKNOWN || target === UNKNOWN) continue
      if (target === undefined) await this.copy(row.key, source.size, 'blobs')
      else if (target.size !== source.size)
        this.conflict(row.key, `size ${target.size} in ${to.region}, ${source.size} in ${from.region}`)
    }
    await this.pool.wait()
  }

  private async replicateRepositories(): Promise<void> {
    const {from, to} = this.opts
    const signal = this.job.signal
    const mine = new Set(this.shards)
    const options = {
      signal,
      startAfter: this.state.repositoriesAfter,
      prune: (dir: string) => dir.endsWith('/_uploads/'),
    }
    const listOf = (driver: StorageDriver) => driver.list(REPOSITORIES_PREFIX, options)
    const rows = mergeSorted([listOf(from), listOf(to)], (f) =>
      this.problem(f.source === 0 ? from.region : to.region, REPOSITORIES_PREFIX, f.error),
    )
    let inBatch = 0
    for await (const row of rows) {
      const [source, target] = row.slots as Array<ObjectInfo | undefined | typeof UNKNOWN>
      if (source === undefined || source === UNKNOWN || target === UNKNOWN) continue
      let spec: PathSpec
      try {
        spec = parseKey(row.key)
      } catch (error) {
        this.problem(from.region, row.key, error)
        continue
      }
      if (!this.owns(spec, row.key, mine)) continue
      if (target === undefined) {
        await this.copy(
          row.key,
          source.size,
          spec.kind === 'tag-current-link' || spec.kind === 'tag-index-link' ? 'tags' : 'links',
        )
      } else if (spec.kind === 'tag-current-link') {
        const [a, b] = await Promise.all([from.readSmall(row.key, 1024), to.readSmall(row.key, 1024)])
        if (!a.equals(b))
          this.conflict(row.key, `tag names ${b.toString()} in ${to.region}, ${a.toString()} in ${from.region}`)
      }
      if (++inBatch >= LINK_BATCH) {
        await this.pool.wait()
        this.state.repositoriesAfter = row.key
        await this.save()
        inBatch = 0
      }
    }
    await this.pool.wait()
  }

  /** The shard that handles a repository key: links by their digest's prefix, tags by a hash of the key. */
  private owns(spec: PathSpec, key: string, mine: Set<string>): boolean {
    switch (spec.kind) {
      case 'layer-link':
      case 'manifest-revision-link':
        return mine.has(spec.digest.startsWith('sha256:') ? shardOfDigest(spec.digest) : '00')
      case 'tag-current-link':
      case 'tag-index-link':
        return mine.has(createHash('sha256').update(key).digest('hex').slice(0, 2))
      default:
        return false
    }
  }
}
