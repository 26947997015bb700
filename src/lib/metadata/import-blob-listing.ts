import type {Db} from './db.js'
import {listInPages, type StorageDriver} from '../storage/driver.js'
import {ALL_SHARDS, blobAlgorithmPrefix, parseKey} from '../storage/layout.js'

/** What storage said of a blob: size and time. */
export interface ListedBlob {
  size: number
  lastModified: Date
}

/** Listings in parallel, each over a contiguous run of digest prefixes (a LIST crosses prefixes). */
const LISTING_RANGES = 8

/**
 * Lists blobs/ into the job's rows of regops_import_listed_blobs (those of an earlier run first
 * deleted: a resumed job lists afresh). Each page of the listing is one INSERT. Keys that are not a
 * blob's data are left out: a digest the listing lacks is stat'ed on its own when a manifest names it.
 * Returns the number of blobs listed.
 */
export async function listBlobsForImport(
  db: Db,
  driver: StorageDriver,
  jobId: string,
  signal: AbortSignal,
): Promise<number> {
  await db.query('DELETE FROM regops_import_listed_blobs WHERE job_id = $1', [jobId])
  const prefix = blobAlgorithmPrefix()
  const ranges = Array.from({length: LISTING_RANGES}, (_, r) =>
    ALL_SHARDS.slice((r * ALL_SHARDS.length) / LISTING_RANGES, ((r + 1) * ALL_SHARDS.length) / LISTING_RANGES),
  )
  // Every range ends before this returns, failed or not: none is left writing rows behind it.
  const settled = await Promise.allSettled(
    ranges.map(async (range) => {
      let listed = 0
      const last = range.at(-1)!
      for await (const page of listInPages(driver, prefix, {startAfter: `${prefix}${range[0]}`, signal})) {
        const digests: string[] = []
        const sizes: number[] = []
        const times: Date[] = []
        let past = false
        for (const object of page) {
          if (object.key.slice(prefix.length, prefix.length + 2) > last) {
            past = true
            break
          }
          let spec
          try {
            spec = parseKey(object.key)
          } catch {
            continue
          }
          if (spec.kind !== 'blob-data') continue
          digests.push(spec.digest)
          sizes.push(object.size)
          times.push(object.lastModified)
        }
        if (digests.length > 0) {
          await db.query(
            `INSERT INTO regops_import_listed_blobs (job_id, digest, size, last_modified)
             SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::timestamptz[])
             ON CONFLICT DO NOTHING`,
            [jobId, digests, sizes, times],
          )
          listed += digests.length
        }
        if (past) break
      }
      return listed
    }),
  )
  let listed = 0
  for (const range of settled) {
    if (range.status === 'rejected') throw range.reason
    listed += range.value
  }
  return listed
}

/** The listed blobs among `digests`. */
export async function listedBlobs(db: Db, jobId: string, digests: string[]): Promise<Map<string, ListedBlob>> {
  const found = new Map<string, ListedBlob>()
  if (digests.length === 0) return found
  const result = await db.query<{digest: string; size: string; last_modified: Date}>(
    `SELECT l.digest, l.size, l.last_modified
       FROM unnest($2::text[]) AS d(digest)
       JOIN regops_import_listed_blobs l ON l.job_id = $1 AND l.digest = d.digest`,
    [jobId, digests],
  )
  for (const row of result.rows) found.set(row.digest, {size: Number(row.size), lastModified: row.last_modified})
  return found
}

/** A finished job's listing is of no further use. */
export async function dropBlobListing(db: Db, jobId: string): Promise<void> {
  await db.query('DELETE FROM regops_import_listed_blobs WHERE job_id = $1', [jobId])
}
