import type {RegionConfig, RegopsConfig} from '../config/config.js'
import {UsageError} from '../errors.js'
import type {StorageDriver} from './driver.js'
import {FilesystemDriver} from './filesystem.js'
import type {RequestLimiter} from './request-limiter.js'

export type {StorageDriver, ObjectInfo, ListOptions, DeleteResult} from './driver.js'

/** The S3 driver (and the AWS SDK behind it) is loaded only when a region needs it: a third of start-up. */
export async function openDriver(region: RegionConfig, opts: {maxAttempts?: number} = {}): Promise<StorageDriver> {
  if (region.kind === 'file') return new FilesystemDriver(region.name, region.root, region.concurrency)
  const {S3Driver} = await import('./s3.js')
  return new S3Driver(region, opts.maxAttempts === undefined ? {} : {maxAttempts: opts.maxAttempts})
}

/** The driver of a named region, or of the primary region when no name is given. */
export async function openRegion(config: RegopsConfig, name?: string): Promise<StorageDriver> {
  const regionName = name ?? config.primary
  if (!regionName) {
    const known = Object.keys(config.regions)
    throw new UsageError(
      known.length === 0
        ? 'no regions are configured (add regions: to the config file)'
        : `several regions are configured (${known.join(', ')}): pick one with --region or set primary:`,
    )
  }
  const region = config.regions[regionName]
  if (!region)
    throw new UsageError(
      `unknown region '${regionName}' (regions: ${Object.keys(config.regions).join(', ') || 'none'})`,
    )
  return openDriver(region)
}

/** What a command's request-rate flags state (see requestRateFlags). */
export interface RequestRateOptions {
  /** requests in flight, fixed: no adaptation */
  concurrency?: number
  /** the ceiling of the adaptive limit */
  maxConcurrency?: number
  /** requests started per second, at most */
  tpsLimit?: number
}

/** The request rates of a command's flags, applied to a driver that paces its requests (S3). */
export function applyRequestRates(driver: StorageDriver, rates: RequestRateOptions): void {
  const requests = (driver as {requests?: RequestLimiter}).requests
  if (!requests) return
  requests.configure({
    fixed: rates.concurrency,
    ...(rates.maxConcurrency === undefined ? {} : {max: rates.maxConcurrency}),
    tps: rates.tpsLimit,
  })
}

/**
 * How much work a job keeps queued for storage: a pinned count as given; otherwise enough to fill the
 * adaptive limit (its ceiling), which then decides what is in flight. At least 32: a filesystem
 * region's 16 would leave its synchronous reads waiting on the listing.
 */
export function requestsToQueue(rates: RequestRateOptions, ...regions: RegionConfig[]): number {
  return rates.concurrency ?? rates.maxConcurrency ?? Math.max(32, ...regions.map((region) => region.concurrency))
}
