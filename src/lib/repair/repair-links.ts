import {NotFoundError, RefusedError} from '../errors.js'
import type {Db} from '../metadata/db.js'
import type {StorageDriver} from '../storage/driver.js'
import {parseLink, pathFor} from '../storage/layout.js'
import type {Problem} from '../storage/repositories.js'
import {readRepository} from '../inspect/repository-view.js'
import {journalOutcome} from '../sweep/journal.js'
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
  const interrupted =
    mode.mode === 'apply' ? await finishInterruptedLinks(mode.db, driver, repository, wanted) : new Map()
  for (const [key, want] of [...wanted].sort(([a], [b]) => (a < b ? -1 : 1))) {
    // A link to a blob the region does not hold would only turn "blob unknown" into a failed download.
    if (!(await driver.stat(pathFor({kind: 'blob-data', digest: want.digest})))) {
      result.unrepairable.push({
        key,
        digest: want.digest,
        neededBy: want.neededBy,
        reason: `blob ${want.digest} is not in region ${driver.region}`,
      })
      const entry = interrupted.get(key)
      if (mode.mode === 'apply' && entry)
        await journalOutcome(mode.db, null, entry, 'failed', {
          error: `blob ${want.digest} is not in region ${driver.region}`,
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
      interrupted.get(key),
    )
    repair.entry = change.entry
    repair.state = change.ok ? 'created' : 'failed'
    if (change.error) repair.error = change.error
  }
  return result
}

/**
 * The link writes of this repository that a killed `repair links --apply` journaled without an outcome. A
 * link still missing is written under its entry by this run (returned, by key); one that is there, naming
 * the digest, landed before the kill and is journaled done, so `journal undo` can take it back; any other
 * is journaled failed, saying why. Each link created stays one journal entry with one outcome.
 */
async function finishInterruptedLinks(
  db: Db,
  driver: StorageDriver,
  repository: string,
  wanted: Map<string, {digest: string}>,
): Promise<Map<string, string>> {
  const open = await db.query<{id: string; key: string; digest: string | null}>(
    `SELECT i.id, i.key, i.digest FROM regops_journal i
      WHERE i.job_id IS NULL AND i.action = 'link' AND i.phase = 'intent' AND i.region = $1
        AND (starts_with(i.key, $2) OR starts_with(i.key, $3))
        AND NOT EXISTS (SELECT 1 FROM regops_journal o WHERE o.intent_id = i.id)
      ORDER BY i.id`,
    [driver.region, `repositories/${repository}/_layers/`, `repositories/${repository}/_manifests/revisions/`],
  )
  const resumed = {recovered: 'the run that journaled this link was interrupted before its outcome'}
  const reuse = new Map<string, string>()
  for (const row of open.rows) {
    const id = String(row.id)
    if (wanted.get(row.key)?.digest === row.digest && !reuse.has(row.key)) {
      reuse.set(row.key, id)
      continue
    }
    let current: string | undefined
    try {
      current = parseLink(await driver.readSmall(row.key, 1024), row.key)
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error
    }
    if (current !== undefined && current === row.digest && !wanted.has(row.key))
      await journalOutcome(db, null, id, 'done', resumed)
    else
      await journalOutcome(db, null, id, 'failed', {
        ...resumed,
        error: current === undefined ? 'the link was not written and is no longer needed' : `the link names ${current}`,
      })
  }
  return reuse
}
