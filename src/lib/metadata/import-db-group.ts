/**
 * The writes of a group of small repositories imported together: the same rows as import-db.ts and
 * import-db-repository.ts write for one repository, but one statement per table for the whole group,
 * every row carrying its own (namespace, repository). A group of 100 repositories costs about as many
 * round trips as one repository did: per-repository statements held the import near 600 manifests/s
 * whatever the storage, because every statement re-plans and re-checks its foreign keys over the
 * hash partitions.
 *
 * Same lock discipline as import-db.ts: shared rows (namespaces, repositories, blobs, media types)
 * are written before the group's transaction in autocommit statements, rows in sorted order; rows a
 * repository owns are written inside the group's transaction. Shards own disjoint repositories.
 */
import type {Db, DbClient} from './db.js'
import {run, runInsertWithGenericChecks, type LayerRow, type ManifestRow, type RepositoryRow} from './import-db.js'

export type GroupRepository = RepositoryRow & {name: string}

function byText<T>(key: (row: T) => string): (a: T, b: T) => number {
  return (a, b) => {
    const x = key(a)
    const y = key(b)
    return x < y ? -1 : x > y ? 1 : 0
  }
}

/**
 * The namespace and repository rows of every name (autocommit; concurrent shards are fine). Returns
 * each repository with whether it existed before, and how many namespaces this call created.
 */
export async function ensureRepositories(
  db: Db,
  names: string[],
  namespaceCache: Map<string, string>,
): Promise<{repositories: Map<string, GroupRepository>; createdNamespaces: number}> {
  const namespaces = [...new Set(names.map((name) => name.split('/')[0]))].sort()
  const unknown = namespaces.filter((n) => !namespaceCache.has(n))
  let createdNamespaces = 0
  if (unknown.length > 0) {
    // Insert, then read in a second statement: only a new statement's snapshot sees a row a concurrent
    // shard inserted while this one waited on it.
    const ins = await run(
      db,
      'group_namespaces_insert',
      `INSERT INTO top_level_namespaces (name) SELECT n FROM unnest($1::text[]) AS n ORDER BY n ON CONFLICT (name) DO NOTHING`,
      [unknown],
    )
    createdNamespaces = ins.rowCount ?? 0
    const r = await run<{id: string; name: string}>(
      db,
      'group_namespace_ids',
      'SELECT id, name FROM top_level_namespaces WHERE name = ANY($1::text[])',
      [unknown],
    )
    if (namespaceCache.size > 10_000) namespaceCache.clear()
    for (const row of r.rows) namespaceCache.set(row.name, String(row.id))
  }
  const sorted = [...new Set(names)].sort()
  const ins = await run<{id: string; path: string}>(
    db,
    'group_repositories_insert',
    `INSERT INTO repositories (top_level_namespace_id, path)
     SELECT t.ns, t.path FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS t(ns, path, n) ORDER BY t.n
     ON CONFLICT (path) DO NOTHING RETURNING id, path`,
    [sorted.map((name) => namespaceCache.get(name.split('/')[0])!), sorted],
  )
  const repositories = new Map<string, GroupRepository>()
  for (const row of ins.rows)
    repositories.set(row.path, {
      name: row.path,
      namespaceId: namespaceCache.get(row.path.split('/')[0])!,
      repositoryId: String(row.id),
      existed: false,
    })
  const rest = sorted.filter((name) => !repositories.has(name))
  if (rest.length > 0) {
    const r = await run<{id: string; top_level_namespace_id: string; path: string}>(
      db,
      'group_repository_ids',
      'SELECT id, top_level_namespace_id, path FROM repositories WHERE path = ANY($1::text[])',
      [rest],
    )
    for (const row of r.rows)
      repositories.set(row.path, {
        name: row.path,
        namespaceId: String(row.top_level_namespace_id),
        repositoryId: String(row.id),
        existed: true,
      })
  }
  return {repositories, createdNamespaces}
}

/** A manifest row of the per-repository import, with the repository of the group it belongs to. */
export interface GroupManifestRow extends ManifestRow {
  repo: GroupRepository
}

/** `${repositoryId} ${digest}`: the key of a manifest of the group. */
export function manifestKey(repositoryId: string, digest: string): string {
  return `${repositoryId} ${digest}`
}

/** Inserts the manifests not there yet; returns the id of each (by manifestKey) and which are new. */
export async function upsertGroupManifests(
  client: DbClient,
  rows: GroupManifestRow[],
): Promise<{ids: Map<string, string>; inserted: Set<string>}> {
  const ids = new Map<string, string>()
  const inserted = new Set<string>()
  if (rows.length === 0) return {ids, inserted}
  const sorted = [...rows].sort(byText((r) => manifestKey(r.repo.repositoryId.padStart(20, '0'), r.digest)))
  const ins = await runInsertWithGenericChecks<{id: string; repository_id: string; digest: string}>(
    client,
    'group_manifests_insert',
    `INSERT INTO manifests (top_level_namespace_id, repository_id, digest, media_type_id, schema_version, payload,
                            configuration_blob_digest, configuration_media_type_id, subject_digest, created_at)
     SELECT t.ns, t.repo, t.d, t.mt, t.sv, t.p, t.cd, t.cmt, t.sd, t.ca
       FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::smallint[], $5::smallint[], $6::bytea[], $7::text[], $8::smallint[], $9::text[], $10::timestamptz[])
            WITH ORDINALITY AS t(ns, repo, d, mt, sv, p, cd, cmt, sd, ca, n)
      ORDER BY t.n
     ON CONFLICT (top_level_namespace_id, repository_id, digest) DO NOTHING
     RETURNING id, repository_id, digest`,
    [
      sorted.map((r) => r.repo.namespaceId),
      sorted.map((r) => r.repo.repositoryId),
      sorted.map((r) => r.digest),
      sorted.map((r) => r.mediaTypeId),
      sorted.map((r) => r.schemaVersion),
      sorted.map((r) => r.payload),
      sorted.map((r) => r.configDigest),
      sorted.map((r) => r.configMediaTypeId),
      sorted.map((r) => r.subjectDigest),
      sorted.map((r) => r.createdAt),
    ],
  )
  for (const row of ins.rows) {
    const key = manifestKey(String(row.repository_id), row.digest)
    ids.set(key, String(row.id))
    inserted.add(key)
  }
  const rest = sorted.filter((r) => !ids.has(manifestKey(r.repo.repositoryId, r.digest)))
  if (rest.length > 0) {
    const r = await run<{id: string; repository_id: string; digest: string}>(
      client,
      'group_manifest_ids',
      // A probe per manifest (see blobs_existing in import-db.ts: a plain join hash-joins the whole table).
      `SELECT m.id, m.repository_id, m.digest FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS t(ns, repo, d)
         CROSS JOIN LATERAL (SELECT m.id, m.repository_id, m.digest FROM manifests m
                              WHERE m.top_level_namespace_id = t.ns AND m.repository_id = t.repo AND m.digest = t.d OFFSET 0) m`,
      [rest.map((r) => r.repo.namespaceId), rest.map((r) => r.repo.repositoryId), rest.map((r) => r.digest)],
    )
    for (const row of r.rows) ids.set(manifestKey(String(row.repository_id), row.digest), String(row.id))
  }
  return {ids, inserted}
}

export interface GroupLayerRow extends LayerRow {
  repo: GroupRepository
}

export async function insertGroupLayers(client: DbClient, rows: GroupLayerRow[]): Promise<number> {
  if (rows.length === 0) return 0
  const r = await runInsertWithGenericChecks(
    client,
    'group_layers_insert',
    `INSERT INTO layers (top_level_namespace_id, repository_id, manifest_id, position, digest, size, media_type_id)
     SELECT t.ns, t.repo, t.m, t.p, t.d, t.s, t.mt
       FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::integer[], $5::text[], $6::bigint[], $7::smallint[])
            AS t(ns, repo, m, p, d, s, mt)
      ORDER BY t.ns, t.repo, t.m, t.p
     ON CONFLICT (top_level_namespace_id, repository_id, manifest_id, position) DO NOTHING`,
    [
      rows.map((r) => r.repo.namespaceId),
      rows.map((r) => r.repo.repositoryId),
      rows.map((r) => r.manifestId),
      rows.map((r) => r.position),
      rows.map((r) => r.digest),
      rows.map((r) => r.size),
      rows.map((r) => r.mediaTypeId),
    ],
  )
  return r.rowCount ?? 0
}

export async function insertGroupRepositoryBlobs(
  client: DbClient,
  links: Array<{repo: GroupRepository; digest: string; createdAt: Date}>,
): Promise<number> {
  if (links.length === 0) return 0
  const r = await runInsertWithGenericChecks(
    client,
    'group_repository_blobs_insert',
    `INSERT INTO repository_blobs (top_level_namespace_id, repository_id, blob_digest, created_at)
     SELECT t.ns, t.repo, t.d, t.c FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[]) AS t(ns, repo, d, c)
      ORDER BY t.ns, t.repo, t.d
     ON CONFLICT (top_level_namespace_id, repository_id, blob_digest) DO NOTHING`,
    [
      links.map((l) => l.repo.namespaceId),
      links.map((l) => l.repo.repositoryId),
      links.map((l) => l.digest),
      links.map((l) => l.createdAt),
    ],
  )
  return r.rowCount ?? 0
}

/**
 * Tags → manifests of their repository. A moved tag is updated (and only then gets updated_at);
 * tags whose digest is not a manifest of the repository come back as dangling (`${repositoryId} ${tag}`).
 */
export async function upsertGroupTags(
  client: DbClient,
  tags: Array<{repo: GroupRepository; name: string; digest: string; createdAt: Date}>,
): Promise<{inserted: number; updated: number; dangling: Set<string>}> {
  if (tags.length === 0) return {inserted: 0, updated: 0, dangling: new Set()}
  const params = [
    tags.map((t) => t.repo.namespaceId),
    tags.map((t) => t.repo.repositoryId),
    tags.map((t) => t.name),
    tags.map((t) => t.digest),
    tags.map((t) => t.createdAt),
  ]
  // A probe per tag's manifest (see blobs_existing in import-db.ts: a plain join hash-joins the whole table).
  const source = `unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[]) AS t(ns, repo, name, digest, ca)
       CROSS JOIN LATERAL (SELECT m.id FROM manifests m
                            WHERE m.top_level_namespace_id = t.ns AND m.repository_id = t.repo AND m.digest = t.digest OFFSET 0) m`
  const ins = await run(
    client,
    'group_tags_insert',
    `INSERT INTO tags (top_level_namespace_id, repository_id, manifest_id, name, created_at)
     SELECT t.ns, t.repo, m.id, t.name, t.ca FROM ${source}
      ORDER BY t.ns, t.repo, t.name
     ON CONFLICT (top_level_namespace_id, repository_id, name) DO NOTHING`,
    params,
  )
  const upd = await run(
    client,
    'group_tags_update',
    `UPDATE tags SET manifest_id = m.id, updated_at = now() FROM ${source}
      WHERE tags.top_level_namespace_id = t.ns AND tags.repository_id = t.repo AND tags.name = t.name AND tags.manifest_id <> m.id`,
    params,
  )
  const found = await run<{repo: string; name: string}>(
    client,
    'group_tags_found',
    `SELECT t.repo, t.name FROM ${source}`,
    params,
  )
  const present = new Set(found.rows.map((row) => `${row.repo} ${row.name}`))
  const dangling = new Set(tags.map((t) => `${t.repo.repositoryId} ${t.name}`).filter((key) => !present.has(key)))
  return {inserted: ins.rowCount ?? 0, updated: upd.rowCount ?? 0, dangling}
}

/**
 * Index → child edges of the group's manifests, by child digest. An edge whose child is a manifest of
 * the parent's repository becomes a manifest_references row; any other is kept by digest in
 * dangling_manifest_references (the registry's GC marks an index's children by digest, linked or not),
 * and a dangling edge whose child has since become a manifest of the repository is removed.
 */
export async function insertGroupReferences(
  client: DbClient,
  repos: GroupRepository[],
  edges: Array<{repo: GroupRepository; parentId: string; parentDigest: string; childDigest: string}>,
): Promise<{
  resolved: number
  inserted: number
  danglingInserted: number
  missing: Array<{repositoryId: string; parentDigest: string; childDigest: string}>
}> {
  const none = {resolved: 0, inserted: 0, danglingInserted: 0, missing: []}
  if (edges.length > 0) {
    const params = [
      edges.map((e) => e.repo.namespaceId),
      edges.map((e) => e.repo.repositoryId),
      edges.map((e) => e.parentId),
      edges.map((e) => e.parentDigest),
      edges.map((e) => e.childDigest),
    ]
    const edgeRows = `unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) AS e(ns, repo, parent_id, parent_digest, child_digest)`
    const child = `SELECT m.id FROM manifests m WHERE m.top_level_namespace_id = e.ns AND m.repository_id = e.repo AND m.digest = e.child_digest`
    const resolved = await run<{ns: string; repo: string; parent_id: string; child_id: string}>(
      client,
      'group_references_resolved',
      `SELECT DISTINCT e.ns, e.repo, e.parent_id, m.id AS child_id FROM ${edgeRows}
         CROSS JOIN LATERAL (${child} OFFSET 0) m
        WHERE m.id <> e.parent_id`,
      params,
    )
    const r = await runInsertWithGenericChecks(
      client,
      'group_references_insert',
      `INSERT INTO manifest_references (top_level_namespace_id, repository_id, parent_id, child_id)
       SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS t(ns, repo, p, c) ORDER BY 1, 2, 3, 4
       ON CONFLICT (top_level_namespace_id, repository_id, parent_id, child_id) DO NOTHING`,
      [
        resolved.rows.map((row) => row.ns),
        resolved.rows.map((row) => row.repo),
        resolved.rows.map((row) => row.parent_id),
        resolved.rows.map((row) => row.child_id),
      ],
    )
    const dangling = await run(
      client,
      'group_dangling_references_insert',
      `INSERT INTO dangling_manifest_references (top_level_namespace_id, repository_id, parent_id, child_digest)
       SELECT DISTINCT e.ns, e.repo, e.parent_id, e.child_digest FROM ${edgeRows} WHERE NOT EXISTS (${child})
        ORDER BY 1, 2, 3, 4
       ON CONFLICT (top_level_namespace_id, repository_id, parent_id, child_digest) DO NOTHING`,
      params,
    )
    const missing = await run<{repo: string; parent_digest: string; child_digest: string}>(
      client,
      'group_references_missing',
      `SELECT DISTINCT e.repo, e.parent_digest, e.child_digest FROM ${edgeRows} WHERE NOT EXISTS (${child}) ORDER BY 1, 2, 3 LIMIT 1000`,
      params,
    )
    none.resolved = resolved.rows.length
    none.inserted = r.rowCount ?? 0
    none.danglingInserted = dangling.rowCount ?? 0
    ;(none as {missing: unknown[]}).missing = missing.rows.map((row) => ({
      repositoryId: String(row.repo),
      parentDigest: row.parent_digest,
      childDigest: row.child_digest,
    }))
  }
  // Only a repository imported before can hold a dangling edge whose child has arrived since.
  const existed = repos.filter((r) => r.existed)
  if (existed.length > 0) {
    await run(
      client,
      'group_dangling_references_resolved',
      `DELETE FROM dangling_manifest_references d USING unnest($1::bigint[], $2::bigint[]) AS g(ns, repo)
        WHERE d.top_level_namespace_id = g.ns AND d.repository_id = g.repo
          AND EXISTS (SELECT 1 FROM manifests m WHERE m.top_level_namespace_id = g.ns AND m.repository_id = g.repo AND m.digest = d.child_digest)`,
      [existed.map((r) => r.namespaceId), existed.map((r) => r.repositoryId)],
    )
  }
  return none
}

/** A manifest revision the import could not read (see import-db-repository.ts). */
export interface GroupUnreadableRow {
  repo: GroupRepository
  key: string
  digest?: string
  problem: string
  message: string
  revisionModified?: Date
}

/**
 * Sets each repository's unreadable revisions to those of this (complete) walk. A new repository has
 * none to remove; an unchanged store changes no row.
 */
export async function replaceGroupUnreadableRevisions(
  client: DbClient,
  repos: GroupRepository[],
  rows: GroupUnreadableRow[],
): Promise<void> {
  const existed = repos.filter((r) => r.existed)
  const byKey = new Map(rows.map((row) => [`${row.repo.repositoryId} ${row.key}`, row]))
  const unique = [...byKey.values()]
  if (existed.length > 0) {
    await run(
      client,
      'group_unreadable_delete',
      `DELETE FROM unreadable_revisions u USING unnest($1::bigint[], $2::bigint[]) AS g(ns, repo)
        WHERE u.top_level_namespace_id = g.ns AND u.repository_id = g.repo
          AND NOT EXISTS (SELECT 1 FROM unnest($3::bigint[], $4::text[]) AS k(repo, key) WHERE k.repo = u.repository_id AND k.key = u.key)`,
      [
        existed.map((r) => r.namespaceId),
        existed.map((r) => r.repositoryId),
        unique.map((row) => row.repo.repositoryId),
        unique.map((row) => row.key),
      ],
    )
  }
  if (unique.length === 0) return
  await run(
    client,
    'group_unreadable_upsert',
    `INSERT INTO unreadable_revisions AS u (top_level_namespace_id, repository_id, key, digest, problem, message, revision_modified)
     SELECT t.ns, t.repo, t.k, t.d, t.p, t.m, t.r
       FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[]) AS t(ns, repo, k, d, p, m, r)
      ORDER BY t.ns, t.repo, t.k
     ON CONFLICT (top_level_namespace_id, repository_id, key) DO UPDATE
        SET digest = excluded.digest, problem = excluded.problem, message = excluded.message, revision_modified = excluded.revision_modified
      WHERE (u.digest, u.problem, u.message, u.revision_modified) IS DISTINCT FROM (excluded.digest, excluded.problem, excluded.message, excluded.revision_modified)`,
    [
      unique.map((row) => row.repo.namespaceId),
      unique.map((row) => row.repo.repositoryId),
      unique.map((row) => row.key),
      unique.map((row) => row.digest ?? null),
      unique.map((row) => row.problem),
      unique.map((row) => row.message),
      unique.map((row) => row.revisionModified ?? null),
    ],
  )
}
