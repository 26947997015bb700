import {UsageError} from '../errors.js'

/**
 * The quarantine prefix for a region from `sweep.quarantine` ('region:prefix' or 'prefix'). Moving a
 * blob is a server-side copy within one bucket, so the quarantine must live in the swept region.
 */
export function resolveQuarantine(setting: string, region: string): string {
  const match = /^([A-Za-z0-9][A-Za-z0-9_-]*):(.+)$/.exec(setting)
  if (match && !match[2].startsWith('//')) {
    if (match[1] !== region) {
      throw new UsageError(
        `sweep.quarantine names region '${match[1]}' but the sweep runs in '${region}': quarantine must be in the swept region`,
      )
    }
    return normalise(match[2])
  }
  return normalise(setting)
}

function normalise(prefix: string): string {
  const p = prefix.replace(/^\/+|\/+$/g, '')
  if (!p || p.split('/').some((part) => part === '..' || part === '.')) {
    throw new UsageError(`sweep.quarantine: invalid prefix '${prefix}' (empty, or a '.' or '..' segment)`)
  }
  if (p === 'blobs' || p.startsWith('blobs/') || p === 'repositories' || p.startsWith('repositories/')) {
    throw new UsageError(
      `sweep.quarantine: prefix '${prefix}' lies inside the registry layout; use e.g. _regops/quarantine`,
    )
  }
  return p
}
