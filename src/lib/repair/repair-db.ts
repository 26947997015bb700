import {RefusedError} from '../errors.js'
import type {Db} from '../metadata/db.js'
import {importStorage} from '../metadata/import.js'
import type {Logger} from '../output/logger.js'
import type {StorageDriver} from '../storage/driver.js'
import {repositoryPrefix} from '../storage/layout.js'
import type {Problem} from '../storage/repositories.js'
import {readRepository} from '../inspect/repository-view.js'
import {journaledChange} from './journaled.js'

export interface SetDifference {
  onlyInStorage: string[]
  onlyInDatabase: string[]
}

export interface RepositoryDifference {
  manifests: SetDifference
  layerLinks: SetDifference
  tags: SetDifference & {differ: Array<{tag: string; storage: string; database: string}>}
}

export interface RepairDbResult {
  kind: 'repair-db'
  repository: string
  region: string
  applied: boolean
  /** before the re-import */
  difference: RepositoryDifference
  same: boolean
  /** after it, when applied: what remains (empty unless storage changed meanwhile or rows could not be written) */
  remaining?: RepositoryDifference
  entry?: string
  importJobId?: string
  error?: string
  problems: Problem[]
}

/**
 * Compares one repository's rows with its storage and, when applied, re-imports it from storage (the
 * import's own transaction per repository, so the rows change all at once or not at all).
 */
export async function repairDb(opts: {
  driver: StorageDriver
  db: Db
  repository: string
  apply: boolean
  logger?: Logger
}): Promise<RepairDbResult> {
  const {driver, db, repository} = opts
  const before = await compareRepository(driver, db, repository)
  if (!before.inStorage && !before.inDatabase) {
    throw new RefusedError(
      `repository ${repository} is neither in region ${driver.region} nor in the database: nothing to repair`,
      {
        hint: 'check the name with regops inspect repo; a repair never acts on more, or other, than the repository named',
      },
    )
  }
  const result: RepairDbResult = {
    kind: 'repair-db',
    repository,
    region: driver.region,
    applied: opts.apply,
    difference: before.difference,
    same: isSame(before.difference),
    problems: before.problems,
  }
  if (!opts.apply || result.same) return result
  const change = await journaledChange(
    db,
    {
      action: 'reimport',
      region: driver.region,
      key: repositoryPrefix(repository),
      detail: {repository, difference: counts(before.difference)},
    },
    async () => {
      const imported = await importStorage({driver, db, repositories: [repository], logger: opts.logger})
      result.importJobId = imported.jobId
      if (imported.failed.length) throw new Error(imported.failed.map((f) => f.message).join('; '))
      return {importJobId: imported.jobId}
    },
  )
  result.entry = change.entry
  if (change.error) result.error = change.error
  result.remaining = (await compareRepository(driver, db, repository)).difference
  return result
}

function isSame(d: RepositoryDifference): boolean {
  return (
    [d.manifests, d.layerLinks, d.tags].every((s) => s.onlyInStorage.length === 0 && s.onlyInDatabase.length === 0) &&
    d.tags.differ.length === 0
  )
}

function counts(d: RepositoryDifference): Record<string, number> {
  return {
    manifestsOnlyInStorage: d.manifests.onlyInStorage.length,
    manifestsOnlyInDatabase: d.manifests.onlyInDatabase.length,
    layerLinksOnlyInStorage: d.layerLinks.onlyInStorage.length,
    layerLinksOnlyInDatabase: d.layerLinks.onlyInDatabase.length,
    tagsDiffering: d.tags.onlyInStorage.length + d.tags.onlyInDatabase.length + d.tags.differ.length,
  }
}

async function compareRepository(driver: StorageDriver, db: Db, repository: string) {
  const view = await readRepository(driver, repository)
  const repo = await db.query<{id: string}>('SELECT id FROM repositories WHERE path = $1', [repository])
  const id = repo.rows[0]?.id
  const rows = async (sql: string) => (id === undefined ? [] : (await db.query(sql, [id])).rows)
  const manifests = (await rows('SELECT digest FROM manifests WHERE repository_id = $1')).map((r) => r.digest as string)
  const links = (await rows('SELECT blob_digest FROM repository_blobs WHERE repository_id = $1')).map(
    (r) => r.blob_digest as string,
  )
  const tagRows = await rows(
    'SELECT t.name, m.digest FROM tags t JOIN manifests m ON m.repository_id = t.repository_id AND m.id = t.manifest_id WHERE t.repository_id = $1',
  )
  const databaseTags = new Map(tagRows.map((r) => [r.name as string, r.digest as string]))
  const storageTags = new Map(view.tags.filter((t) => t.current).map((t) => [t.tag, t.current!]))
  // A revision storage cannot read is not imported as a manifest, so it is no difference to repair.
  const readable = view.revisions.filter((r) => r.manifest).map((r) => r.digest)
  return {
    inStorage: view.exists,
    inDatabase: id !== undefined,
    problems: view.problems,
    difference: {
      manifests: difference(readable, manifests),
      layerLinks: difference(
        view.layerLinks.map((l) => l.digest),
        links,
      ),
      tags: {
        ...difference([...storageTags.keys()], [...databaseTags.keys()]),
        differ: [...storageTags]
          .filter(([tag, digest]) => databaseTags.has(tag) && databaseTags.get(tag) !== digest)
          .map(([tag, digest]) => ({tag, storage: digest, database: databaseTags.get(tag)!})),
      },
    },
  }
}

function difference(storage: string[], database: string[]): SetDifference {
  const inDatabase = new Set(database)
  const inStorage = new Set(storage)
  return {
    onlyInStorage: storage.filter((d) => !inDatabase.has(d)).sort(),
    onlyInDatabase: database.filter((d) => !inStorage.has(d)).sort(),
  }
}
