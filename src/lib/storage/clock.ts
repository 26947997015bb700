import {randomBytes} from 'node:crypto'
import {hostname} from 'node:os'
import {RefusedError, errorMessage} from '../errors.js'
import {RegionUnavailableError, type StorageDriver} from './driver.js'

/**
 * The storage's clock as seen from this host. Object timestamps (lastModified) are written by the
 * storage's clock, so the grace cutoff and "newer than the mark" must be computed in storage time: a
 * host whose clock runs 10 minutes ahead would otherwise treat a blob pushed 5 minutes ago as older
 * than a 10-minute grace period.
 */
export interface StorageClock {
  /** storage time minus this host's time, in ms */
  offsetMs: number
  /** how far off offsetMs may be: half the round trip plus the timestamp's resolution */
  uncertaintyMs: number
  /** this host's current time, expressed in storage time */
  now(): Date
}

/** Scratch objects live outside blobs/ and repositories/, so no registry or sweep ever reads them. */
export const CLOCK_SCRATCH_PREFIX = '_regops/clock/'

/**
 * Offset of a server clock that stamped `serverTime` somewhere between host times `sentAt` and
 * `answeredAt`, with `resolutionMs` the granularity of that stamp (truncated, as S3's whole seconds are).
 */
export function estimateOffset(
  sentAt: number,
  serverTime: number,
  answeredAt: number,
  resolutionMs: number,
): {offsetMs: number; uncertaintyMs: number} {
  const hostMidpoint = (sentAt + answeredAt) / 2
  const serverMidpoint = serverTime + resolutionMs / 2
  return {
    offsetMs: Math.round(serverMidpoint - hostMidpoint),
    uncertaintyMs: Math.ceil((answeredAt - sentAt) / 2 + resolutionMs / 2),
  }
}

export function clockWithOffset(offsetMs: number, uncertaintyMs: number): StorageClock {
  return {offsetMs, uncertaintyMs, now: () => new Date(Date.now() + offsetMs)}
}

/**
 * Measures the storage's clock by writing a scratch object and reading back its lastModified, the same
 * timestamp the storage gives every blob and link. Works alike on S3 (whose LastModified has whole
 * seconds) and on a filesystem (mtime). Needs write access; throws RefusedError when it cannot measure.
 */
export async function measureStorageClock(driver: StorageDriver): Promise<StorageClock> {
  const key = `${CLOCK_SCRATCH_PREFIX}${hostname().replace(/[^A-Za-z0-9._-]/g, '_')}-${process.pid}-${randomBytes(6).toString('hex')}`
  try {
    const sentAt = Date.now()
    await driver.write(key, Buffer.from('regops clock probe\n'))
    const answeredAt = Date.now()
    const info = await driver.stat(key)
    if (!info) throw new Error(`the probe ${key} vanished right after it was written`)
    const stamp = info.lastModified.getTime()
    if (!Number.isFinite(stamp)) throw new Error(`the probe ${key} has no usable timestamp`)
    // A stamp on a whole second is taken as second-resolution (S3, some filesystems): the conservative reading.
    const resolutionMs = stamp % 1000 === 0 ? 1000 : 1
    const {offsetMs, uncertaintyMs} = estimateOffset(sentAt, stamp, answeredAt, resolutionMs)
    return clockWithOffset(offsetMs, uncertaintyMs)
  } catch (error) {
    // A region that does not answer at all is an outage, reported as one (exit 3), not a clock question.
    if (error instanceof RegionUnavailableError) throw error
    throw new RefusedError(`cannot measure the clock of ${driver.location}: ${errorMessage(error)}`, {
      code: 'CLOCK_UNKNOWN',
      hint: `regops writes and deletes one small object under ${CLOCK_SCRATCH_PREFIX} to read the storage's time; grant that, or run a dry-run`,
    })
  } finally {
    await driver.deleteMany([key]).catch(() => undefined)
  }
}

/** Refuses to act when the two clocks are further apart than `limitMs`, or when the measure is too coarse to tell. */
export function assertClockSkewWithin(clock: StorageClock, limitMs: number, what: string): void {
  if (Math.abs(clock.offsetMs) + clock.uncertaintyMs <= limitMs) return
  throw new RefusedError(
    `${what}'s clock is ${formatSkew(clock.offsetMs)} from this host's (±${clock.uncertaintyMs} ms), more than the ${Math.round(limitMs / 1000)} s allowed`,
    {
      code: 'CLOCK_SKEW',
      hint: "fix the host's time (NTP) or the storage's; the grace period is measured on the storage's clock",
    },
  )
}

function formatSkew(ms: number): string {
  const seconds = Math.abs(ms) / 1000
  return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s ${ms >= 0 ? 'ahead' : 'behind'}`
}
