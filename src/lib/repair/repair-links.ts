import {RefusedError} from '../errors.js'
import type {Db} from '../metadata/db.js'
import type {StorageDriver} from '../storage/driver.js'
import {pathFor} from '../storage/layout.js'
import type {Problem} from '../storage/repositories.js'
import {readRepository} from '../inspect/repository-view.js'
import {journaledChange} from './journaled.js'

export interface LinkRepair {
  link: 'layer-link' | 'revision-link'
  key: string
  digest: string
  /** why the link is wanted: the manifest or tag that needs it */
  neededBy: string
  state: 'missing' | 'created' | 'failed'
  /** journal entry of the creation (undo it with regops journal undo) */
  entry?: string
  error?: string
}

export interface RepairLinksResult {
  kind: 'repair-links'
  repository: string
  region: string
  applied: boolean
  links: LinkRepair[]
  /** links that cannot be made: the blob they would point at is not in the region */
  unrepairable: Array<{key: string; digest: string; neededBy: string; reason: string}>
  problems: Problem[]
}

export type RepairMode = {mode: 'dry-run'} | {mode: 'apply'; db: Db}

/**
 * Finds the links a repository is missing: a `_layers` link for every config and layer its manifests use
 * (without one the registry answers "blob unknown" on pull), and a revision link for every tag pointing
 * at a manifest whose blob is there (without one the tag does not resolve). Creates them when applied.
 */
export async function repairLinks(
  driver: StorageDriver,
  repository: string,
  mode: RepairMode,
): Promise<RepairLinksResult> {
  const view = await readRepository(driver, repository)
  if (!view.exists) {
    throw new RefusedError(`repository ${repository} does not exist in region ${driver.region}: nothing to repair`, {
      hint: 'check the name with regops inspect repo; a repair never acts on more, or other, than the repository named',
    })
  }
  const result: RepairLinksResult = {
    kind: 'repair-links',
    repository,
    region: driver.region,
    applied: mode.mode === 'apply',
    links: [],
    unrepairable: [],
    problems: view.problems,
  }
  const layerLinks = new Set(view.layerLinks.map((l) => l.digest))
  const revisions = new Set(view.revisions.map((r) => r.digest))
  const wanted = new Map<string, {link: LinkRepair['link']; digest: string; neededBy: string}>()
  for (const read of view.revisions) {
    const manifest = read.manifest
    if (!manifest) continue
    for (const blob of [...(manifest.config ? [manifest.config] : []), ...manifest.layers]) {
      const key = pathFor({kind: 'layer-link', repository, digest: blob.digest})
      if (!layerLinks.has(blob.digest) && !wanted.has(key))
        wanted.set(key, {link: 'layer-link', digest: blob.digest, neededBy: `${repository}@${read.digest}`})
    }
  }
  for (const tag of view.tags) {
    if (!tag.current || revisions.has(tag.current)) continue
    const key = pathFor({kind: 'manifest-revision-link', repository, digest: tag.current})
    wanted.set(key, {link: 'revision-link', digest: tag.current, neededBy: `${repository}:${tag.tag}`})
  }
  for (const [key, want] of [...wanted].sort(([a], [b]) => (a < b ? -1 : 1))) {
    // A link to a blob the region does not hold would only turn "blob unknown" into a failed download.
    if (!(await driver.stat(pathFor({kind: 'blob-data', digest: want.digest})))) {
      result.unrepairable.push({
        key,
        digest: want.digest,
        neededBy: want.neededBy,
        reason: `blob ${want.digest} is not in region ${driver.region}`,
      })
      continue
    }
    const repair: LinkRepair = {...want, key, state: 'missing'}
    result.links.push(repair)
    if (mode.mode === 'dry-run') continue
    const change = await journaledChange(
      mode.db,
      {
        action: 'link',
        region: driver.region,
        key,
        digest: want.digest,
        detail: {repository, link: want.link, neededBy: want.neededBy},
      },
      // distribution writes a link as the bare digest, no newline
      () => driver.write(key, Buffer.from(want.digest)),
    )
    repair.entry = change.entry
    repair.state = change.ok ? 'created' : 'failed'
    if (change.error) repair.error = change.error
  }
  return result
}
