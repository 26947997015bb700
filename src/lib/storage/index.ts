import type {RegionConfig, RegopsConfig} from '../config/config.js'
import {UsageError} from '../errors.js'
import type {StorageDriver} from './driver.js'
import {FilesystemDriver} from './filesystem.js'
import {S3Driver} from './s3.js'

export type {StorageDriver, ObjectInfo, ListOptions, DeleteResult} from './driver.js'

export function openDriver(region: RegionConfig, opts: {maxAttempts?: number} = {}): StorageDriver {
  if (region.kind === 'file') return new FilesystemDriver(region.name, region.root, region.concurrency)
  return new S3Driver(region, opts.maxAttempts === undefined ? {} : {maxAttempts: opts.maxAttempts})
}

/** The driver of a named region, or of the primary region when no name is given. */
export function openRegion(config: RegopsConfig, name?: string): StorageDriver {
  const regionName = name ?? config.primary
  if (!regionName) {
    const known = Object.keys(config.regions)
    throw new UsageError(
      known.length === 0 ? 'no regions are configured (add regions: to the config file)' : `several regions are configured (${known.join(', ')}): pick one with --region or set primary:`,
    )
  }
  const region = config.regions[regionName]
  if (!region) throw new UsageError(`unknown region '${regionName}' (regions: ${Object.keys(config.regions).join(', ') || 'none'})`)
  return openDriver(region)
}
