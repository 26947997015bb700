import type {Db} from '../metadata/db.js'

/** The digest range of one two-hex shard, as bounds for a C-collated text comparison. */
export function shardRange(shard: string): [string, string] {
  const next = parseInt(shard, 16) + 1
  return [`sha256:${shard}`, next === 256 ? 'sha256:g' : `sha256:${next.toString(16).padStart(2, '0')}`]
}

/**
 * Every digest the metadata database says is referenced, within one shard, sorted in storage byte
 * order (the digest columns are COLLATE "C"): manifests themselves, their configuration blobs, their
 * layers, and the subjects their referrers name. Index children are manifests, so they are in the first set.
 */
export async function referencedDigestsFromDb(db: Db, shard: string): Promise<string[]> {
  const [low, high] = shardRange(shard)
  const result = await db.query<{digest: string}>(
    `SELECT digest FROM manifests WHERE digest >= $1 AND digest < $2
     UNION SELECT configuration_blob_digest FROM manifests WHERE configuration_blob_digest >= $1 AND configuration_blob_digest < $2
     UNION SELECT digest FROM layers WHERE digest >= $1 AND digest < $2
     UNION SELECT subject_digest FROM manifests WHERE subject_digest >= $1 AND subject_digest < $2
     ORDER BY 1`,
    [low, high],
  )
  return result.rows.map((row) => row.digest)
}

/** Which of `digests` the metadata database references now (the re-check just before acting). */
export async function referencedAmong(db: Db, digests: string[]): Promise<Set<string>> {
  if (digests.length === 0) return new Set()
  const result = await db.query<{digest: string}>(
    `SELECT digest FROM manifests WHERE digest = ANY($1::text[])
     UNION SELECT configuration_blob_digest FROM manifests WHERE configuration_blob_digest = ANY($1::text[])
     UNION SELECT digest FROM layers WHERE digest = ANY($1::text[])
     UNION SELECT subject_digest FROM manifests WHERE subject_digest = ANY($1::text[])`,
    [digests],
  )
  return new Set(result.rows.map((row) => row.digest))
}
