import {Worker} from 'node:worker_threads'
import type {RegionConfig} from '../config/config.js'
import {StorageError} from '../errors.js'
import {RegionUnavailableError, type StorageDriver} from '../storage/driver.js'
import {blobAlgorithmPrefix} from '../storage/layout.js'
import {parseKeyOrReport, problemOf, type Problem} from '../storage/repositories.js'
import {ShardLines} from './spill.js'
import {anySignal} from '../jobs/signals.js'
import {restoreFlagsAfterWorkerStart} from '../v8-flags.js'

export interface EnumerateResult {
  /** shards whose listing is complete on disk */
  completed: string[]
  /** a listing failed: the shards after the failure point in its range are not complete */
  failed: boolean
}

/** One line of the blob listing: `<hex> <size> <mtime ms>`. */
export interface ListedBlob {
  hex: string
  size: number
  lastModified: number
}

export function parseListedBlob(line: string): ListedBlob {
  const [hex, size, mtime] = line.split(' ')
  return {hex, size: Number(size), lastModified: Number(mtime)}
}

export function formatListedBlob(hex: string, size: number, lastModified: Date): string {
  return `${hex} ${size} ${lastModified.getTime()}`
}

export interface EnumerateOptions {
  concurrency: number
  signal?: AbortSignal
  onProblem: (p: Problem) => void
  /** blobs listed since the last call: every LISTED_REPORT_EVERY blobs of a range, and at its end */
  onListed?: (count: number) => void
}

/** A blob's directory holds its `data` (the one key a listing of blobs wants from it). */
const BLOB_DIRECTORY = /^blobs\/[a-z0-9]+\/[0-9a-f]{2}\/[0-9a-f]+\/$/
const blobDataFile = (dir: string) => (BLOB_DIRECTORY.test(dir) ? 'data' : undefined)

/** A callback per this many blobs: a progress line that moves from the first second, at no cost to the loop. */
export const LISTED_REPORT_EVERY = 1000

/**
 * Lists the blob store over `shards` into per-shard files. The shards are split into a few contiguous
 * ranges, each read as one listing that runs across prefix boundaries: a LIST returns up to 1,000 keys
 * whatever the prefix, so a small bucket costs a few requests instead of 256, and a large one still
 * gets `ranges` listings in parallel.
 */
export async function enumerateBlobs(
  driver: StorageDriver,
  shards: string[],
  out: ShardLines,
  opts: EnumerateOptions,
): Promise<EnumerateResult> {
  // A filesystem's listing makes synchronous system calls: ranges would take turns on one thread, each
  // holding a directory's entries alive meanwhile (100k blobs: 10 MiB more peak RSS), for no overlap.
  const rangeCount =
    driver.kind === 'file' ? 1 : Math.max(1, Math.min(shards.length, 16, Math.ceil(opts.concurrency / 2)))
  const ranges = Array.from({length: rangeCount}, (_, r) =>
    shards.slice(Math.floor((r * shards.length) / rangeCount), Math.floor(((r + 1) * shards.length) / rangeCount)),
  ).filter((range) => range.length > 0)
  const result: EnumerateResult = {completed: [], failed: false}
  const algorithmPrefix = blobAlgorithmPrefix()
  // One range that finds the region unreachable stops the others: the outage is one error, not one
  // problem per range after each has spent the whole retry budget.
  const stop = new AbortController()
  const signal = opts.signal ? anySignal([opts.signal, stop.signal]) : stop.signal
  let regionFailure: RegionUnavailableError | undefined
  await Promise.all(
    ranges.map(async (range) => {
      let index = 0
      let unreported = 0
      const advanceTo = (shard: string) => {
        while (index < range.length && range[index] < shard) {
          out.flush(range[index])
          result.completed.push(range[index++])
        }
      }
      try {
        for await (const object of driver.list(algorithmPrefix, {
          startAfter: `${algorithmPrefix}${range[0]}`,
          signal,
          leafFile: blobDataFile,
        })) {
          const shard = object.key.slice(algorithmPrefix.length, algorithmPrefix.length + 2)
          if (shard > range[range.length - 1]) break
          const spec = parseKeyOrReport(object.key, opts.onProblem)
          if (!spec) continue
          if (spec.kind !== 'blob-data') {
            opts.onProblem({kind: 'invalid-key', key: object.key, message: `not a blob: ${spec.kind}`})
            continue
          }
          advanceTo(shard)
          out.add(shard, formatListedBlob(spec.digest.slice(7), object.size, object.lastModified))
          if (++unreported === LISTED_REPORT_EVERY) {
            opts.onListed?.(unreported)
            unreported = 0
          }
        }
      } catch (error) {
        if (unreported > 0) opts.onListed?.(unreported)
        if (opts.signal?.aborted) throw error
        if (error instanceof RegionUnavailableError) {
          regionFailure ??= error
          stop.abort(error)
        }
        if (regionFailure) return
        result.failed = true
        opts.onProblem(problemOf(error, 'storage-error', `${algorithmPrefix}${range[index]}/`))
        return
      }
      if (unreported > 0) opts.onListed?.(unreported)
      advanceTo('~') // past the last shard: the rest of the range is complete
    }),
  )
  if (regionFailure) throw regionFailure
  return result
}

const LISTING_YOUNG_GENERATION_MB = 2

/**
 * The same listing in a worker thread, for a filesystem region: its syscalls are synchronous (see the
 * filesystem driver), so the listing and the mark only overlap on two threads.
 */
export async function enumerateBlobsInWorker(
  region: RegionConfig,
  shards: string[],
  out: ShardLines,
  opts: EnumerateOptions,
): Promise<EnumerateResult> {
  // Under tsx (tests) this module is the .ts source; built, it is .js.
  const self = new URL(import.meta.url)
  const file = new URL(self.pathname.endsWith('.ts') ? './enumerate-worker.ts' : './enumerate-worker.js', self)
  const worker = new Worker(file, {
    workerData: {
      region,
      shards,
      dir: out.dir,
      suffix: '.blobs',
      concurrency: opts.concurrency,
      memoryLines: out.memoryLines,
    },
    execArgv: workerExecArgv(process.execArgv),
    // The listing's objects live for one directory: a young generation of 2 MiB holds them. Left to
    // grow, V8's reached 16 MiB, and peak RSS of a 100k-blob sweep went from 138 to 171 MiB (10k: 101 to 109).
    resourceLimits: {maxYoungGenerationSizeMb: LISTING_YOUNG_GENERATION_MB},
  })
  worker.once('online', restoreFlagsAfterWorkerStart)
  const abort = () => void worker.terminate()
  opts.signal?.addEventListener('abort', abort, {once: true})
  try {
    return await new Promise<EnumerateResult>((resolve, reject) => {
      type Message = {
        problem?: Problem
        listed?: number
        done?: EnumerateResult
        /** the listing's lines when it stayed in memory; undefined when it is in the shard files */
        held?: Array<[string, string[]]>
        error?: string
      }
      worker.on('message', (message: Message) => {
        if (message.listed) opts.onListed?.(message.listed)
        if (message.problem) opts.onProblem(message.problem)
        if (message.done) {
          out.adopt(message.held)
          resolve(message.done)
        }
        if (message.error)
          reject(
            new StorageError(`blob listing of region ${region.name} failed: ${message.error}`, {region: region.name}),
          )
      })
      worker.on('error', reject)
      worker.on('exit', (code) => reject(new Error(`blob listing worker exited with ${code}`)))
    })
  } finally {
    opts.signal?.removeEventListener('abort', abort)
    await worker.terminate()
  }
}

/**
 * The parent's module hooks (tsx under the tests: `--import tsx`) for the listing worker, without the
 * V8 and process flags a worker refuses: `node --max-old-space-size=4096 regops …`, as operators start a
 * large job, made the sweep fail with ERR_WORKER_INVALID_EXEC_ARGV (exit 70).
 */
export function workerExecArgv(execArgv: readonly string[]): string[] {
  const kept: string[] = []
  for (let i = 0; i < execArgv.length; i++) {
    const hook = /^(--import|--require|-r|--loader|--experimental-loader|--conditions|-C)(=.*)?$/.exec(execArgv[i]!)
    if (!hook) continue
    kept.push(execArgv[i]!)
    if (hook[2] === undefined && i + 1 < execArgv.length) kept.push(execArgv[++i]!)
  }
  return kept
}
