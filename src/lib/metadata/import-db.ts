/**
 * The writes of `regops import`: batched (one statement per table per batch, rows passed as arrays and
 * expanded with unnest), idempotent (ON CONFLICT DO NOTHING, or DO UPDATE … WHERE something changed),
 * and safe to run from several shard processes at once.
 *
 * Lock discipline, so that concurrent shards never deadlock:
 * - Rows shared between repositories (media_types, top_level_namespaces, repositories, blobs) are
 *   written in their own short autocommit statements, never inside a repository's transaction, each
 *   statement inserting its rows in sorted order. A transaction holds at most one such statement's locks.
 * - Rows owned by one repository (manifests, layers, manifest_references, tags, repository_blobs) are
 *   written inside that repository's transaction; shards own disjoint repositories, so they never
 *   touch the same rows.
 */
import pLimit from 'p-limit'
import type {Db, DbClient, QueryResult, QueryResultRow} from './db.js'
import type {StorageDriver} from '../storage/driver.js'
import {pathFor} from '../storage/layout.js'

/** media_types.media_type is 1..255 characters; anything else is recorded as this. */
export const FALLBACK_MEDIA_TYPE = 'application/octet-stream'

type Queryable = Pick<DbClient, 'query'>

/**
 * Runs one of the import's statements as a named prepared statement: planned once per connection
 * instead of once per call (planning over 64 hash partitions costs more than running these).
 */
async function run<R extends QueryResultRow = QueryResultRow>(on: Db | Queryable, name: string, text: string, values: unknown[]): Promise<QueryResult<R>> {
  const config = {name: `regops_import_${name}`, text, values}
  if ('withClient' in on) return on.withClient((client) => client.query<R>(config))
  return on.query<R>(config)
}

export function cleanMediaType(mediaType: string | undefined): string | undefined {
  if (mediaType === undefined) return undefined
  return mediaType.length >= 1 && mediaType.length <= 255 ? mediaType : FALLBACK_MEDIA_TYPE
}

/** media type → id, loaded once and extended as unknown types are met (inserted into media_types). */
export class MediaTypeIds {
  private readonly ids = new Map<string, number>()
  private loaded = false
  /** media types this process inserted */
  added = 0

  constructor(private readonly db: Db) {}

  async resolve(types: Iterable<string>): Promise<void> {
    if (!this.loaded) {
      const r = await this.db.query<{id: number; media_type: string}>('SELECT id, media_type FROM media_types')
      for (const row of r.rows) this.ids.set(row.media_type, row.id)
      this.loaded = true
    }
    const missing = [...new Set(types)].filter((t) => !this.ids.has(t)).sort()
    if (missing.length === 0) return
    const inserted = await this.db.query(
      `INSERT INTO media_types (media_type) SELECT t FROM unnest($1::text[]) AS t ORDER BY t ON CONFLICT (media_type) DO NOTHING`,
      [missing],
    )
    this.added += inserted.rowCount ?? 0
    const r = await this.db.query<{id: number; media_type: string}>('SELECT id, media_type FROM media_types WHERE media_type = ANY($1::text[])', [missing])
    for (const row of r.rows) this.ids.set(row.media_type, row.id)
  }

  /** The id of a type passed to resolve() before. */
  id(mediaType: string): number {
    const id = this.ids.get(mediaType)
    if (id === undefined) throw new Error(`media type not resolved: ${mediaType}`)
    return id
  }

  idOrNull(mediaType: string | undefined): number | null {
    return mediaType === undefined ? null : this.id(mediaType)
  }
}

export interface RepositoryRow {
  namespaceId: string
  repositoryId: string
  /** false when this run created the row */
  existed: boolean
}

/** Ensures the top-level namespace and the repository rows (autocommit; concurrent shards are fine). */
export async function ensureRepository(db: Db, name: string, namespaceCache: Map<string, string>): Promise<RepositoryRow & {createdNamespace: boolean}> {
  const namespace = name.split('/')[0]
  let namespaceId = namespaceCache.get(namespace)
  let createdNamespace = false
  if (namespaceId === undefined) {
    // Two statements, not INSERT … RETURNING UNION SELECT: after waiting for a concurrent insert of
    // the same name, only a new statement's snapshot sees that row.
    const ins = await run(db, 'namespace_insert', 'INSERT INTO top_level_namespaces (name) VALUES ($1) ON CONFLICT (name) DO NOTHING', [namespace])
    createdNamespace = (ins.rowCount ?? 0) > 0
    const r = await run<{id: string}>(db, 'namespace_id', 'SELECT id FROM top_level_namespaces WHERE name = $1', [namespace])
    namespaceId = String(r.rows[0].id)
    if (namespaceCache.size > 10_000) namespaceCache.clear()
    namespaceCache.set(namespace, namespaceId)
  }
  const ins = await run<{id: string}>(db, 'repository_insert',
    'INSERT INTO repositories (top_level_namespace_id, path) VALUES ($1, $2) ON CONFLICT (path) DO NOTHING RETURNING id',
    [namespaceId, name],
  )
  if (ins.rows.length > 0) return {namespaceId, repositoryId: String(ins.rows[0].id), existed: false, createdNamespace}
  const r = await run<{id: string; top_level_namespace_id: string}>(db, 'repository_id', 'SELECT id, top_level_namespace_id FROM repositories WHERE path = $1', [name])
  return {namespaceId: String(r.rows[0].top_level_namespace_id), repositoryId: String(r.rows[0].id), existed: true, createdNamespace}
}

/** What a batch knows about a blob before asking storage. */
export interface BlobWant {
  /** size from a descriptor (or the payload that was read); used when storage has no such blob */
  size?: number
  mediaTypeId: number | null
  /** a _layers link only: a missing blob gets no row (and no size to give it) */
  linkOnly: boolean
}

export interface BlobKnown {
  size: number
  /** the blob's data is in storage (or was already in the database) */
  present: boolean
  /** this batch inserted the row */
  inserted: boolean
}

/**
 * Makes sure every wanted blob has a `blobs` row, in one autocommit statement, rows in digest order.
 * Blobs already in the database are not touched in storage; the others are stat'ed: size and
 * created_at come from storage, or, for a referenced blob storage lacks, size from the descriptor.
 * A blob's media type is the smallest media_types id any reference gives it: deterministic whatever
 * the order of repositories or shards.
 */
export async function ensureBlobs(db: Db, driver: StorageDriver, wants: Map<string, BlobWant>, concurrency: number): Promise<Map<string, BlobKnown>> {
  const known = new Map<string, BlobKnown>()
  if (wants.size === 0) return known
  const digests = [...wants.keys()]
  const existing = await run<{digest: string; size: string; media_type_id: number | null}>(db, 'blobs_existing',
    'SELECT digest, size, media_type_id FROM blobs WHERE digest = ANY($1::text[])',
    [digests],
  )
  const rows: Array<{digest: string; size: number; mediaTypeId: number | null; createdAt: Date | null}> = []
  const existingDigests = new Set<string>()
  for (const row of existing.rows) {
    existingDigests.add(row.digest)
    known.set(row.digest, {size: Number(row.size), present: true, inserted: false})
    const want = wants.get(row.digest)!
    if (want.mediaTypeId !== null && (row.media_type_id === null || want.mediaTypeId < row.media_type_id)) {
      rows.push({digest: row.digest, size: Number(row.size), mediaTypeId: want.mediaTypeId, createdAt: null})
    }
  }
  const limit = pLimit(concurrency)
  await Promise.all(
    digests
      .filter((digest) => !known.has(digest))
      .map((digest) =>
        limit(async () => {
          const want = wants.get(digest)!
          const info = await driver.stat(pathFor({kind: 'blob-data', digest}))
          if (info) {
            known.set(digest, {size: info.size, present: true, inserted: false})
            rows.push({digest, size: info.size, mediaTypeId: want.mediaTypeId, createdAt: info.lastModified})
          } else if (!want.linkOnly) {
            const size = want.size ?? 0
            known.set(digest, {size, present: false, inserted: false})
            rows.push({digest, size, mediaTypeId: want.mediaTypeId, createdAt: null})
          }
        }),
      ),
  )
  if (rows.length === 0) return known
  rows.sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0))
  // Partitioned tables cannot return xmax, so: insert what is new (RETURNING tells which), then lower
  // the media type of the others where this batch knows a smaller one.
  const fresh = rows.filter((r) => !existingDigests.has(r.digest))
  const result = await run<{digest: string}>(db, 'blobs_insert',
    `INSERT INTO blobs (digest, size, media_type_id, created_at)
     SELECT t.d, t.s, t.m, coalesce(t.c, now())
       FROM unnest($1::text[], $2::bigint[], $3::smallint[], $4::timestamptz[]) WITH ORDINALITY AS t(d, s, m, c, n)
      ORDER BY t.n
     ON CONFLICT (digest) DO NOTHING
     RETURNING digest`,
    [fresh.map((r) => r.digest), fresh.map((r) => r.size), fresh.map((r) => r.mediaTypeId), fresh.map((r) => r.createdAt)],
  )
  const inserted = new Set(result.rows.map((row) => row.digest))
  for (const digest of inserted) known.get(digest)!.inserted = true
  // One row per statement, in digest order: concurrent shards never wait on each other in a cycle.
  for (const r of rows) {
    if (inserted.has(r.digest) || r.mediaTypeId === null) continue
    await run(db, 'blob_media_type', 'UPDATE blobs SET media_type_id = $2 WHERE digest = $1 AND (media_type_id IS NULL OR media_type_id > $2)', [r.digest, r.mediaTypeId])
  }
  return known
}

export interface ManifestRow {
  digest: string
  mediaTypeId: number
  schemaVersion: 1 | 2
  payload: Buffer
  configDigest: string | null
  configMediaTypeId: number | null
  subjectDigest: string | null
  createdAt: Date
}

/** Inserts the manifests that are not there yet; returns the id of every digest and which are new. */
export async function upsertManifests(
  client: DbClient,
  repo: RepositoryRow,
  rows: ManifestRow[],
): Promise<{ids: Map<string, string>; inserted: Set<string>}> {
  const sorted = [...rows].sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0))
  const ins = await run<{id: string; digest: string}>(client, 'manifests_insert',
    `INSERT INTO manifests (top_level_namespace_id, repository_id, digest, media_type_id, schema_version, payload,
                            configuration_blob_digest, configuration_media_type_id, subject_digest, created_at)
     SELECT $1, $2, t.d, t.mt, t.sv, t.p, t.cd, t.cmt, t.sd, t.ca
       FROM unnest($3::text[], $4::smallint[], $5::smallint[], $6::bytea[], $7::text[], $8::smallint[], $9::text[], $10::timestamptz[])
            WITH ORDINALITY AS t(d, mt, sv, p, cd, cmt, sd, ca, n)
      ORDER BY t.n
     ON CONFLICT (top_level_namespace_id, repository_id, digest) DO NOTHING
     RETURNING id, digest`,
    [
      repo.namespaceId,
      repo.repositoryId,
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
  const ids = new Map<string, string>()
  const inserted = new Set<string>()
  for (const row of ins.rows) {
    ids.set(row.digest, String(row.id))
    inserted.add(row.digest)
  }
  const rest = sorted.filter((r) => !ids.has(r.digest)).map((r) => r.digest)
  if (rest.length > 0) {
    const r = await run<{id: string; digest: string}>(client, 'manifest_ids',
      'SELECT id, digest FROM manifests WHERE top_level_namespace_id = $1 AND repository_id = $2 AND digest = ANY($3::text[])',
      [repo.namespaceId, repo.repositoryId, rest],
    )
    for (const row of r.rows) ids.set(row.digest, String(row.id))
  }
  return {ids, inserted}
}

export interface LayerRow {
  manifestId: string
  position: number
  digest: string
  size: number
  mediaTypeId: number
}

export async function insertLayers(client: DbClient, repo: RepositoryRow, rows: LayerRow[]): Promise<number> {
  if (rows.length === 0) return 0
  const r = await run(client, 'layers_insert',
    `INSERT INTO layers (top_level_namespace_id, repository_id, manifest_id, position, digest, size, media_type_id)
     SELECT $1, $2, t.m, t.p, t.d, t.s, t.mt
       FROM unnest($3::bigint[], $4::integer[], $5::text[], $6::bigint[], $7::smallint[]) AS t(m, p, d, s, mt)
      ORDER BY t.m, t.p
     ON CONFLICT (top_level_namespace_id, repository_id, manifest_id, position) DO NOTHING`,
    [repo.namespaceId, repo.repositoryId, rows.map((r) => r.manifestId), rows.map((r) => r.position), rows.map((r) => r.digest), rows.map((r) => r.size), rows.map((r) => r.mediaTypeId)],
  )
  return r.rowCount ?? 0
}

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
  await client.query(`CREATE TEMP TABLE IF NOT EXISTS regops_import_seen (kind "char" NOT NULL, digest text COLLATE "C" NOT NULL) ON COMMIT DELETE ROWS`)
  scratchReady.add(client)
}

/** After a rollback: the scratch tables may have been created by the transaction that rolled back. */
export function forgetScratch(client: DbClient): void {
  scratchReady.delete(client)
}

export async function addEdges(client: DbClient, edges: Array<{parentId: string; parentDigest: string; childDigest: string}>): Promise<number> {
  if (edges.length === 0) return 0
  await run(client, 'edges_insert',
    `INSERT INTO regops_import_edges (parent_id, parent_digest, child_digest) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])`,
    [edges.map((e) => e.parentId), edges.map((e) => e.parentDigest), edges.map((e) => e.childDigest)],
  )
  return edges.length
}

/** Remembers digests storage has ('m' manifest revisions, 'b' _layers links), for pruning. */
export async function addSeen(client: DbClient, kind: 'm' | 'b', digests: string[]): Promise<void> {
  if (digests.length === 0) return
  await run(client, 'seen_insert', `INSERT INTO regops_import_seen (kind, digest) SELECT $1, d FROM unnest($2::text[]) AS d`, [kind, digests])
}

/** Index → child edges whose child is a manifest of the repository become manifest_references. */
export async function insertReferences(
  client: DbClient,
  repo: RepositoryRow,
): Promise<{resolved: number; inserted: number; missing: Array<{parentDigest: string; childDigest: string}>}> {
  const r = await run(client, 'references_insert',
    `INSERT INTO manifest_references (top_level_namespace_id, repository_id, parent_id, child_id)
     SELECT DISTINCT $1::bigint, $2::bigint, e.parent_id, m.id
       FROM regops_import_edges e
       JOIN manifests m ON m.top_level_namespace_id = $1 AND m.repository_id = $2 AND m.digest = e.child_digest
      WHERE m.id <> e.parent_id
      ORDER BY 3, 4
     ON CONFLICT (top_level_namespace_id, repository_id, parent_id, child_id) DO NOTHING`,
    [repo.namespaceId, repo.repositoryId],
  )
  const counts = await run<{resolved: string}>(client, 'references_count',
    `SELECT count(DISTINCT (e.parent_id, m.id)) AS resolved FROM regops_import_edges e
       JOIN manifests m ON m.top_level_namespace_id = $1 AND m.repository_id = $2 AND m.digest = e.child_digest
      WHERE m.id <> e.parent_id`,
    [repo.namespaceId, repo.repositoryId],
  )
  const missing = await run<{parent_digest: string; child_digest: string}>(client, 'references_missing',
    `SELECT DISTINCT e.parent_digest, e.child_digest FROM regops_import_edges e
      WHERE NOT EXISTS (SELECT 1 FROM manifests m WHERE m.top_level_namespace_id = $1 AND m.repository_id = $2 AND m.digest = e.child_digest)
      ORDER BY 1, 2 LIMIT 1000`,
    [repo.namespaceId, repo.repositoryId],
  )
  return {
    resolved: Number(counts.rows[0].resolved),
    inserted: r.rowCount ?? 0,
    missing: missing.rows.map((row) => ({parentDigest: row.parent_digest, childDigest: row.child_digest})),
  }
}

export async function insertRepositoryBlobs(client: DbClient, repo: RepositoryRow, links: Array<{digest: string; createdAt: Date}>): Promise<number> {
  if (links.length === 0) return 0
  const sorted = [...links].sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0))
  const r = await run(client, 'repository_blobs_insert',
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
  const params = [repo.namespaceId, repo.repositoryId, sorted.map((t) => t.name), sorted.map((t) => t.digest), sorted.map((t) => t.createdAt)]
  const ins = await run(client, 'tags_insert',
    `INSERT INTO tags (top_level_namespace_id, repository_id, manifest_id, name, created_at)
     SELECT $1, $2, m.id, t.name, t.ca
       FROM unnest($3::text[], $4::text[], $5::timestamptz[]) WITH ORDINALITY AS t(name, digest, ca, n)
       JOIN manifests m ON m.top_level_namespace_id = $1 AND m.repository_id = $2 AND m.digest = t.digest
      ORDER BY t.n
     ON CONFLICT (top_level_namespace_id, repository_id, name) DO NOTHING`,
    params,
  )
  const upd = await run(client, 'tags_update',
    `UPDATE tags SET manifest_id = m.id, updated_at = now()
       FROM unnest($3::text[], $4::text[], $5::timestamptz[]) AS t(name, digest, ca)
       JOIN manifests m ON m.top_level_namespace_id = $1 AND m.repository_id = $2 AND m.digest = t.digest
      WHERE tags.top_level_namespace_id = $1 AND tags.repository_id = $2 AND tags.name = t.name AND tags.manifest_id <> m.id`,
    params,
  )
  const found = await run<{digest: string}>(client, 'tags_found',
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
  const tags = await run(client, 'prune_tags', `DELETE FROM tags WHERE top_level_namespace_id = $1 AND repository_id = $2 AND NOT (name = ANY($3::text[]))`, [
    repo.namespaceId,
    repo.repositoryId,
    tagNames,
  ])
  const gone = `SELECT m.id FROM manifests m WHERE m.top_level_namespace_id = $1 AND m.repository_id = $2
                  AND NOT EXISTS (SELECT 1 FROM regops_import_seen s WHERE s.kind = 'm' AND s.digest = m.digest)`
  // A child that is gone takes its edges with it (the child foreign key has no ON DELETE).
  await run(client, 'prune_references', `DELETE FROM manifest_references WHERE top_level_namespace_id = $1 AND repository_id = $2 AND child_id IN (${gone})`, [
    repo.namespaceId,
    repo.repositoryId,
  ])
  const manifests = await run(client, 'prune_manifests', `DELETE FROM manifests WHERE top_level_namespace_id = $1 AND repository_id = $2 AND id IN (${gone})`, [
    repo.namespaceId,
    repo.repositoryId,
  ])
  const blobs = await run(client, 'prune_repository_blobs',
    `DELETE FROM repository_blobs rb WHERE rb.top_level_namespace_id = $1 AND rb.repository_id = $2
        AND NOT EXISTS (SELECT 1 FROM regops_import_seen s WHERE s.kind = 'b' AND s.digest = rb.blob_digest)`,
    [repo.namespaceId, repo.repositoryId],
  )
  return {manifests: manifests.rowCount ?? 0, tags: tags.rowCount ?? 0, repositoryBlobs: blobs.rowCount ?? 0}
}
