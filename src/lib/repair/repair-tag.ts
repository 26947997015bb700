import {RefusedError, errorMessage} from '../errors.js'
import type {Db} from '../metadata/db.js'
import type {StorageDriver} from '../storage/driver.js'
import {pathFor} from '../storage/layout.js'
import {readTags, repositoryExists} from '../inspect/repository-view.js'
import {journaledChange} from './journaled.js'

export interface RepairTagResult {
  kind: 'repair-tag'
  repository: string
  tag: string
  region: string
  from?: string
  to: string
  applied: boolean
  /** unchanged: the tag already points there */
  state: 'would-move' | 'moved' | 'failed' | 'unchanged'
  /** journal entry of the move (undo it with regops journal undo) */
  entry?: string
  /** the tags row: updated, not in the database (import the repository), or no database configured */
  database: 'updated' | 'no-row' | 'not-configured' | 'failed' | 'unchanged'
  error?: string
}

export interface RepairTagOptions {
  driver: StorageDriver
  repository: string
  tag: string
  to: string
  apply: boolean
  /** required with apply: the journal; the tags row is updated too */
  db?: Db
}

/**
 * Points a tag back at a digest it held before. Only a digest from the tag's own index history is
 * accepted, and only when the repository still serves that manifest, so a typo cannot retarget a tag.
 */
export async function repairTag(opts: RepairTagOptions): Promise<RepairTagResult> {
  const {driver, repository, tag, to} = opts
  if (!(await repositoryExists(driver, repository)))
    throw new RefusedError(`repository ${repository} does not exist in region ${driver.region}: nothing to repair`)
  const view = (await readTags(driver, repository, () => {})).find((t) => t.tag === tag)
  if (!view)
    throw new RefusedError(`tag ${tag} does not exist in ${repository} (region ${driver.region}): nothing to repair`)
  if (!view.history.some((h) => h.digest === to)) {
    throw new RefusedError(
      `${to} is not in the index history of ${repository}:${tag}; it held ${view.history.map((h) => h.digest).join(', ') || 'nothing'}`,
      {
        hint: 'regops inspect manifest REPO:TAG lists the history; a tag is only moved back to a digest it held',
      },
    )
  }
  if (!(await driver.stat(pathFor({kind: 'manifest-revision-link', repository, digest: to})))) {
    throw new RefusedError(`${repository}@${to} has no revision link, so the registry would not serve the tag`, {
      hint: `regops repair links ${repository} recreates it when the manifest blob is there`,
    })
  }
  if (!(await driver.stat(pathFor({kind: 'blob-data', digest: to}))))
    throw new RefusedError(`the manifest blob ${to} is not in region ${driver.region}`)
  const result: RepairTagResult = {
    kind: 'repair-tag',
    repository,
    tag,
    region: driver.region,
    ...(view.current ? {from: view.current} : {}),
    to,
    applied: opts.apply,
    state: view.current === to ? 'unchanged' : 'would-move',
    database: opts.db ? 'unchanged' : 'not-configured',
  }
  if (result.state === 'unchanged' || !opts.apply) return result
  if (!opts.db) throw new RefusedError('repair tag --apply needs the database for its journal')
  const db = opts.db
  const key = pathFor({kind: 'tag-current-link', repository, tag})
  const change = await journaledChange(
    db,
    {
      action: 'tag-move',
      region: driver.region,
      key,
      digest: to,
      detail: {repository, tag, from: view.current ?? null, to},
    },
    async () => {
      await driver.write(key, Buffer.from(to))
      // The storage move is done and journaled as done even when the row cannot follow: storage is what the registry serves.
      try {
        result.database = await updateTagRow(db, repository, tag, to)
      } catch (error) {
        result.database = 'failed'
        result.error = `the tag moved in storage but its database row did not: ${errorMessage(error)} (regops repair db --repository ${repository} re-imports it)`
      }
      return {database: result.database}
    },
  )
  result.entry = change.entry
  result.state = change.ok ? 'moved' : 'failed'
  if (change.error) result.error = change.error
  return result
}

/** Points the tags row at the manifest row of `digest`; 'no-row' when the database does not hold the tag or the manifest. */
export async function updateTagRow(
  db: Db,
  repository: string,
  tag: string,
  digest: string,
): Promise<RepairTagResult['database']> {
  const updated = await db.query(
    `UPDATE tags t SET manifest_id = m.id, updated_at = now()
         FROM repositories r, manifests m
        WHERE r.path = $1 AND t.top_level_namespace_id = r.top_level_namespace_id AND t.repository_id = r.id AND t.name = $2
          AND m.top_level_namespace_id = r.top_level_namespace_id AND m.repository_id = r.id AND m.digest = $3`,
    [repository, tag, digest],
  )
  return (updated.rowCount ?? 0) > 0 ? 'updated' : 'no-row'
}
