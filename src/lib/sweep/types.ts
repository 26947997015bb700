import type {RegionConfig} from '../config/config.js'
import type {Db} from '../metadata/db.js'
import type {Logger} from '../output/logger.js'
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
  maxDeletes?: number
  maxBytes?: number
  quarantinePrefix: string
  /** metadata strategy: the registry itself keeps the database current (no storage re-walk needed) */
  metadataAuthoritative?: boolean
}

/** How a sweep runs; may change between a job's start and its resume. */
export interface SweepRunOptions {
  driver: StorageDriver
  /** the driver's region configuration: lets a filesystem listing run on a worker thread */
  region?: RegionConfig
  shard?: {index: number; count: number}
  reportFile?: string
  concurrency?: number
  batchSize?: number
  logger: Logger
  signal?: AbortSignal
  onProgress?: (progress: SweepProgress) => void
  /** for tests: the instant the sweep takes as now */
  now?: Date
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
  problems: Problem[]
  problemCount: number
  reportFile: string | null
  durationMs: number
}

/** Clock skew allowed between this host and the storage's clock when comparing lastModified. */
export const CLOCK_SKEW_MS = 5 * 60_000
