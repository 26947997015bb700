import type {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import {NotFoundError, StorageError, type RegopsErrorOptions} from '../errors.js'
import {classifyStorageError} from './request-limiter.js'

export interface ObjectInfo {
  /** key relative to the region's registry root */
  key: string
  size: number
  lastModified: Date
}

export interface ListOptions {
  /** yield only keys strictly greater than this one (S3 StartAfter semantics) */
  startAfter?: string
  signal?: AbortSignal
  /**
   * A hint: directory prefixes (ending in '/') for which this returns true hold nothing the caller
   * wants. A driver that can skip a subtree cheaply (the filesystem) does; one that cannot (S3, whose
   * listing is flat) may still yield their keys, and the caller ignores them.
   */
  prune?: (directoryKey: string) => boolean
  /**
   * A hint: directory prefixes whose one key of interest is a single file in them (a `<digest>/link`
   * directory of the layout), by name. A driver that can (the filesystem) looks that file up instead of
   * reading the directory: one system call instead of two, for most directories of a repository. When
   * the file is not there the directory is read as usual; other entries beside it may go unlisted.
   */
  leafFile?: (directoryKey: string) => string | undefined
}

export interface DeleteResult {
  deleted: string[]
  errors: Array<{key: string; message: string}>
}

/**
 * The narrow storage interface every regops job is written against. Sorted listing is at its heart:
 * `list` yields keys in byte order (as S3 does), so listings and sorted database queries can be
 * merge-joined with bounded memory. Missing objects are not errors where a race can cause them:
 * `stat` answers undefined and `deleteMany` counts a missing key as deleted.
 */
export interface StorageDriver {
  /** region name from the configuration */
  readonly region: string
  readonly kind: 'file' | 's3'
  /** where it points, for people (never carries credentials) */
  readonly location: string

  /** Every object whose key starts with `prefix`, in byte order of the key. */
  list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo>
  /** The immediate child "directories" of `prefix` (which ends in '/'), each ending in '/', in byte order. */
  listDirectories(prefix: string, options?: ListOptions): AsyncIterable<string>
  stat(key: string): Promise<ObjectInfo | undefined>
  /** A stream of the object's bytes, or of [start, end] inclusive. Throws NotFoundError. */
  read(key: string, range?: {start: number; end?: number}): Promise<Readable>
  /** The whole object, refusing objects larger than `limit` bytes. Throws NotFoundError. */
  readSmall(key: string, limit: number): Promise<Buffer>
  /** Writes atomically: readers see the old object or the whole new one. */
  write(key: string, body: Buffer | Readable, size?: number): Promise<void>
  deleteMany(keys: string[]): Promise<DeleteResult>
  /** Server-side copy within this storage. Throws NotFoundError. */
  copy(sourceKey: string, targetKey: string): Promise<void>
  close(): Promise<void>
}

/**
 * Attempts of one streamed transfer. A driver retries each request, but not a body once it streams: a
 * streamed write cannot be sent twice, and a read cut mid-body has already been consumed in part. Under
 * 5% injected faults, one such failure in a few hundred copies made `replicate` end partial (the faults
 * suite), so the transfer as a whole starts again from a new read.
 */
const STREAM_ATTEMPTS = 4
const STREAM_BACKOFF_MS = 100

/** Runs a streamed transfer, again from the start when it fails with a transient storage error. */
export async function againFromStart<T>(transfer: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await transfer()
    } catch (error) {
      const cause = (error as {cause?: unknown}).cause ?? error
      if (signal?.aborted || attempt >= STREAM_ATTEMPTS || classifyStorageError(cause) === 'final') throw error
      // Full jitter, as the request limiter backs off.
      await sleep(Math.random() * STREAM_BACKOFF_MS * 2 ** attempt, undefined, {signal})
    }
  }
}

/** Copies one object between two drivers (regions), streaming; a transient failure copies again. */
export async function copyBetween(
  source: StorageDriver,
  target: StorageDriver,
  key: string,
  targetKey = key,
): Promise<ObjectInfo> {
  return againFromStart(async () => {
    const info = await source.stat(key)
    if (!info) throw new NotFoundError(key, source.region)
    const stream = await source.read(key)
    await target.write(targetKey, stream, info.size)
    return info
  })
}

/** Byte-order comparison of two keys, the order of every listing. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}

/**
 * True when `a` sorts strictly before `b` in byte order of their UTF-8 forms. JavaScript compares
 * UTF-16 code units, which agrees with UTF-8 byte order except when a surrogate (above U+FFFF) meets
 * a code unit from U+E000 up; only then are the strings encoded. A listing checks every key, so the
 * common case must not allocate.
 */
export function keyBefore(a: string, b: string): boolean {
  const length = Math.min(a.length, b.length)
  let i = 0
  while (i < length && a.charCodeAt(i) === b.charCodeAt(i)) i++
  if (i === length) return a.length < b.length
  const x = a.charCodeAt(i)
  const y = b.charCodeAt(i)
  if (x < 0xd800 && y < 0xd800) return x < y
  return compareKeys(a, b) < 0
}

/**
 * Checks that a listing's keys are strictly increasing, and throws naming both keys when one is not.
 * Every merge (blob listing against references, region against region) assumes sorted input and would
 * silently misjudge keys on an unsorted one, so each driver checks its listings where it makes them
 * (inline, not as another generator: a hop per key costs more than the comparison).
 */
export class KeyOrder {
  private previous: string | undefined

  constructor(
    private readonly region: string,
    private readonly prefix: string,
  ) {}

  check(key: string): void {
    if (this.previous !== undefined && !keyBefore(this.previous, key)) {
      throw new StorageError(
        `listing of ${this.prefix || '/'} is out of order: '${key}' came after '${this.previous}'`,
        {region: this.region, key},
        {code: 'UNSORTED_LISTING'},
      )
    }
    this.previous = key
  }
}

/**
 * A failure of the region as a whole (endpoint unreachable, bucket missing, listing forbidden, server
 * errors past the retries), as opposed to one object that cannot be read. A job stops on it: read as
 * a per-prefix problem, an outage would be reported like a finding, once for every prefix.
 */
export class RegionUnavailableError extends StorageError {
  constructor(message: string, where: {region?: string; key?: string}, options: RegopsErrorOptions = {}) {
    super(message, where, {code: 'REGION_UNAVAILABLE', ...options})
  }
}

/** A driver that hands its listing over a page at a time (the S3 driver: one LIST answer each). */
interface PagedListing {
  listPages(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo[]>
}

/** The listing a page at a time: as the driver reads it when it can (S3), else in batches of `size`. */
export function listInPages(
  driver: StorageDriver,
  prefix: string,
  options: ListOptions = {},
  size = 1000,
): AsyncIterable<ObjectInfo[]> {
  const paged = driver as StorageDriver & Partial<PagedListing>
  return paged.listPages?.(prefix, options) ?? inBatches(driver.list(prefix, options), size)
}

/** An item stream in batches of up to `size` (the items read before a failure are handed over first). */
export async function* inBatches<T>(source: AsyncIterable<T>, size = 1000): AsyncIterable<T[]> {
  let batch: T[] = []
  try {
    for await (const item of source) {
      batch.push(item)
      if (batch.length >= size) {
        yield batch
        batch = []
      }
    }
  } catch (error) {
    if (batch.length > 0) yield batch
    throw error
  }
  if (batch.length > 0) yield batch
}
