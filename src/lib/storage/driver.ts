import type {Readable} from 'node:stream'
import {NotFoundError} from '../errors.js'

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

/** Copies one object between two drivers (regions), streaming. */
export async function copyBetween(source: StorageDriver, target: StorageDriver, key: string, targetKey = key): Promise<ObjectInfo> {
  const info = await source.stat(key)
  if (!info) throw new NotFoundError(key, source.region)
  const stream = await source.read(key)
  await target.write(targetKey, stream, info.size)
  return info
}

/** Byte-order comparison of two keys, the order of every listing. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}
