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
import {listedBlobs} from './import-blob-listing.js'
import type {Db, DbClient, QueryResult, QueryResultRow} from './db.js'
import type {StorageDriver} from '../storage/driver.js'
import {pathFor} from '../storage/layout.js'

/** media_types.media_type is 1..255 characters; anything else is recorded as this. */
export const FALLBACK_MEDIA_TYPE = 'application/octet-stream'

export type Queryable = Pick<DbClient, 'query'>

/**
 * Runs one of the import's statements as a named prepared statement: planned once per connection
 * instead of once per call (planning over 64 hash partitions costs more than running these).
 */
export async function run<R extends QueryResultRow = QueryResultRow>(
  on: Db | Queryable,
  name: string,
  text: string,
  values: unknown[],
): Promise<QueryResult<R>> {
  const config = {name: `regops_import_${name}`, text, values}
  if ('withClient' in on) return on.withClient((client) => client.query<R>(config))
  return on.query<R>(config)
}

/**
 * Runs, inside a transaction, an INSERT whose rows each fire foreign-key checks into hash-partitioned
 * tables (manifests), with generic plans for those checks. By default PostgreSQL plans every
 * such check anew: the custom plan of one partition always looks cheaper than a generic plan over 64,
 * so it never settles on the generic one. Forced, 27,000 layer rows took 7.2 and 7.8 s instead of 10.7
 * and 12.1 s (64 partitions, a loaded machine). Only for statements that read no partitioned table
 * themselves: a generic plan of such a read could not prune partitions when planned. (References to
 * blobs are checked once per statement since migration 0008, by triggers whose dynamic SQL is planned
 * on each run, which this setting does not touch.)
 */
export async function runInsertWithGenericChecks<R extends QueryResultRow = QueryResultRow>(
  client: Queryable,
  name: string,
  text: string,
  values: unknown[],
): Promise<QueryResult<R>> {
  await client.query('SET LOCAL plan_cache_mode = force_generic_plan')
  const result = await run<R>(client, name, text, values)
  // After a failure the transaction is aborted and rolls the setting back with it.
  await client.query('SET LOCAL plan_cache_mode TO DEFAULT')
  return result
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
    const r = await this.db.query<{id: number; media_type: string}>(
      'SELECT id, media_type FROM media_types WHERE media_type = ANY($1::text[])',
      [missing],
    )
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
export async function ensureRepository(
  db: Db,
  name: string,
  namespaceCache: Map<string, string>,
): Promise<RepositoryRow & {createdNamespace: boolean}> {
  const namespace = name.split('/')[0]
  let namespaceId = namespaceCache.get(namespace)
  let createdNamespace = false
  if (namespaceId === undefined) {
    // Two statements, not INSERT … RETURNING UNION SELECT: after waiting for a concurrent insert of
    // the same name, only a new statement's snapshot sees that row.
    const ins = await run(
      db,
      'namespace_insert',
      'INSERT INTO top_level_namespaces (name) VALUES ($1) ON CONFLICT (name) DO NOTHING',
      [namespace],
    )
    createdNamespace = (ins.rowCount ?? 0) > 0
    const r = await run<{id: string}>(db, 'namespace_id', 'SELECT id FROM top_level_namespaces WHERE name = $1', [
      namespace,
    ])
    namespaceId = String(r.rows[0].id)
    if (namespaceCache.size > 10_000) namespaceCache.clear()
    namespaceCache.set(namespace, namespaceId)
  }
  const ins = await run<{id: string}>(
    db,
    'repository_insert',
    'INSERT INTO repositories (top_level_namespace_id, path) VALUES ($1, $2) ON CONFLICT (path) DO NOTHING RETURNING id',
    [namespaceId, name],
  )
  if (ins.rows.length > 0) return {namespaceId, repositoryId: String(ins.rows[0].id), existed: false, createdNamespace}
  const r = await run<{id: string; top_level_namespace_id: string}>(
    db,
    'repository_id',
    'SELECT id, top_level_namespace_id FROM repositories WHERE path = $1',
    [name],
  )
  return {
    namespaceId: String(r.rows[0].top_level_namespace_id),
    repositoryId: String(r.rows[0].id),
    existed: true,
    createdNamespace,
  }
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
export async function ensureBlobs(
  db: Db,
  driver: StorageDriver,
  wants: Map<string, BlobWant>,
  concurrency: number,
  /** the import job whose blob listing answers before a stat does */
  listingJobId?: string,
): Promise<Map<string, BlobKnown>> {
  const known = new Map<string, BlobKnown>()
  if (wants.size === 0) return known
  const digests = [...wants.keys()]
  // A probe per digest, not `digest = ANY($1)`: with thousands of digests the planner costs the whole
  // array against every hash partition (420 ms of planning per 5,000 digests over 64 partitions,
  // measured). Nor a plain join: costing each probe against all 64 partitions (it prunes them only when it
  // runs), the planner hash-joins the whole of blobs instead, once per batch, which makes an import
  // quadratic (3,700 digests against 1M blobs: 174-200 ms a batch, 45-48 ms probing). OFFSET 0 keeps the
  // LATERAL subquery a probe of one partition's index.
  const existing = await run<{digest: string; size: string; media_type_id: number | null}>(
    db,
    'blobs_existing',
    `SELECT b.digest, b.size, b.media_type_id FROM unnest($1::text[]) AS d(digest)
       CROSS JOIN LATERAL (SELECT b.digest, b.size, b.media_type_id FROM blobs b WHERE b.digest = d.digest OFFSET 0) b`,
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
  const unknown = digests.filter((digest) => !known.has(digest))
  // Listed: present as the listing saw it. Not listed: written since, or missing; storage says which.
  const listed = listingJobId ? await listedBlobs(db, listingJobId, unknown) : undefined
  const limit = pLimit(concurrency)
  await Promise.all(
    unknown.map((digest) =>
      limit(async () => {
        const want = wants.get(digest)!
        const info = listed?.get(digest) ?? (await driver.stat(pathFor({kind: 'blob-data', digest})))
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
  const result = await run<{digest: string}>(
    db,
    'blobs_insert',
    `INSERT INTO blobs (digest, size, media_type_id, created_at)
     SELECT t.d, t.s, t.m, coalesce(t.c, now())
       FROM unnest($1::text[], $2::bigint[], $3::smallint[], $4::timestamptz[]) WITH ORDINALITY AS t(d, s, m, c, n)
      ORDER BY t.n
     ON CONFLICT (digest) DO NOTHING
     RETURNING digest`,
    [
      fresh.map((r) => r.digest),
      fresh.map((r) => r.size),
      fresh.map((r) => r.mediaTypeId),
      fresh.map((r) => r.createdAt),
    ],
  )
  const inserted = new Set(result.rows.map((row) => row.digest))
  for (const digest of inserted) known.get(digest)!.inserted = true
  // One row per statement, in digest order: concurrent shards never wait on each other in a cycle.
  for (const r of rows) {
    if (inserted.has(r.digest) || r.mediaTypeId === null) continue
    await run(
      db,
      'blob_media_type',
      'UPDATE blobs SET media_type_id = $2 WHERE digest = $1 AND (media_type_id IS NULL OR media_type_id > $2)',
      [r.digest, r.mediaTypeId],
    )
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
  const ins = await runInsertWithGenericChecks<{id: string; digest: string}>(
    client,
    'manifests_insert',
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
    const r = await run<{id: string; digest: string}>(
      client,
      'manifest_ids',
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
  const r = await runInsertWithGenericChecks(
    client,
    'layers_insert',
    `INSERT INTO layers (top_level_namespace_id, repository_id, manifest_id, position, digest, size, media_type_id)
     SELECT $1, $2, t.m, t.p, t.d, t.s, t.mt
       FROM unnest($3::bigint[], $4::integer[], $5::text[], $6::bigint[], $7::smallint[]) AS t(m, p, d, s, mt)
      ORDER BY t.m, t.p
     ON CONFLICT (top_level_namespace_id, repository_id, manifest_id, position) DO NOTHING`,
    [
      repo.namespaceId,
      repo.repositoryId,
      rows.map((r) => r.manifestId),
      rows.map((r) => r.position),
      rows.map((r) => r.digest),
      rows.map((r) => r.size),
      rows.map((r) => r.mediaTypeId),
    ],
  )
  return r.rowCount ?? 0
}
