/**
 * The rows one repository owns (manifest_references, repository_blobs, tags, and what a re-import
 * removes), written inside that repository's transaction, with the per-session scratch tables that
 * collect them. See import-db.ts for the lock discipline.
 */
import type {DbClient} from './db.js'
import {run, runInsertWithGenericChecks, type RepositoryRow} from './import-db.js'

/**
 * Per-session scratch tables of one repository's import (ON COMMIT DELETE ROWS: emptied by the commit
 * or rollback that ends the repository's transaction): index → child edges waiting for the child's id,
 * and, when re-importing, the digests storage still has (to prune rows that storage no longer has).
 */
const scratchReady = new WeakSet<DbClient>()

export async function prepareScratch(client: DbClient): Promise<void> {
  if (scratchReady.has(client)) return
  await client.query(`SET LOCAL client_min_messages = warning`)
  await client.query(
    `CREATE TEMP TABLE IF NOT EXISTS regops_import_edges (parent_id bigint NOT NULL, parent_digest text COLLATE "C" NOT NULL, child_digest text COLLATE "C" NOT NULL) ON COMMIT DELETE ROWS`,
  )
  await client.query(
    `CREATE TEMP TABLE IF NOT EXISTS regops_import_seen (kind "char" NOT NULL, digest text COLLATE "C" NOT NULL) ON COMMIT DELETE ROWS`,
  )
  scratchReady.add(client)
}

/** After a rollback: the scratch tables may have been created by the transaction that rolled back. */
export function forgetScratch(client: DbClient): void {
  scratchReady.delete(client)
}

export async function addEdges(
  client: DbClient,
  edges: Array<{parentId: string; parentDigest: string; childDigest: string}>,
): Promise<number> {
  if (edges.length === 0) return 0
  await run(
    client,
    'edges_insert',
    `INSERT INTO regops_import_edges (parent_id, parent_digest, child_digest) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])`,
    [edges.map((e) => e.parentId), edges.map((e) => e.parentDigest), edges.map((e) => e.childDigest)],
  )
  return edges.length
}

/** Remembers digests storage has ('m' manifest revisions, 'b' _layers links), for pruning. */
export async function addSeen(client: DbClient, kind: 'm' | 'b', digests: string[]): Promise<void> {
  if (digests.length === 0) return
  await run(
    client,
    'seen_insert',
    `INSERT INTO regops_import_seen (kind, digest) SELECT $1, d FROM unnest($2::text[]) AS d`,
    [kind, digests],
  )
}

/**
 * Index → child edges of the repository's manifests. An edge whose child is a manifest of the repository
 * becomes a manifest_references row; any other is kept by digest in dangling_manifest_references, because
 * the registry's GC marks an index's children by digest whether or not they are linked. A dangling edge
 * whose child has since become a manifest of the repository is removed (it is a manifest_references row now).
 */
export async function insertReferences(
  client: DbClient,
  repo: RepositoryRow,
): Promise<{
  resolved: number
  inserted: number
  danglingInserted: number
  missing: Array<{parentDigest: string; childDigest: string}>
}> {
  const r = await run(
    client,
    'references_insert',
    `INSERT INTO manifest_references (top_level_namespace_id, repository_id, parent_id, child_id)
     SELECT DISTINCT $1::bigint, $2::bigint, e.parent_id, m.id
       FROM regops_import_edges e
       JOIN manifests m ON m.top_level_namespace_id = $1 AND m.repository_id = $2 AND m.digest = e.child_digest
      WHERE m.id <> e.parent_id
      ORDER BY 3, 4
     ON CONFLICT (top_level_namespace_id, repository_id, parent_id, child_id) DO NOTHING`,
    [repo.namespaceId, repo.repositoryId],
  )
  const counts = await run<{resolved: string}>(
    client,
    'references_count',
    `SELECT count(DISTINCT (e.parent_id, m.id)) AS resolved FROM regops_import_edges e
       JOIN manifests m ON m.top_level_namespace_id = $1 AND m.repository_id = $2 AND m.digest = e.child_digest
      WHERE m.id <> e.parent_id`,
    [repo.namespaceId, repo.repositoryId],
  )
  const danglingInserted = await run(
    client,
    'dangling_references_insert',
    `INSERT INTO dangling_manifest_references (top_level_namespace_id, repository_id, parent_id, child_digest)
     SELECT DISTINCT $1::bigint, $2::bigint, e.parent_id, e.child_digest
       FROM regops_import_edges e
      WHERE NOT EXISTS (SELECT 1 FROM manifests m WHERE m.top_level_namespace_id = $1 AND m.repository_id = $2 AND m.digest = e.child_digest)
      ORDER BY 3, 4
     ON CONFLICT (top_level_namespace_id, repository_id, parent_id, child_digest) DO NOTHING`,
    [repo.namespaceId, repo.repositoryId],
  )
  await run(
    client,
    'dangling_references_resolved',
    `DELETE FROM dangling_manifest_references d
      WHERE d.top_level_namespace_id = $1 AND d.repository_id = $2
        AND EXISTS (SELECT 1 FROM manifests m WHERE m.top_level_namespace_id = $1 AND m.repository_id = $2 AND m.digest = d.child_digest)`,
    [repo.namespaceId, repo.repositoryId],
  )
  const missing = await run<{parent_digest: string; child_digest: string}>(
    client,
    'references_missing',
    `SELECT DISTINCT e.parent_digest, e.child_digest FROM regops_import_edges e
      WHERE NOT EXISTS (SELECT 1 FROM manifests m WHERE m.top_level_namespace_id = $1 AND m.repository_id = $2 AND m.digest = e.child_digest)
      ORDER BY 1, 2 LIMIT 1000`,
    [repo.namespaceId, repo.repositoryId],
  )
  return {
    resolved: Number(counts.rows[0].resolved),
    inserted: r.rowCount ?? 0,
    danglingInserted: danglingInserted.rowCount ?? 0,
    missing: missing.rows.map((row) => ({parentDigest: row.parent_digest, childDigest: row.child_digest})),
  }
}

/** A manifest revision the import could not read: what it references is unknown. */
export interface UnreadableRevision {
  key: string
  /** undefined when the key names no digest regops can represent */
  digest?: string
  problem: string
  message: string
  revisionModified?: Date
}

/**
 * Sets the repository's unreadable revisions to those of this (complete) walk: a revision read
 * successfully now, or gone, loses its row. Idempotent: an unchanged store changes no row.
 */
export async function replaceUnreadableRevisions(
  client: DbClient,
  repo: RepositoryRow,
  rows: UnreadableRevision[],
): Promise<void> {
  const byKey = new Map(rows.map((row) => [row.key, row]))
  const sorted = [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  const keys = sorted.map((row) => row.key)
  await run(
    client,
    'unreadable_delete',
    'DELETE FROM unreadable_revisions WHERE top_level_namespace_id = $1 AND repository_id = $2 AND NOT (key = ANY($3::text[]))',
    [repo.namespaceId, repo.repositoryId, keys],
  )
  if (sorted.length === 0) return
  await run(
    client,
    'unreadable_upsert',
    `INSERT INTO unreadable_revisions AS u (top_level_namespace_id, repository_id, key, digest, problem, message, revision_modified)
     SELECT $1, $2, t.k, t.d, t.p, t.m, t.r
       FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[]) WITH ORDINALITY AS t(k, d, p, m, r, n)
      ORDER BY t.n
     ON CONFLICT (top_level_namespace_id, repository_id, key) DO UPDATE
        SET digest = excluded.digest, problem = excluded.problem, message = excluded.message, revision_modified = excluded.revision_modified
      WHERE (u.digest, u.problem, u.message, u.revision_modified) IS DISTINCT FROM (excluded.digest, excluded.problem, excluded.message, excluded.revision_modified)`,
    [
      repo.namespaceId,
      repo.repositoryId,
      keys,
      sorted.map((row) => row.digest ?? null),
      sorted.map((row) => row.problem),
      sorted.map((row) => row.message),
      sorted.map((row) => row.revisionModified ?? null),
    ],
  )
}

export async function insertRepositoryBlobs(
  client: DbClient,
  repo: RepositoryRow,
  links: Array<{digest: string; createdAt: Date}>,
): Promise<number> {
  if (links.length === 0) return 0
  const sorted = [...links].sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0))
  const r = await runInsertWithGenericChecks(
    client,
    'repository_blobs_insert',
    `INSERT INTO repository_blobs (top_level_namespace_id, repository_id, blob_digest, created_at)
     SELECT $1, $2, t.d, t.c FROM unnest($3::text[], $4::timestamptz[]) WITH ORDINALITY AS t(d, c, n) ORDER BY t.n
     ON CONFLICT (top_level_namespace_id, repository_id, blob_digest) DO NOTHING`,
    [repo.namespaceId, repo.repositoryId, sorted.map((l) => l.digest), sorted.map((l) => l.createdAt)],
  )
  return r.rowCount ?? 0
}

/**
 * Tags → manifests of the repository. A moved tag is updated (and only then gets updated_at);
 * tags whose digest is not a manifest of the repository come back as dangling.
 */
export async function upsertTags(
  client: DbClient,
  repo: RepositoryRow,
  tags: Array<{name: string; digest: string; createdAt: Date}>,
): Promise<{imported: number; inserted: number; updated: number; dangling: Set<string>}> {
  if (tags.length === 0) return {imported: 0, inserted: 0, updated: 0, dangling: new Set()}
  const sorted = [...tags].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  const params = [
    repo.namespaceId,
    repo.repositoryId,
    sorted.map((t) => t.name),
    sorted.map((t) => t.digest),
    sorted.map((t) => t.createdAt),
  ]
  const ins = await run(
    client,
    'tags_insert',
    `INSERT INTO tags (top_level_namespace_id, repository_id, manifest_id, name, created_at)
     SELECT $1, $2, m.id, t.name, t.ca
       FROM unnest($3::text[], $4::text[], $5::timestamptz[]) WITH ORDINALITY AS t(name, digest, ca, n)
       JOIN manifests m ON m.top_level_namespace_id = $1 AND m.repository_id = $2 AND m.digest = t.digest
      ORDER BY t.n
     ON CONFLICT (top_level_namespace_id, repository_id, name) DO NOTHING`,
    params,
  )
  const upd = await run(
    client,
    'tags_update',
    `UPDATE tags SET manifest_id = m.id, updated_at = now()
       FROM unnest($3::text[], $4::text[], $5::timestamptz[]) AS t(name, digest, ca)
       JOIN manifests m ON m.top_level_namespace_id = $1 AND m.repository_id = $2 AND m.digest = t.digest
      WHERE tags.top_level_namespace_id = $1 AND tags.repository_id = $2 AND tags.name = t.name AND tags.manifest_id <> m.id`,
    params,
  )
  const found = await run<{digest: string}>(
    client,
    'tags_found',
    'SELECT digest FROM manifests WHERE top_level_namespace_id = $1 AND repository_id = $2 AND digest = ANY($3::text[])',
    [repo.namespaceId, repo.repositoryId, [...new Set(sorted.map((t) => t.digest))]],
  )
  const present = new Set(found.rows.map((row) => row.digest))
  const dangling = new Set(sorted.filter((t) => !present.has(t.digest)).map((t) => t.name))
  return {imported: sorted.length - dangling.size, inserted: ins.rowCount ?? 0, updated: upd.rowCount ?? 0, dangling}
}

export interface PruneCounts {
  manifests: number
  tags: number
  repositoryBlobs: number
}

/**
 * Re-import of a repository already in the database: removes what storage no longer has: tags whose
 * current link is gone, manifests whose revision link is gone (their layers, tags and index edges
 * go with them), and repository_blobs whose _layers link is gone. Only called after a complete walk
 * of the repository (a listing that failed fails the whole repository instead).
 */
export async function pruneRepository(client: DbClient, repo: RepositoryRow, tagNames: string[]): Promise<PruneCounts> {
  const tags = await run(
    client,
    'prune_tags',
    `DELETE FROM tags WHERE top_level_namespace_id = $1 AND repository_id = $2 AND NOT (name = ANY($3::text[]))`,
    [repo.namespaceId, repo.repositoryId, tagNames],
  )
  const gone = `SELECT m.id FROM manifests m WHERE m.top_level_namespace_id = $1 AND m.repository_id = $2
                  AND NOT EXISTS (SELECT 1 FROM regops_import_seen s WHERE s.kind = 'm' AND s.digest = m.digest)`
  // A child that is gone takes its edges with it (the child foreign key has no ON DELETE).
  await run(
    client,
    'prune_references',
    `DELETE FROM manifest_references WHERE top_level_namespace_id = $1 AND repository_id = $2 AND child_id IN (${gone})`,
    [repo.namespaceId, repo.repositoryId],
  )
  const manifests = await run(
    client,
    'prune_manifests',
    `DELETE FROM manifests WHERE top_level_namespace_id = $1 AND repository_id = $2 AND id IN (${gone})`,
    [repo.namespaceId, repo.repositoryId],
  )
  const blobs = await run(
    client,
    'prune_repository_blobs',
    `DELETE FROM repository_blobs rb WHERE rb.top_level_namespace_id = $1 AND rb.repository_id = $2
        AND NOT EXISTS (SELECT 1 FROM regops_import_seen s WHERE s.kind = 'b' AND s.digest = rb.blob_digest)`,
    [repo.namespaceId, repo.repositoryId],
  )
  return {manifests: manifests.rowCount ?? 0, tags: tags.rowCount ?? 0, repositoryBlobs: blobs.rowCount ?? 0}
}
