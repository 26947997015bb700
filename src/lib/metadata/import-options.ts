// What `regops import` takes and returns, and the stable orders it shards and checkpoints by: the
// parts of the import that commands, the sweep and tests share without the walk itself.
import {createHash} from 'node:crypto'
import type {Db} from './db.js'
import type {ImportCounts, ImportProblem, ImportWrites} from './import-counts.js'
import {UsageError} from '../errors.js'
import type {Logger} from '../output/logger.js'
import {compareKeys, type StorageDriver} from '../storage/driver.js'
import {isRepositoryName} from '../storage/layout.js'

export interface ImportResult extends ImportCounts {
  kind: 'import'
  jobId?: string
  group?: string
  dryRun: boolean
  region: string
  location: string
  shard: {index: number; count: number}
  /** repository filters (exact names, or prefixes ending in '*') */
  filters?: string[]
  /** the checkpoint this run resumed after */
  resumedAfter?: string
  /** the checkpoint at the end: last repository imported with all before it */
  checkpoint?: string
  written: ImportWrites
  /** repositories that failed (database or storage errors); the job is resumable from before the first */
  failed: Array<{repository: string; message: string}>
  /** repositories removed because storage no longer has them (the first maxProblems; a full import only) */
  removedRepositories: string[]
  /** the first maxProblems problems */
  problems: ImportProblem[]
  problemCount: number
  /** blobs/ listed before the repositories (null: not listed, each blob the database lacked was stat'ed) */
  blobsListed: number | null
  durationMs: number
}

export interface ImportProgress {
  repositories: number
  manifests: number
  blobs: number
  problems: number
  failed: number
  current?: string
  elapsedMs: number
}

export interface ImportOptions {
  driver: StorageDriver
  /** required unless dryRun */
  db?: Db
  dryRun?: boolean
  shard?: {index: number; count: number}
  /** exact repository names, or prefixes ending in '*' ('team/*'); none = every repository */
  repositories?: string[]
  resumeJobId?: string
  /** --job-key: a re-run with the same key resumes the job, or returns its result when done */
  jobKey?: string
  /** shared by the shards of one import (the sweep takes the earliest start of the latest complete group); default: a new UUID */
  group?: string
  /** storage reads in flight per repository (default 16) */
  concurrency?: number
  /** repositories read from storage at once, ahead of the writes (default 8) */
  repositoryConcurrency?: number
  /** groups of repositories written at once, each in its own transaction (default 2) */
  writers?: number
  /** manifests per write batch: small repositories are written together up to this many (default 1000) */
  batchSize?: number
  /** problems kept in the result (all are counted); default 1000 */
  maxProblems?: number
  /**
   * list blobs/ once before the repositories, instead of a stat per blob the database lacks; default:
   * on for object storage when importing the whole store (a stat is one request there), off for a
   * filesystem (a stat is a system call) and for --repository (a few repositories' blobs)
   */
  blobListing?: boolean
  /** minimum interval between checkpoint writes (default 500 ms) */
  checkpointEveryMs?: number
  logger?: Logger
  signal?: AbortSignal
  onProgress?: (p: ImportProgress) => void
}

/** Stable shard of a repository: first 4 bytes of sha256(name), big-endian, mod count. */
export function shardOfRepository(name: string, count: number): number {
  if (count <= 1) return 0
  return createHash('sha256').update(name).digest().readUInt32BE(0) % count
}

/** Order of repositories in the walk (and of checkpoints): byte order of `name + '/'`, as listed. */
export function compareRepositories(a: string, b: string): number {
  return compareKeys(`${a}/`, `${b}/`)
}

export function repositoryFilter(filters: string[] | undefined): (name: string) => boolean {
  if (!filters || filters.length === 0) return () => true
  const exact = new Set<string>()
  const prefixes: string[] = []
  for (const f of filters) {
    if (f.endsWith('*')) prefixes.push(f.slice(0, -1))
    else if (isRepositoryName(f)) exact.add(f)
    else
      throw new UsageError(`invalid --repository '${f}': a repository name, or a prefix ending in '*' (e.g. 'team/*')`)
  }
  return (name) => exact.has(name) || prefixes.some((p) => name.startsWith(p))
}
