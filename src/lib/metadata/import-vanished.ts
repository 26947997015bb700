/**
 * Repositories that vanished from storage: in the database, of this shard, yet not named by a complete
 * listing of a full import. They are removed (their manifests, tags, layers and links go with them by
 * cascade; blobs stay for the sweep to judge), each in its own transaction with its journal entries, so
 * that an operator can see what an import removed and why.
 */
import type {Db} from './db.js'
import {shardOfRepository} from './import-options.js'
import type {ImportProblem} from './import-counts.js'
import type {StorageDriver} from '../storage/driver.js'
import {repositoryPrefix} from '../storage/layout.js'

const PAGE = 10_000

export interface VanishedRepository {
  id: string
  path: string
}

/** Repositories of the shard in the database that the listing did not name, in path order. */
export async function findVanishedRepositories(
  db: Db,
  listed: ReadonlySet<string>,
  shard: {index: number; count: number},
): Promise<VanishedRepository[]> {
  const vanished: VanishedRepository[] = []
  let after = ''
  for (;;) {
    const page = await db.query<{id: string; path: string}>(
      'SELECT id, path FROM repositories WHERE path > $1 ORDER BY path LIMIT $2',
      [after, PAGE],
    )
    for (const row of page.rows)
      if (shardOfRepository(row.path, shard.count) === shard.index && !listed.has(row.path))
        vanished.push({id: String(row.id), path: row.path})
    if (page.rows.length < PAGE) return vanished
    after = page.rows[page.rows.length - 1].path
  }
}

/** Whether storage holds anything of the repository itself now (not of a repository nested under its name). */
async function stillInStorage(driver: StorageDriver, name: string): Promise<boolean> {
  for (const part of ['_manifests/', '_layers/', '_uploads/']) {
    for await (const object of driver.list(`${repositoryPrefix(name)}${part}`)) {
      void object
      return true
    }
  }
  return false
}

/**
 * Removes the vanished repositories, each after a fresh look at storage (one pushed since the listing
 * passed it stays), journaled as 'delete-repository' (intent and outcome in the removal's transaction).
 * A listing that named no repository at all while the database holds some of this shard removes
 * nothing and says so: a wrong root or prefix must not empty the database.
 */
export async function removeVanishedRepositories(opts: {
  db: Db
  driver: StorageDriver
  listed: ReadonlySet<string>
  shard: {index: number; count: number}
  jobId: string | null
  report: (p: ImportProblem) => void
  signal: AbortSignal
}): Promise<string[]> {
  const {db, driver, listed, shard} = opts
  const vanished = await findVanishedRepositories(db, listed, shard)
  if (vanished.length === 0) return []
  if (listed.size === 0) {
    opts.report({
      kind: 'vanished-kept',
      key: 'repositories/',
      message: `the listing found no repository while the database holds ${vanished.length} of this shard: none removed (a wrong root or prefix?)`,
    })
    return []
  }
  // Regions are replicas of one registry, and a replica may lag: an import of a region the database was not
  // built from would take a repository the lagging region lacks for one that is gone, and removing it would
  // drop the references a metadata sweep relies on, making live blobs look orphaned. So only a region whose
  // own import last wrote the database removes anything.
  const previous = await db.query<{region: string | null}>(
    `SELECT params->>'region' AS region FROM regops_jobs
      WHERE kind = 'import' AND status = 'done' AND ($1::bigint IS NULL OR id <> $1::bigint)
      ORDER BY finished_at DESC LIMIT 1`,
    [opts.jobId],
  )
  const lastRegion = previous.rows[0]?.region ?? undefined
  if (lastRegion !== driver.region) {
    opts.report({
      kind: 'vanished-kept',
      key: 'repositories/',
      message:
        lastRegion === undefined
          ? `${vanished.length} repositories of the database are not in storage: none removed, because no earlier import of region '${driver.region}' wrote the database`
          : `${vanished.length} repositories of the database are not in region '${driver.region}': none removed, because the database was last imported from region '${lastRegion}' (a replica may lag); import that region to remove what is gone`,
    })
    return []
  }
  const removed: string[] = []
  for (const repository of vanished) {
    opts.signal.throwIfAborted()
    if (await stillInStorage(driver, repository.path)) continue
    const key = repositoryPrefix(repository.path)
    const gone = await db.transaction(async (client) => {
      const held = await client.query<{manifests: string; tags: string}>(
        `SELECT (SELECT count(*) FROM manifests m WHERE m.top_level_namespace_id = r.top_level_namespace_id AND m.repository_id = r.id) AS manifests,
                (SELECT count(*) FROM tags t WHERE t.top_level_namespace_id = r.top_level_namespace_id AND t.repository_id = r.id) AS tags
           FROM repositories r WHERE r.id = $1 FOR UPDATE`,
        [repository.id],
      )
      if (held.rows.length === 0) return false
      const detail = {
        repository: repository.path,
        reason: 'vanished from storage',
        manifests: Number(held.rows[0].manifests),
        tags: Number(held.rows[0].tags),
      }
      const intent = await client.query<{id: string}>(
        `INSERT INTO regops_journal (job_id, action, phase, region, key, detail)
         VALUES ($1, 'delete-repository', 'intent', $2, $3, $4::jsonb) RETURNING id`,
        [opts.jobId, driver.region, key, JSON.stringify(detail)],
      )
      await client.query('DELETE FROM repositories WHERE id = $1', [repository.id])
      await client.query(
        `INSERT INTO regops_journal (job_id, intent_id, action, phase, region, key, detail)
         VALUES ($1, $2, 'delete-repository', 'done', $3, $4, $5::jsonb)`,
        [opts.jobId, intent.rows[0].id, driver.region, key, JSON.stringify(detail)],
      )
      return true
    })
    if (gone) removed.push(repository.path)
  }
  return removed
}
