import {createHash, randomUUID} from 'node:crypto'
import type {Db} from '../metadata/db.js'
import {UsageError, errorMessage} from '../errors.js'
import {runJob, type RunningJob, type Shard} from '../jobs/runner.js'
import type {Logger} from '../output/logger.js'
import {asReportTarget, type ReportTarget} from '../output/report-target.js'
import {RegionUnavailableError, type ObjectInfo, type StorageDriver} from '../storage/driver.js'
import {
  REPOSITORIES_PREFIX,
  parseKey,
  parseLink,
  shardOfDigest,
  shardsFor,
  splitDigest,
  type PathSpec,
} from '../storage/layout.js'
import {classifyBlob, corruptionBound, mostCommon, type AuditLevel, type BlobCopy} from './classify.js'
import {FindingsSink, driftCount, type AuditProblem, type Finding, type FindingCounts} from './findings.js'
import {UNKNOWN, inBatches, mergeSorted, mergeSortedBatches, type Slot} from './merge.js'
import {RegionRepair, type RepairCounts} from './repair.js'
import {LinkSpill, blobPrefix, databaseBlobs, listingSource, type BlobListingSource} from './sources.js'
import {Bounded, blobVerifies, sampler} from './verify.js'
import {anySignal} from '../jobs/signals.js'

export const AUDIT_REGIONS_KIND = 'audit-regions'
const MAX_PROBLEMS_IN_RESULT = 100
const LINK_LIMIT = 1024

export interface AuditRegionsOptions {
  /** the regions compared, primary first (ties are broken in this order) */
  drivers: StorageDriver[]
  /** per region, a listing source other than LIST (an S3 Inventory report) */
  listings?: Record<string, BlobListingSource>
  /** the metadata database: a source of digests and sizes, and the job's home */
  db?: Db
  /** on a resume, settings left undefined are the job's own */
  level?: AuditLevel
  /** re-hash this fraction of blobs (at level presence or size) */
  sample?: number
  inFlightMs?: number
  /** the findings' report: a path, or a parsed target (stdout, an s3:// object) */
  findingsFile?: string | ReportTarget
  shard?: Shard
  resume?: string
  /** --job-key: a re-run with the same key resumes the job, or returns its result when done */
  jobKey?: string
  /** copy missing and corrupt objects from this region (needs the database, for the journal) */
  repairFrom?: string
  concurrency: number
  logger: Logger
  signal?: AbortSignal
  /** the time the in-flight window is measured from (default: now) */
  now?: Date
  onProgress?: (p: {prefixesDone: number; prefixes: number; findings: number}) => void
  /** input found unreadable before the audit began (an inventory's bad rows) */
  problems?: AuditProblem[]
}

interface AuditSettings {
  level: AuditLevel
  sample?: number
  inFlightMs: number
  repairFrom?: string
}

export interface AuditRegionsResult {
  kind: 'audit-regions'
  jobId: string | null
  regions: string[]
  sources: Record<string, 'list' | 'inventory'>
  level: AuditLevel
  databaseUsed: boolean
  shard: Shard
  prefixes: number
  /** blobs listed per region */
  scanned: Record<string, number>
  findings: {total: number; drift: number; byRegion: FindingCounts; file?: string; first: Finding[]}
  /** re-hashing: copies checked, corrupt found, and the bound a sample supports */
  checksum: {checked: number; corrupt: number; sampleFraction?: number; bound95?: number; statement?: string}
  repair?: {from: string; copied: number; failed: number; unavailable: number}
  problems: AuditProblem[]
  problemCount: number
  cutoff: string
  durationMs: number
}

interface AuditCheckpoint {
  repositoriesDone: boolean
  prefixesDone: number
  counts: FindingCounts
  scanned: Record<string, number>
  checked: number
  corrupt: number
  repair: {copied: number; failed: number; unavailable: number}
  problemCount: number
  sampleSeed: string
  cutoff: string
}

/**
 * The cross-region audit. Per digest prefix, a k-way merge of every region's sorted blob listing, the
 * links found in the repositories, and the database's blobs: memory is one prefix's worth. The
 * repositories are merged key by key the same way (revision links, _layers links and tags). A job: it
 * checkpoints after each prefix and resumes where it stopped.
 */
export async function auditRegions(opts: AuditRegionsOptions): Promise<AuditRegionsResult> {
  const started = performance.now()
  const regions = opts.drivers.map((d) => d.region)
  if (regions.length < 2)
    throw new UsageError(`an audit compares at least two regions (given: ${regions.join(', ') || 'none'})`)
  if (opts.repairFrom !== undefined) {
    if (!regions.includes(opts.repairFrom))
      throw new UsageError(`--from ${opts.repairFrom} is not among the audited regions (${regions.join(', ')})`)
    if (!opts.db)
      throw new UsageError(
        '--repair journals every copy: it needs the database (database.url, DATABASE_URL or --database-url)',
      )
  }
  const params = {
    regions,
    level: opts.level,
    sample: opts.sample,
    inFlightMs: opts.inFlightMs,
    repairFrom: opts.repairFrom,
  }
  return runJob<AuditCheckpoint, AuditRegionsResult>(
    opts.db,
    {
      kind: AUDIT_REGIONS_KIND,
      params,
      shard: opts.shard,
      resume: opts.resume,
      key: opts.jobKey,
      region: regions.join(','),
      signal: opts.signal,
      logger: opts.logger,
    },
    async (job) => {
      const audit = new RegionsAudit(opts, job)
      const result = await audit.run(started)
      return {
        result,
        stats: {findings: result.findings.total, drift: result.findings.drift, problems: result.problemCount},
        failure:
          result.problemCount > 0 || (result.repair?.failed ?? 0) > 0
            ? 'some input could not be read or some copies failed'
            : undefined,
      }
    },
  )
}

/** What one prefix's comparison counted: folded into the checkpoint once the prefix is wholly done. */
interface PrefixTally {
  scanned: Record<string, number>
  checked: number
  corrupt: number
  repair: RepairCounts
}

/**
 * A prefix whose comparison is done or under way while its re-hashes and copies may still run. Its findings
 * wait here until every prefix before it is done, so the findings file and the checkpoint's counts hold
 * whole prefixes in order, however the re-hashes interleave.
 */
interface PrefixWork {
  prefix: string
  tally: PrefixTally
  findings: Finding[]
  /** re-hashes and copies started and not yet finished */
  tasks: number
  merged: boolean
}

/** Prefixes compared ahead of the oldest one still re-hashing: bounds the findings held back. */
const PREFIXES_AHEAD = 16

/**
 * Objects a region's listing holds ahead of the comparison, pages in flight included. The listing keeps
 * ahead of the comparison well within it on a 2-core host, and a larger bound only holds more once a
 * bucket outgrows it: an audit of two regions at 100k blobs peaked at 143-157 MiB with 16,000 (pages in
 * flight not counted) against 114-120 MiB at 10k; with 8,000, pages counted, at 131-135 MiB in the same
 * time (2.9-3.3 s), 1.14x of 10k.
 */
const LISTING_READ_AHEAD = 8_000

class RegionsAudit {
  private readonly regions: string[]
  private readonly shards: string[]
  private readonly problems: AuditProblem[] = []
  private problemCount: number
  private readonly state: AuditCheckpoint
  private readonly cutoff: Date
  private readonly sink: FindingsSink
  private readonly isSampled: (digest: string) => boolean
  /** re-hashes and copies in flight, per region (the one read, or written by a copy), as its requests are */
  private readonly pools: Bounded[]
  private readonly repair?: RegionRepair
  private readonly settings: AuditSettings
  /** regions that stopped answering: left out of the comparison (unknown, never absent) from then on */
  private readonly down = new Set<number>()
  private readonly stopListing = new AbortController()
  /** prefixes compared and not yet done, oldest first; the first one's findings go straight to the sink */
  private readonly window: PrefixWork[] = []
  private advancing: Promise<void> = Promise.resolve()
  private advanceError: unknown
  private headDone?: () => void

  constructor(
    private readonly opts: AuditRegionsOptions,
    private readonly job: RunningJob<AuditCheckpoint>,
  ) {
    this.regions = opts.drivers.map((d) => d.region)
    this.shards = shardsFor(job.shard.index, job.shard.count)
    const stored = job.params as Partial<AuditSettings>
    this.settings = {
      level: stored.level ?? opts.level ?? 'size',
      sample: stored.sample ?? opts.sample,
      inFlightMs: stored.inFlightMs ?? opts.inFlightMs ?? 15 * 60_000,
      repairFrom: stored.repairFrom ?? opts.repairFrom,
    }
    const saved = job.checkpoint
    const now = opts.now ?? new Date()
    this.state = saved ?? {
      repositoriesDone: false,
      prefixesDone: 0,
      counts: {},
      scanned: Object.fromEntries(this.regions.map((r) => [r, 0])),
      checked: 0,
      corrupt: 0,
      repair: {copied: 0, failed: 0, unavailable: 0},
      problemCount: 0,
      sampleSeed: randomUUID(),
      cutoff: new Date(now.getTime() - this.settings.inFlightMs).toISOString(),
    }
    this.problemCount = this.state.problemCount
    this.cutoff = new Date(this.state.cutoff)
    this.sink = new FindingsSink(opts.findingsFile, 1000, saved !== null, saved?.counts ?? {})
    for (const p of opts.problems ?? []) this.problem(p.region, p.where, p.message)
    const fraction = this.settings.level === 'checksum' ? 1 : (this.settings.sample ?? 0)
    this.isSampled = sampler(fraction, this.state.sampleSeed)
    this.pools = this.regions.map(() => new Bounded(opts.concurrency))
    if (this.settings.repairFrom !== undefined && opts.db) {
      const source = this.driverOf(this.settings.repairFrom)
      this.repair = new RegionRepair(
        {db: opts.db, jobId: job.id, action: 'repair', source, signal: job.signal},
        this.settings.repairFrom,
        opts.logger,
      )
    }
  }

  private driverOf(region: string): StorageDriver {
    return this.opts.drivers[this.regions.indexOf(region)]
  }

  private problem(region: string, where: string, error: unknown): void {
    this.problemCount++
    if (this.problems.length < MAX_PROBLEMS_IN_RESULT) this.problems.push({region, where, message: errorMessage(error)})
    this.opts.logger.warn('audit: unreadable input, left out of the comparison', {
      region,
      where,
      error: errorMessage(error),
    })
  }

  /**
   * A listing failed. When the region gave no answer at all (refused, reset, timed out past the retries),
   * it is named once and left out from then on: asked again for every prefix, it would cost the retries'
   * back-off each time and name the same outage hundreds of times. Any other failure is that listing's.
   */
  private listingFailed(i: number, where: string, error: unknown): void {
    if (this.down.has(i)) return
    if (error instanceof RegionUnavailableError && error.details?.status === undefined && !this.job.signal.aborted) {
      this.down.add(i)
      this.problem(
        this.regions[i],
        where,
        `the region does not answer, left out of the rest of the audit: ${errorMessage(error)}`,
      )
      return
    }
    this.problem(this.regions[i], where, error)
  }

  async run(started: number): Promise<AuditRegionsResult> {
    const links = LinkSpill.create(this.shards)
    const remaining = this.shards.slice(this.state.prefixesDone)
    const listingSignal = anySignal([this.job.signal, this.stopListing.signal])
    const listings = this.opts.drivers.map(
      (d) =>
        this.opts.listings?.[d.region] ??
        listingSource(d, remaining, {signal: listingSignal, inFlight: 16, maxBuffered: LISTING_READ_AHEAD}),
    )
    try {
      await this.repair?.finishInterrupted(this.opts.drivers, this.state.repair)
      await this.walkRepositories(links)
      if (!this.state.repositoriesDone) {
        this.state.repositoriesDone = true
        await this.save()
      }
      for (const prefix of remaining) {
        this.job.signal.throwIfAborted()
        await this.comparePrefix(prefix, links, listings)
      }
      for (const pool of this.pools) await pool.wait()
      await this.advancing
      this.throwIfAdvanceFailed()
    } finally {
      this.stopListing.abort()
      await Promise.all(this.pools.map((pool) => pool.wait().catch(() => {})))
      await this.advancing.catch(() => {})
      await this.sink.close()
      await links.dispose()
    }
    return this.result(started, listings)
  }

  private async save(): Promise<void> {
    this.state.counts = this.sink.counts
    this.state.problemCount = this.problemCount
    await this.job.save(this.state, {findings: this.sink.total, prefixesDone: this.state.prefixesDone})
  }

  /** A finding of the repositories' walk, or of the oldest prefix not yet done: written now. */
  private async report(finding: Finding): Promise<void> {
    await this.sink.add(finding)
  }

  private async reportFor(work: PrefixWork, finding: Finding): Promise<void> {
    if (this.window[0] === work) await this.sink.add(finding)
    else work.findings.push(finding)
  }

  /**
   * A re-hash or copy of a prefix, run in the pool of the region it reads or writes: prefixes overlap, the
   * pools stay full, and a slow region does not hold the other's reads back.
   */
  private async task(work: PrefixWork, region: number, run: () => Promise<void>): Promise<void> {
    work.tasks++
    await this.pools[region].run(async () => {
      try {
        await run()
      } finally {
        work.tasks--
        // Only the oldest prefix's last task can let the window move on.
        if (work.tasks === 0 && this.window[0] === work) this.advance()
      }
    })
  }

  /** Folds the prefixes that are done, oldest first, into the checkpoint, and writes the next one's findings. */
  private advance(): void {
    this.advancing = this.advancing.then(async () => {
      for (;;) {
        const head = this.window[0]
        if (!head || !head.merged || head.tasks > 0) return
        this.window.shift()
        const tally = head.tally
        for (const [region, n] of Object.entries(tally.scanned)) this.state.scanned[region] += n
        this.state.checked += tally.checked
        this.state.corrupt += tally.corrupt
        for (const outcome of ['copied', 'failed', 'unavailable'] as const)
          this.state.repair[outcome] += tally.repair[outcome]
        this.state.prefixesDone++
        await this.save()
        this.opts.onProgress?.({
          prefixesDone: this.state.prefixesDone,
          prefixes: this.shards.length,
          findings: this.sink.total,
        })
        const next = this.window[0]
        if (next) for (const finding of next.findings.splice(0)) await this.sink.add(finding)
        this.headDone?.()
      }
    })
    // A checkpoint that cannot be written stops the audit: the comparison waiting for room learns it here.
    this.advancing = this.advancing.catch((error: unknown) => {
      this.advanceError ??= error
      this.headDone?.()
    })
  }

  private throwIfAdvanceFailed(): void {
    if (this.advanceError !== undefined) throw this.advanceError
  }

  /**
   * Revision links, _layers links and tags of every repository, merged key by key across the regions.
   * Always walked (the links decide which blobs are referenced); findings are reported only on the
   * first pass of a job, so a resume does not report them twice.
   */
  private async walkRepositories(links: LinkSpill): Promise<void> {
    const reporting = !this.state.repositoriesDone
    const mine = new Set(this.shards)
    const sources = this.opts.drivers.map((d) =>
      d.list(REPOSITORIES_PREFIX, {signal: this.job.signal, prune: (dir) => dir.endsWith('/_uploads/')}),
    )
    const rows = mergeSorted(sources, (f) => this.listingFailed(f.source, REPOSITORIES_PREFIX, f.error))
    for await (const row of rows) {
      let spec: PathSpec
      try {
        spec = parseKey(row.key)
      } catch (error) {
        if (reporting) this.slotsPresent(row.slots).forEach((i) => this.problem(this.regions[i], row.key, error))
        continue
      }
      if (spec.kind === 'layer-link' || spec.kind === 'manifest-revision-link') {
        if (!spec.digest.startsWith('sha256:')) continue
        const prefix = shardOfDigest(spec.digest)
        if (!mine.has(prefix)) continue
        const hex = splitDigest(spec.digest).hex
        for (const i of this.slotsPresent(row.slots)) links.add(prefix, hex, this.regions[i], row.key)
        if (reporting)
          await this.comparePresence(row.key, row.slots, spec.kind === 'layer-link' ? 'layer-link' : 'revision', spec)
      } else if (spec.kind === 'tag-current-link') {
        if (!reporting || !mine.has(shardOfKey(row.key))) continue
        await this.comparePresence(row.key, row.slots, 'tag', spec)
        await this.compareTag(row.key, row.slots, spec)
      }
    }
  }

  private slotsPresent(slots: Array<Slot<ObjectInfo>>): number[] {
    return slots.flatMap((slot, i) => (slot !== undefined && slot !== UNKNOWN ? [i] : []))
  }

  /** A link or tag present in some regions: missing where absent, or pending while the copies are fresh. */
  private async comparePresence(
    key: string,
    slots: Array<Slot<ObjectInfo>>,
    object: Finding['object'],
    spec: PathSpec,
  ): Promise<void> {
    const present = this.slotsPresent(slots)
    const absent = slots.flatMap((slot, i) => (slot === undefined ? [i] : []))
    if (absent.length === 0) return
    const named = {
      repository: 'repository' in spec ? spec.repository : undefined,
      digest: 'digest' in spec ? spec.digest : undefined,
      tag: 'tag' in spec ? spec.tag : undefined,
    }
    const fresh = present.filter((i) => (slots[i] as ObjectInfo).lastModified > this.cutoff)
    const absentIn = absent.map((i) => this.regions[i])
    if (fresh.length > 0) {
      for (const i of fresh)
        await this.report({kind: 'pending', object, region: this.regions[i], key, ...named, detail: {absentIn}})
      return
    }
    for (const i of absent) {
      await this.report({
        kind: 'missing',
        object,
        region: this.regions[i],
        key,
        ...named,
        detail: {heldBy: present.map((p) => this.regions[p])},
      })
      await this.repair?.object(this.opts.drivers[i], key, 'missing', this.state.repair)
    }
  }

  /** A tag whose current link names different manifests in different regions. */
  private async compareTag(
    key: string,
    slots: Array<Slot<ObjectInfo>>,
    spec: Extract<PathSpec, {kind: 'tag-current-link'}>,
  ): Promise<void> {
    const present = this.slotsPresent(slots)
    if (present.length < 2) return
    const digests = new Map<number, string>()
    await Promise.all(
      present.map(async (i) => {
        try {
          digests.set(i, parseLink(await this.opts.drivers[i].readSmall(key, LINK_LIMIT), key))
        } catch (error) {
          this.problem(this.regions[i], key, error)
        }
      }),
    )
    const read = present.filter((i) => digests.has(i))
    if (new Set(digests.values()).size < 2) return
    const expected = mostCommon(read.map((i) => digests.get(i)!))
    const byRegion = Object.fromEntries(read.map((i) => [this.regions[i], digests.get(i)]))
    for (const i of read) {
      if (digests.get(i) === expected) continue
      await this.report({
        kind: 'tag_mismatch',
        object: 'tag',
        region: this.regions[i],
        key,
        repository: spec.repository,
        tag: spec.tag,
        digest: digests.get(i),
        detail: {expected, byRegion},
      })
      if (this.repair) {
        const source = digests.get(this.regions.indexOf(this.settings.repairFrom!))
        await this.repair.tag(this.opts.drivers[i], key, {...spec, digest: source}, this.state.repair)
      }
    }
  }

  /** Every region's blobs of one prefix, merged with the links naming them and the database's rows. */
  private async comparePrefix(prefix: string, links: LinkSpill, listings: BlobListingSource[]): Promise<void> {
    this.throwIfAdvanceFailed()
    while (this.window.length >= PREFIXES_AHEAD) {
      await new Promise<void>((resolve) => (this.headDone = resolve))
      this.throwIfAdvanceFailed()
    }
    const work: PrefixWork = {
      prefix,
      tally: {
        scanned: Object.fromEntries(this.regions.map((r) => [r, 0])),
        checked: 0,
        corrupt: 0,
        repair: {copied: 0, failed: 0, unavailable: 0},
      },
      findings: [],
      tasks: 0,
      merged: false,
    }
    this.window.push(work)
    const regionCount = this.regions.length
    const signal = this.job.signal
    const where = blobPrefix(prefix)
    const sources: Array<AsyncIterable<ReadonlyArray<{key: string}>>> = [
      ...listings.map((l, i) =>
        this.down.has(i)
          ? regionDown()
          : (l.listPrefixInBatches?.(prefix, signal) ?? inBatches(l.listPrefix(prefix, signal))),
      ),
      links.listPrefix(prefix),
    ]
    if (this.opts.db) sources.push(databaseBlobs(this.opts.db, prefix))
    const inventoried = listings.some((l) => l.kind === 'inventory')
    let databaseFailure: unknown
    const batches = mergeSortedBatches(sources, (f) => {
      if (f.source < regionCount) this.listingFailed(f.source, where, f.error)
      else databaseFailure ??= f.error
    })
    // Awaits only where there is something to wait for (a finding, a re-hash, an inventory's HEAD): a row
    // of copies that agree is compared without giving up the thread.
    for await (const rows of batches)
      for (const row of rows) {
        if (databaseFailure !== undefined) throw databaseFailure
        let digest: string
        try {
          const spec = parseKey(row.key)
          if (spec.kind !== 'blob-data') throw new Error(`not a blob key`)
          digest = spec.digest
        } catch (error) {
          for (let i = 0; i < regionCount; i++)
            if (row.slots[i] !== undefined && row.slots[i] !== UNKNOWN) this.problem(this.regions[i], row.key, error)
          continue
        }
        const copies: BlobCopy[] = row.slots
          .slice(0, regionCount)
          .map((slot) => (slot === UNKNOWN ? 'unknown' : (slot as ObjectInfo | undefined)))
        copies.forEach((copy, i) => copy && copy !== 'unknown' && work.tally.scanned[this.regions[i]]++)
        if (inventoried) await this.confirmInventoried(row.key, copies, listings)
        const linkSlot = row.slots[regionCount] as {links: Array<{region: string; key: string}>} | undefined
        const databaseSlot = this.opts.db
          ? (row.slots[regionCount + 1] as {size: number} | undefined | typeof UNKNOWN)
          : undefined
        const databaseSize = databaseSlot && databaseSlot !== UNKNOWN ? databaseSlot.size : undefined
        const linked = linkSlot?.links ?? []
        const verdict = classifyBlob(
          {
            digest,
            key: row.key,
            copies,
            databaseSize,
            referenced: linked.length > 0 || databaseSize !== undefined,
            links: linked,
          },
          this.regions,
          {level: this.settings.level, cutoff: this.cutoff, databaseUsed: this.opts.db !== undefined},
        )
        for (const finding of verdict.findings) {
          await this.reportFor(work, finding)
          const repair = this.repair
          if (repair && (finding.kind === 'missing' || finding.kind === 'size_mismatch')) {
            const target = this.regions.indexOf(finding.region)
            await this.task(work, target, () =>
              repair.object(this.opts.drivers[target], row.key, finding.kind, work.tally.repair),
            )
          }
        }
        if (this.isSampled(digest)) {
          for (const i of verdict.sizeAgrees)
            await this.task(work, i, () => this.rehash(work, i, digest, row.key, copies[i] as ObjectInfo))
        }
      }
    if (databaseFailure !== undefined) throw databaseFailure
    work.merged = true
    this.advance()
  }

  private async rehash(work: PrefixWork, i: number, digest: string, key: string, copy: {size: number}): Promise<void> {
    let verifies: boolean
    try {
      verifies = await blobVerifies(this.opts.drivers[i], digest, this.job.signal, copy.size)
    } catch (error) {
      if (this.job.signal.aborted) throw error
      this.problem(this.regions[i], key, error)
      return
    }
    work.tally.checked++
    if (verifies) return
    work.tally.corrupt++
    await this.reportFor(work, {
      kind: 'corrupt',
      object: 'blob',
      region: this.regions[i],
      key,
      digest,
      detail: {size: copy.size},
    })
    await this.repair?.object(this.opts.drivers[i], key, 'corrupt', work.tally.repair)
  }

  /**
   * An inventory is a snapshot: where it disagrees with the other regions (an object written or deleted
   * since it was taken), the object is looked up live (HEAD) before anything is reported.
   */
  private async confirmInventoried(key: string, copies: BlobCopy[], listings: BlobListingSource[]): Promise<void> {
    if (!listings.some((l) => l.kind === 'inventory')) return
    const known = copies.filter((c): c is {size: number; lastModified: Date} | undefined => c !== 'unknown')
    const agree = known.every(
      (c) =>
        (c === undefined) === (known[0] === undefined) &&
        (c === undefined || c.size === (known[0] as {size: number}).size),
    )
    if (agree && known.length === copies.length && known[0] !== undefined) return
    await Promise.all(
      listings.map(async (listing, i) => {
        if (listing.kind !== 'inventory' || copies[i] === 'unknown') return
        try {
          const live = await this.opts.drivers[i].stat(key)
          copies[i] = live ? {size: live.size, lastModified: live.lastModified} : undefined
        } catch (error) {
          this.problem(this.regions[i], key, error)
          copies[i] = 'unknown'
        }
      }),
    )
  }

  private result(started: number, listings: BlobListingSource[]): AuditRegionsResult {
    const checked = this.state.checked
    const sampleFraction = this.settings.level === 'checksum' ? undefined : this.settings.sample
    const bound = sampleFraction !== undefined ? corruptionBound(checked, this.state.corrupt) : undefined
    return {
      kind: 'audit-regions',
      jobId: this.job.id,
      regions: this.regions,
      sources: Object.fromEntries(this.regions.map((r, i) => [r, listings[i].kind])),
      level: this.settings.level,
      databaseUsed: this.opts.db !== undefined,
      shard: this.job.shard,
      prefixes: this.shards.length,
      scanned: this.state.scanned,
      findings: {
        total: this.sink.total,
        drift: driftCount(this.sink.counts),
        byRegion: this.sink.counts,
        file: this.opts.findingsFile === undefined ? undefined : asReportTarget(this.opts.findingsFile).location,
        first: this.sink.sample,
      },
      checksum: {
        checked,
        corrupt: this.state.corrupt,
        sampleFraction,
        bound95: bound,
        statement:
          bound === undefined
            ? undefined
            : `${this.state.corrupt} corrupt in ${checked} re-hashed copies: no corruption above ${formatPercent(bound)} at 95% confidence`,
      },
      repair:
        this.settings.repairFrom === undefined ? undefined : {from: this.settings.repairFrom, ...this.state.repair},
      problems: this.problems,
      problemCount: this.problemCount,
      cutoff: this.cutoff.toISOString(),
      durationMs: Math.round(performance.now() - started),
    }
  }
}

/** The listing of a region left out: every key unknown in it (the merge's failed source), nothing named again. */
async function* regionDown(): AsyncIterable<never[]> {
  throw new Error('region left out')
}

function formatPercent(fraction: number): string {
  const percent = fraction * 100
  return `${percent >= 1 ? percent.toFixed(1) : percent.toPrecision(2)}%`
}

/** Tags have no digest in their key: a hash of the key spreads them over the shards. */
function shardOfKey(key: string): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 2)
}
