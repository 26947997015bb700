import {createHash} from 'node:crypto'
import {againFromStart, type StorageDriver} from '../storage/driver.js'
import {pathFor, splitDigest} from '../storage/layout.js'

/**
 * The digest an object's content hashes to, streamed (never held in memory), in the digest's algorithm;
 * a body cut short by a transient fault is read again from the start.
 */
export async function hashObject(
  driver: StorageDriver,
  key: string,
  algorithm: 'sha256' | 'sha512',
  signal?: AbortSignal,
): Promise<string> {
  return againFromStart(async () => {
    const hash = createHash(algorithm)
    const stream = await driver.read(key)
    try {
      for await (const chunk of stream) {
        signal?.throwIfAborted()
        hash.update(chunk as Buffer)
      }
    } finally {
      stream.destroy()
    }
    return `${algorithm}:${hash.digest('hex')}`
  }, signal)
}

/**
 * Blobs listed at most this size are read in one request into memory and hashed at once. A stream costs
 * more than the 512-byte blob it carries (an async iterator, listeners, a chunk at a time): at 10k blobs
 * per region the audit spent about twice the CPU per re-hash of a client that reads the body whole. 1 MiB
 * at the audit's 64 reads in flight per region is 64 MiB at most; larger blobs stream.
 */
export const WHOLE_READ_LIMIT = 1024 * 1024

/**
 * True when a region's copy of a blob hashes to its digest. With the size the listing gave (`listedSize`),
 * a small blob is read whole: its request is retried by the driver as one (a body cut short is read again
 * from the start, as a stream is by `againFromStart`), and a copy grown past the limit since it was listed
 * is streamed instead.
 */
export async function blobVerifies(
  driver: StorageDriver,
  digest: string,
  signal?: AbortSignal,
  listedSize?: number,
): Promise<boolean> {
  const key = pathFor({kind: 'blob-data', digest})
  const algorithm = splitDigest(digest).algorithm
  if (listedSize !== undefined && listedSize <= WHOLE_READ_LIMIT) {
    signal?.throwIfAborted()
    try {
      const body = await driver.readSmall(key, WHOLE_READ_LIMIT)
      return `${algorithm}:${createHash(algorithm).update(body).digest('hex')}` === digest
    } catch (error) {
      if ((error as {code?: string}).code !== 'TOO_LARGE') throw error
    }
  }
  return (await hashObject(driver, key, algorithm, signal)) === digest
}

/**
 * Picks a fraction of digests to re-hash. A digest is already uniformly random, but a fixed rule would
 * pick the same blobs every night; mixing in a seed per job covers others each run, and the same seed on
 * a resume picks the same ones.
 */
export function sampler(fraction: number, seed: string): (digest: string) => boolean {
  if (fraction >= 1) return () => true
  if (fraction <= 0) return () => false
  const threshold = Math.floor(fraction * 0x1_0000_0000)
  return (digest) => createHash('sha256').update(seed).update(digest).digest().readUInt32BE(0) < threshold
}

/**
 * Runs at most `limit` tasks at once; `wait` resolves when all that were started are done. A finished
 * task hands its slot to the oldest caller waiting for one. (Waiting by racing the running tasks cost a
 * reaction on each of them per wait: 32 per re-hash, never released until each settled.)
 */
export class Bounded {
  private running = 0
  /** callers waiting for a slot, oldest first */
  private readonly waiting: Array<() => void> = []
  /** callers of wait() */
  private readonly idle: Array<() => void> = []
  private firstError: unknown

  constructor(private readonly limit: number) {}

  async run(task: () => Promise<void>): Promise<void> {
    if (this.running < this.limit) this.running++
    else await new Promise<void>((resolve) => this.waiting.push(resolve))
    let promise: Promise<void>
    try {
      promise = task()
    } catch (error) {
      promise = Promise.reject(error)
    }
    promise
      .catch((error: unknown) => {
        this.firstError ??= error
      })
      .finally(() => this.release())
  }

  private release(): void {
    const next = this.waiting.shift()
    if (next) return next()
    this.running--
    if (this.running === 0) for (const resolve of this.idle.splice(0)) resolve()
  }

  async wait(): Promise<void> {
    if (this.running > 0) await new Promise<void>((resolve) => this.idle.push(resolve))
    if (this.firstError !== undefined) {
      const error = this.firstError
      this.firstError = undefined
      throw error
    }
  }
}
