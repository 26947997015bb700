import type {RegionConfig} from '../config/config.js'
import type {Db} from '../metadata/db.js'
import type {Logger} from '../output/logger.js'
import type {ReportTarget} from '../output/report-target.js'
import type {DescriptorCache, RegistryCacheMode} from '../registry/descriptor-cache.js'
import type {StorageDriver} from '../storage/driver.js'
import type {Problem} from '../storage/repositories.js'

export type SweepStrategy = 'storage' | 'metadata'
export type SweepMode = 'dry-run' | 'delete' | 'quarantine'
export type ActingMode = Exclude<SweepMode, 'dry-run'>

/** What decides which blobs a sweep acts on: stored with an acting job, and what a resume must not change. */
export interface SweepSettings {
  strategy: SweepStrategy
  /** grace period: blobs and links younger than this are never touched (the flag layer refuses unsafe values) */
  minAgeMs: number
  deleteUntagged?: boolean
  /** with deleteUntagged: also remove referrers (signatures, SBOMs) of kept manifests */
  deleteReferrers?: boolean
  maxDeletes?: number
  maxBytes?: number
  quarantinePrefix: string
  /** metadata strategy: the registry itself keeps the database current (no storage re-walk needed) */
  metadataAuthoritative?: boolean
  /** act even on more than the mass-deletion guard's share of the scanned blobs */
  allowMassDelete?: boolean
  /** storage strategy: read the marks of this finished mark run (sweep mark) instead of walking the manifests */
  marks?: string
}

/** How a sweep runs; may change between a job's start and its resume. */
export interface SweepRunOptions {
  driver: StorageDriver
  /** the driver's region configuration: lets a filesystem listing run on a worker thread */
  region?: RegionConfig
  shard?: {index: number; count: number}
  /** the candidates' report: a path, or a parsed target (stdout, an s3:// object) */
  reportFile?: string | ReportTarget
  concurrency?: number
  batchSize?: number
  /** blobs acted on that may wait for one post-check together when batches are not re-walked (default 50,000) */
  postCheckAfterBlobs?: number
  logger: Logger
  signal?: AbortSignal
  onProgress?: (progress: SweepProgress) => void
  /** for tests: the instant the sweep takes as now (in storage time) */
  now?: Date
  /** the registry's blob-descriptor cache (registry.cache); default none */
  registryCache?: DescriptorCache
  /**
   * the operator states the registry is read-only or stopped: acting with an in-memory cache is allowed,
   * and batches are not re-walked (one walk after the last checks the statement)
   */
  registryReadOnly?: boolean
  /** refuse to act when the storage's clock is further than this from this host's; default 5 min */
  maxClockSkewMs?: number
  /** --job-key: a re-run with the same key resumes the job, or returns its result when done */
  jobKey?: string
  /** for tests: points where the act phase waits, so an interleaving can be made deterministic */
  hooks?: ActHooks
  /** a dry-run also writes its plan here (plan-file.ts), for `sweep apply` to act on exactly its candidates */
  planOut?: string
}

/** Called by the act phase at fixed points of each batch; a test holds them to interleave a push. */
export interface ActHooks {
  /**
   * after a batch's re-check, before anything is removed: before its intents are journaled, or, for a
   * quarantine of blobs, after its intents and copies
   */
  afterRecheck?: (batch: {kind: 'blob' | 'manifest'; digests: string[]}) => Promise<void>
  /** after the intents are journaled, before anything is removed (a throw here is a crash in between) */
  afterIntents?: (batch: {kind: 'blob' | 'manifest'; digests: string[]}) => Promise<void>
}

/** A dry-run needs a database only for the metadata strategy; acting needs one for the journal and the job. */
export type NewSweep = SweepSettings & ({mode: 'dry-run'; db?: Db} | {mode: ActingMode; db: Db}) & {resume?: undefined}

/** A resume runs with the job's settings; any stated here must match them. */
export type ResumedSweep = Partial<SweepSettings> & {mode?: ActingMode; db: Db; resume: string}

export type SweepBlobsOptions = SweepRunOptions & (NewSweep | ResumedSweep)

export interface SweepProgress {
  phase: 'mark' | 'plan' | 'act'
  shardsDone: number
  shards: number
  /** blobs the listing has found so far (it runs during the mark, before any prefix is merged) */
  listed: number
  /** digests the mark has found referenced so far (storage strategy) */
  marks: number
  scanned: number
  candidates: number
  acted: number
  elapsedMs: number
}

export interface SweepCandidate {
  kind: 'blob' | 'manifest'
  digest: string
  key: string
  size: number
  lastModified: string
  repository?: string
  reason: 'unreferenced' | 'untagged'
}

export interface SweepBlobsResult {
  kind: 'sweep-blobs'
  jobId: string | null
  region: string
  strategy: SweepStrategy
  mode: SweepMode
  cutoff: string
  shards: {index: number; count: number; prefixes: number}
  markComplete: boolean
  marked: {repositories: number; manifests: number; youngLinks: number}
  scanned: {blobs: number; bytes: number}
  referenced: number
  tooYoung: {count: number; bytes: number}
  candidates: {count: number; bytes: number; manifests: number}
  acted: {deleted: number; quarantined: number; manifestsDeleted: number; bytes: number; failed: number}
  skipped: {referencedAgain: number; changed: number; gone: number}
  /** time from the end of each batch's re-check to the end of its action (blob batches of this run) */
  window: {batches: number; p50Ms: number; p99Ms: number; maxMs: number}
  /** what the post-check found written since a batch's re-check began, referencing what it acted on */
  postCheck: {movedBack: number; broken: BrokenImage[]}
  registryCache: RegistryCacheMode
  /** an in-memory registry cache saw blobs go behind its back: every registry process must be restarted */
  restartRegistry: boolean
  /** the storage's clock against this host's, as measured at the start (null: not measured) */
  storageClock: {offsetMs: number; uncertaintyMs: number} | null
  /**
   * Why acting on this plan is (or, for a dry-run, would be) refused: an incomplete mark, the
   * mass-deletion guard, --max-deletes or --max-bytes. Empty when acting would go ahead.
   */
  wouldRefuse: string[]
  /** the first problems found (the logs name the first few of each kind) */
  problems: Problem[]
  problemCount: number
  /** every problem counted by kind */
  problemKinds: Record<string, number>
  reportFile: string | null
  /** the plan a dry-run wrote (--plan-out) and its hash */
  plan?: {file: string; hash: string}
  durationMs: number
}

/** A deleted blob that something written after its batch's re-check references: that image no longer pulls. */
export interface BrokenImage {
  digest: string
  repository: string
  /** the manifest that references it; null when only a new _layers link (a push in progress) does */
  manifest: string | null
}

/** Share of the scanned blobs a sweep may act on without --allow-mass-delete or an explicit cap. */
export const MASS_DELETE_SHARE = 0.5
/** The same on a region's first acting sweep, when nothing yet says what its usual orphan rate is. */
export const FIRST_SWEEP_MASS_DELETE_SHARE = 0.1

/** Clock skew allowed between this host and the storage's clock when comparing lastModified. */
export const CLOCK_SKEW_MS = 5 * 60_000

/** The job kind of a blob sweep in regops_jobs. */
export const SWEEP_JOB_KIND = 'sweep-blobs'

/**
 * The counters of a sweep result before anything was marked, listed or acted on: a new sweep starts
 * from them, and so does an apply (which then takes the plan's own scanned and candidate figures).
 */
export function zeroSweepCounts(): Pick<
  SweepBlobsResult,
  | 'marked'
  | 'scanned'
  | 'referenced'
  | 'tooYoung'
  | 'candidates'
  | 'acted'
  | 'skipped'
  | 'window'
  | 'postCheck'
  | 'restartRegistry'
  | 'storageClock'
  | 'wouldRefuse'
  | 'problems'
  | 'problemCount'
  | 'problemKinds'
> {
  return {
    marked: {repositories: 0, manifests: 0, youngLinks: 0},
    scanned: {blobs: 0, bytes: 0},
    referenced: 0,
    tooYoung: {count: 0, bytes: 0},
    candidates: {count: 0, bytes: 0, manifests: 0},
    acted: {deleted: 0, quarantined: 0, manifestsDeleted: 0, bytes: 0, failed: 0},
    skipped: {referencedAgain: 0, changed: 0, gone: 0},
    window: {batches: 0, p50Ms: 0, p99Ms: 0, maxMs: 0},
    postCheck: {movedBack: 0, broken: []},
    restartRegistry: false,
    storageClock: null,
    wouldRefuse: [],
    problems: [],
    problemCount: 0,
    problemKinds: {},
  }
}
