import type {RegopsConfig} from '../config/config.js'
import {UsageError} from '../errors.js'
import {openDriver, openRegion} from '../storage/index.js'
import type {StorageDriver} from '../storage/driver.js'
import {InventoryListing} from '../storage/inventory.js'
import {shardsFor} from '../storage/layout.js'
import type {Shard} from '../jobs/runner.js'
import type {AuditProblem} from './findings.js'

/** The regions named (comma-separated), or every configured region, the primary first. */
export function auditedRegions(config: RegopsConfig, list: string | undefined): string[] {
  const names = list
    ? list
        .split(',')
        .map((n) => n.trim())
        .filter(Boolean)
    : Object.keys(config.regions)
  for (const name of names)
    if (!config.regions[name])
      throw new UsageError(`unknown region '${name}' (regions: ${Object.keys(config.regions).join(', ') || 'none'})`)
  if (new Set(names).size !== names.length) throw new UsageError(`--regions names a region twice: ${list}`)
  const primary = config.primary
  return primary && names.includes(primary) ? [primary, ...names.filter((n) => n !== primary)] : names
}

export async function openRegions(config: RegopsConfig, names: string[]): Promise<StorageDriver[]> {
  const drivers: StorageDriver[] = []
  try {
    for (const name of names) drivers.push(await openRegion(config, name))
    return drivers
  } catch (error) {
    await Promise.all(drivers.map((d) => d.close()))
    throw error
  }
}

/** `--inventory REGION=URL`, each read into per-prefix files for the shards this run audits. */
export async function openInventories(
  config: RegopsConfig,
  specs: string[],
  regions: string[],
  shard: Shard | undefined,
  problems: AuditProblem[],
): Promise<Record<string, InventoryListing>> {
  const listings: Record<string, InventoryListing> = {}
  try {
    for (const spec of specs) {
      const at = spec.indexOf('=')
      const name = spec.slice(0, at)
      if (at < 1 || !regions.includes(name))
        throw new UsageError(
          `--inventory '${spec}': expected REGION=URL with REGION among the audited regions (${regions.join(', ')})`,
        )
      const region = config.regions[name]
      listings[name] = await InventoryListing.open(spec.slice(at + 1), region, {
        shards: shardsFor(shard?.index ?? 0, shard?.count ?? 1),
        onProblem: (p) => problems.push({region: name, where: p.where, message: p.message}),
        openBucket: (bucket) => {
          if (region.kind !== 's3') throw new UsageError(`region '${name}' is not on S3`)
          return openDriver({...region, bucket, prefix: '', url: `s3://${bucket}`})
        },
      })
    }
    return listings
  } catch (error) {
    await Promise.all(Object.values(listings).map((l) => l.dispose()))
    throw error
  }
}
