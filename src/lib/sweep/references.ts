import type {Db} from '../metadata/db.js'

/** The digest range of one two-hex shard, as bounds for a C-collated text comparison. */
export function shardRange(shard: string): [string, string] {
  const next = parseInt(shard, 16) + 1
  return [`sha256:${shard}`, next === 256 ? 'sha256:g' : `sha256:${next.toString(16).padStart(2, '0')}`]
}

export interface ReferenceQueryOptions {
  /** a repository_blobs row (a _layers link) created at or after this instant protects its blob, as a young link does in the storage strategy */
  linkedSince: Date
}

/**
 * Every way the metadata database says a digest is wanted, as one SQL body over `$cond`: the manifests
 * themselves, their configuration blobs, layers and subjects (the storage walk marks a referrer's subject
 * too), index children by digest whether or not the child is a manifest of the repository (the registry's
 * GC marks them so), the revisions the import could not read (their own digest; what they reference is
 * unknown and the plan refuses to act on that), and blobs linked into a repository since `linkedSince`.
 */
function referencesQuery(cond: (column: string) => string, linkedSince: string): string {
  return `SELECT digest FROM manifests WHERE ${cond('digest')}
     UNION SELECT configuration_blob_digest FROM manifests WHERE ${cond('configuration_blob_digest')}
     UNION SELECT digest FROM layers WHERE ${cond('digest')}
     UNION SELECT subject_digest FROM manifests WHERE ${cond('subject_digest')}
     UNION SELECT child_digest FROM dangling_manifest_references WHERE ${cond('child_digest')}
     UNION SELECT digest FROM unreadable_revisions WHERE ${cond('digest')}
     UNION SELECT blob_digest FROM repository_blobs WHERE ${cond('blob_digest')} AND created_at >= ${linkedSince}`
}

/**
 * Every digest the metadata database says is referenced, within one shard, sorted in storage byte
 * order (the digest columns are COLLATE "C"), for the merge with the shard's blob listing.
 */
export async function referencedDigestsFromDb(db: Db, shard: string, opts: ReferenceQueryOptions): Promise<string[]> {
  const [low, high] = shardRange(shard)
  const result = await db.query<{digest: string}>(
    `${referencesQuery((column) => `${column} >= $1 AND ${column} < $2`, '$3')} ORDER BY 1`,
    [low, high, opts.linkedSince],
  )
  return result.rows.map((row) => row.digest)
}

/** Which of `digests` the metadata database references now (the re-check just before acting). */
export async function referencedAmong(db: Db, digests: string[], opts: ReferenceQueryOptions): Promise<Set<string>> {
  if (digests.length === 0) return new Set()
  const result = await db.query<{digest: string}>(
    referencesQuery((column) => `${column} = ANY($1::text[])`, '$2'),
    [digests, opts.linkedSince],
  )
  return new Set(result.rows.map((row) => row.digest))
}
