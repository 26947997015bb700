/**
 * The prune of a group re-import: it removes from the database what storage no longer has, where
 * import-db-group.ts writes what storage has.
 */
import type {DbClient} from './db.js'
import {run} from './import-db.js'
import type {GroupRepository} from './import-db-group.js'

/**
 * Re-import of repositories already in the database: removes what storage no longer has (tags whose
 * current link is gone, manifests whose revision link is gone with their edges, layers and tags,
 * repository_blobs whose _layers link is gone). Each repository's lists are complete: a listing that
 * failed failed its repository instead.
 *
 * The group's rows are read one repository's index range at a time and compared with the lists here;
 * only what storage no longer has is deleted, by primary key. One anti-join statement per table made a
 * re-import quadratic: the planner joined the whole table by hash and re-scanned the listed pairs for
 * every row (repository_blobs of a 30k-manifest store: 620 ms a group of 100 repositories, against 25 ms
 * this way; the second import of 100k manifests took 74 s, the first 47 s).
 */
export async function pruneGroup(
  client: DbClient,
  repos: Array<{repo: GroupRepository; tags: string[]; manifests: string[]; layerLinks: string[]}>,
): Promise<{manifests: number; tags: number; repositoryBlobs: number}> {
  if (repos.length === 0) return {manifests: 0, tags: 0, repositoryBlobs: 0}
  const listed = (pick: (r: (typeof repos)[number]) => string[]) => {
    const keys = new Set<string>()
    for (const r of repos) for (const value of pick(r)) keys.add(`${r.repo.repositoryId} ${value}`)
    return keys
  }
  const listedTags = listed((r) => r.tags)
  const listedManifests = listed((r) => r.manifests)
  const listedLinks = listed((r) => r.layerLinks)
  const tags = await deleteRows(client, 'tags', await unlisted(client, repos, 'tags', listedTags))
  const goneManifests = await unlisted(client, repos, 'manifests', listedManifests)
  // A child that is gone takes its edges with it (the child foreign key has no ON DELETE).
  for (const [repo, ids] of goneManifests)
    await run(
      client,
      'group_prune_references',
      `DELETE FROM manifest_references WHERE top_level_namespace_id = $1 AND repository_id = $2 AND child_id = ANY($3::bigint[])`,
      [repo.namespaceId, repo.repositoryId, ids],
    )
  const manifests = await deleteRows(client, 'manifests', goneManifests)
  const links = await unlisted(client, repos, 'repository_blobs', listedLinks)
  const repositoryBlobs = await deleteRows(client, 'repository_blobs', links)
  return {manifests, tags, repositoryBlobs}
}

/**
 * Per pruned table: the id and compared value of its rows in the group's repositories, and the delete of
 * one repository's rows by id. OFFSET 0 keeps each LATERAL subquery a per-repository index scan (one
 * partition each, pruned at run time) instead of letting the planner flatten it into a hash join over the
 * whole table. Written out per table: no identifier is interpolated into SQL.
 */
const PRUNE = {
  tags: {
    existing: `SELECT x.repository_id, x.id, x.value FROM unnest($1::bigint[], $2::bigint[]) AS g(ns, repo)
                 CROSS JOIN LATERAL (SELECT t.repository_id, t.id, t.name AS value FROM tags t
                                      WHERE t.top_level_namespace_id = g.ns AND t.repository_id = g.repo OFFSET 0) x`,
    delete: `DELETE FROM tags WHERE top_level_namespace_id = $1 AND repository_id = $2 AND id = ANY($3::bigint[])`,
  },
  manifests: {
    existing: `SELECT x.repository_id, x.id, x.value FROM unnest($1::bigint[], $2::bigint[]) AS g(ns, repo)
                 CROSS JOIN LATERAL (SELECT m.repository_id, m.id, m.digest::text AS value FROM manifests m
                                      WHERE m.top_level_namespace_id = g.ns AND m.repository_id = g.repo OFFSET 0) x`,
    delete: `DELETE FROM manifests WHERE top_level_namespace_id = $1 AND repository_id = $2 AND id = ANY($3::bigint[])`,
  },
  repository_blobs: {
    existing: `SELECT x.repository_id, x.id, x.value FROM unnest($1::bigint[], $2::bigint[]) AS g(ns, repo)
                 CROSS JOIN LATERAL (SELECT rb.repository_id, rb.id, rb.blob_digest::text AS value FROM repository_blobs rb
                                      WHERE rb.top_level_namespace_id = g.ns AND rb.repository_id = g.repo OFFSET 0) x`,
    delete: `DELETE FROM repository_blobs WHERE top_level_namespace_id = $1 AND repository_id = $2 AND id = ANY($3::bigint[])`,
  },
} as const
type PrunedTable = keyof typeof PRUNE

/** Ids of the rows of the group's repositories whose value is not listed (`${repositoryId} ${value}`), by repository. */
async function unlisted(
  client: DbClient,
  repos: Array<{repo: GroupRepository}>,
  table: PrunedTable,
  listedKeys: Set<string>,
): Promise<Map<GroupRepository, string[]>> {
  const rows = await run<{repository_id: string; id: string; value: string}>(
    client,
    `group_existing_${table}`,
    PRUNE[table].existing,
    [repos.map((r) => r.repo.namespaceId), repos.map((r) => r.repo.repositoryId)],
  )
  const byId = new Map(repos.map((r) => [r.repo.repositoryId, r.repo]))
  const gone = new Map<GroupRepository, string[]>()
  for (const row of rows.rows) {
    if (listedKeys.has(`${row.repository_id} ${row.value}`)) continue
    const repo = byId.get(String(row.repository_id))!
    const ids = gone.get(repo) ?? []
    ids.push(String(row.id))
    gone.set(repo, ids)
  }
  return gone
}

/** Deletes rows by primary key, one statement per repository (rare: only what storage no longer has). */
async function deleteRows(client: DbClient, table: PrunedTable, gone: Map<GroupRepository, string[]>): Promise<number> {
  let deleted = 0
  for (const [repo, ids] of gone) {
    const result = await run(client, `group_prune_${table}`, PRUNE[table].delete, [
      repo.namespaceId,
      repo.repositoryId,
      ids,
    ])
    deleted += result.rowCount ?? 0
  }
  return deleted
}
