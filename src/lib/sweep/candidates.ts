import type {Db} from '../metadata/db.js'
import type {SweepCandidate} from './types.js'

/**
 * The candidate table of an acting sweep (`regops_sweep_candidates`): the plan writes it, the act phase
 * reads it in batches and moves each row from pending to done, failed or skipped. A resumed job goes on
 * from what is still pending.
 */

export interface CandidateRow {
  kind: 'blob' | 'manifest'
  digest: string
  repository: string | null
  key: string
  size: string
  last_modified: Date
}

/** Rows per INSERT: keeps each statement's parameters a few hundred kilobytes. */
const INSERT_BATCH = 1000

export async function insertCandidates(db: Db, jobId: string, candidates: SweepCandidate[]): Promise<void> {
  for (let i = 0; i < candidates.length; i += INSERT_BATCH) {
    const batch = candidates.slice(i, i + INSERT_BATCH)
    await db.query(
      `INSERT INTO regops_sweep_candidates (job_id, kind, digest, repository, key, size, last_modified)
       SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::timestamptz[])
       ON CONFLICT DO NOTHING`,
      [
        jobId,
        batch.map((c) => c.kind),
        batch.map((c) => c.digest),
        batch.map((c) => c.repository ?? null),
        batch.map((c) => c.key),
        batch.map((c) => c.size),
        batch.map((c) => c.lastModified),
      ],
    )
  }
}

/**
 * Before a (resumed) plan: drops the pending candidates it is about to find again, that is every
 * manifest and the blobs of prefixes not yet planned. Those of planned prefixes stay.
 */
export async function dropUnplannedCandidates(db: Db, jobId: string, plannedPrefixes: string[]): Promise<void> {
  await db.query(
    `DELETE FROM regops_sweep_candidates WHERE job_id = $1 AND state = 'pending'
       AND (kind = 'manifest' OR NOT (substring(digest from 8 for 2) = ANY($2::text[])))`,
    [jobId, plannedPrefixes],
  )
}

/**
 * A resumed job tries its failed candidates again: they go back to pending, so each passes the re-check
 * and gets a new intent (a failure is partial, exit 3, and the operator was told to resume).
 */
export async function retryFailedCandidates(db: Db, jobId: string): Promise<void> {
  await db.query(`UPDATE regops_sweep_candidates SET state = 'pending' WHERE job_id = $1 AND state = 'failed'`, [jobId])
}

/** The next pending candidates of a kind, in digest order. */
export async function pendingCandidates(
  db: Db,
  jobId: string,
  kind: 'blob' | 'manifest',
  limit: number,
): Promise<CandidateRow[]> {
  const result = await db.query<CandidateRow>(
    `SELECT kind, digest, repository, key, size, last_modified FROM regops_sweep_candidates
     WHERE job_id = $1 AND kind = $2 AND state = 'pending' ORDER BY digest, key LIMIT $3`,
    [jobId, kind, limit],
  )
  return result.rows
}

/** A candidate the re-check kept, with the reason ('gone', 'changed', 'referenced again'). */
export async function skipCandidate(db: Db, jobId: string, row: CandidateRow, reason: string): Promise<void> {
  await db.query(
    `UPDATE regops_sweep_candidates SET state = 'skipped', note = $4 WHERE job_id = $1 AND kind = $2 AND key = $3`,
    [jobId, row.kind, row.key, reason],
  )
}

/** Keeps the pending blobs among `digests`: a manifest kept at the last moment keeps what it references. */
export async function skipBlobsReferencedByKept(db: Db, jobId: string, digests: string[]): Promise<void> {
  await db.query(
    `UPDATE regops_sweep_candidates SET state = 'skipped', note = 'referenced by a kept manifest'
     WHERE job_id = $1 AND kind = 'blob' AND state = 'pending' AND digest = ANY($2::text[])`,
    [jobId, digests],
  )
}

/** How many candidates of the whole job the re-check skipped, by reason: a resumed job reports them all. */
export async function skippedCounts(
  db: Db,
  jobId: string,
): Promise<{referencedAgain: number; changed: number; gone: number}> {
  const result = await db.query<{note: string | null; n: number}>(
    `SELECT note, count(*)::int AS n FROM regops_sweep_candidates WHERE job_id = $1 AND state = 'skipped' GROUP BY note`,
    [jobId],
  )
  const counts = {referencedAgain: 0, changed: 0, gone: 0}
  for (const row of result.rows) {
    if (row.note === 'gone') counts.gone += row.n
    else if (row.note === 'changed') counts.changed += row.n
    else counts.referencedAgain += row.n
  }
  return counts
}
