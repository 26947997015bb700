import type {Db} from '../metadata/db.js'

export type JournalAction =
  | 'delete'
  | 'quarantine'
  | 'restore'
  | 'purge'
  | 'rescue'
  | 'delete-manifest'
  | 'delete-upload'
  // repairs: a link written, a link removed (an undone link), a tag's current link rewritten, a repository re-imported
  | 'link'
  | 'unlink'
  | 'tag-move'
  | 'reimport'
  // audit --repair and replicate: a verified copy from another region
  | 'repair'
  | 'replicate'

export interface JournalEntry {
  action: JournalAction
  region: string
  key: string
  digest?: string
  size?: number
  detail?: Record<string, unknown>
}

export interface IntentRow {
  id: string
  action: JournalAction
  region: string
  key: string
  digest: string | null
  size: number | null
  detail: Record<string, unknown>
  at: Date
}

/** Writes the intents of a batch before any object is touched; returns their ids in order. */
export async function journalIntents(db: Db, jobId: string | null, entries: JournalEntry[]): Promise<string[]> {
  if (entries.length === 0) return []
  const result = await db.query<{id: string}>(
    `INSERT INTO regops_journal (job_id, action, phase, region, key, digest, size, detail)
     SELECT $1, a, 'intent', r, k, d, s, x
     FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::jsonb[]) WITH ORDINALITY AS t(a, r, k, d, s, x, n)
     ORDER BY n
     RETURNING id`,
    [
      jobId,
      entries.map((e) => e.action),
      entries.map((e) => e.region),
      entries.map((e) => e.key),
      entries.map((e) => e.digest ?? null),
      entries.map((e) => e.size ?? null),
      entries.map((e) => JSON.stringify(e.detail ?? {})),
    ],
  )
  // RETURNING follows insertion order, which follows ORDER BY n.
  return result.rows.map((row) => String(row.id))
}

export type OutcomePhase = 'done' | 'failed' | 'skipped'

/**
 * Records the outcome of one intent, and in the same transaction the sweep candidate's state, so a
 * crash leaves either both or neither: a resumed job never acts twice or journals twice. Idempotent
 * (an intent has one outcome), so a retry after a lost reply does not record it twice. Returns the
 * outcome's id. `skipped`: a recovered intent that its re-check kept, so nothing was done.
 */
export async function journalOutcome(
  db: Db,
  jobId: string | null,
  intentId: string,
  phase: OutcomePhase,
  detail: Record<string, unknown>,
  candidate?: {kind: 'blob' | 'manifest'; key: string; state: 'done' | 'failed' | 'skipped'; note?: string},
): Promise<string> {
  return db.transaction(async (client) => {
    const inserted = await client.query<{id: string}>(
      `INSERT INTO regops_journal (job_id, intent_id, action, phase, region, key, digest, size, detail)
       SELECT job_id, id, action, $2, region, key, digest, size, detail || $3::jsonb FROM regops_journal
        WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM regops_journal WHERE intent_id = $1)
       RETURNING id`,
      [intentId, phase, JSON.stringify(detail)],
    )
    const id =
      inserted.rows[0]?.id ??
      (await client.query<{id: string}>('SELECT id FROM regops_journal WHERE intent_id = $1', [intentId])).rows[0]?.id
    if (candidate && jobId) {
      await client.query(
        `UPDATE regops_sweep_candidates SET state = $4, note = coalesce($5, note) WHERE job_id = $1 AND kind = $2 AND key = $3`,
        [jobId, candidate.kind, candidate.key, candidate.state, candidate.note ?? null],
      )
    }
    return String(id)
  })
}

/** Intents of a job with no outcome: the process died between acting and recording. */
export async function unfinishedIntents(db: Db, jobId: string): Promise<IntentRow[]> {
  const result = await db.query(
    `SELECT i.id, i.action, i.region, i.key, i.digest, i.size, i.detail, i.at FROM regops_journal i
     WHERE i.job_id = $1 AND i.phase = 'intent'
       AND NOT EXISTS (SELECT 1 FROM regops_journal o WHERE o.intent_id = i.id)
     ORDER BY i.id`,
    [jobId],
  )
  return result.rows.map((row) => toJournalRow(row))
}

export interface JournalRow extends IntentRow {
  jobId: string | null
  intentId: string | null
  phase: 'intent' | OutcomePhase
}

/** Newest first unless asked otherwise: the limit must cut off the oldest changes, not the latest. */
export async function listJournal(
  db: Db,
  opts: {jobId?: string; digest?: string; limit?: number; oldestFirst?: boolean} = {},
): Promise<JournalRow[]> {
  const result = await db.query(
    `SELECT * FROM regops_journal WHERE ($1::bigint IS NULL OR job_id = $1) AND ($2::text IS NULL OR digest = $2)
     ORDER BY id ${opts.oldestFirst ? 'ASC' : 'DESC'} LIMIT $3`,
    [opts.jobId ?? null, opts.digest ?? null, opts.limit ?? 1000],
  )
  return result.rows.map((row) => toJournalRow(row))
}

function toJournalRow(row: Record<string, any>): JournalRow {
  return {
    id: String(row.id),
    jobId: row.job_id == null ? null : String(row.job_id),
    intentId: row.intent_id == null ? null : String(row.intent_id),
    phase: row.phase ?? 'intent',
    action: row.action,
    region: row.region,
    key: row.key,
    digest: row.digest,
    size: row.size === null ? null : Number(row.size),
    detail: row.detail ?? {},
    at: row.at,
  }
}

/**
 * What a job has done, counted from its journal: the outcomes of every run of the job, so a resumed
 * job's summary counts the whole job and not only its last run.
 */
export async function journaledOutcomes(
  db: Db,
  jobId: string,
): Promise<{deleted: number; quarantined: number; manifestsDeleted: number; bytes: number; failed: number}> {
  const result = await db.query<{action: JournalAction; phase: 'done' | 'failed'; n: number; bytes: string | null}>(
    // A failure that a later run of the job got past (the same action on the same key done or skipped) is not a failure of the job.
    `SELECT action, phase, count(*)::int AS n, sum(size) AS bytes FROM regops_journal o
     WHERE job_id = $1 AND phase IN ('done', 'failed')
       AND NOT (phase = 'failed' AND EXISTS (
         SELECT 1 FROM regops_journal later WHERE later.job_id = o.job_id AND later.action = o.action AND later.key = o.key
           AND later.phase IN ('done', 'skipped') AND later.id > o.id))
     GROUP BY action, phase`,
    [jobId],
  )
  const counts = {deleted: 0, quarantined: 0, manifestsDeleted: 0, bytes: 0, failed: 0}
  for (const row of result.rows) {
    if (row.phase === 'failed') counts.failed += row.n
    else if (row.action === 'delete-manifest') counts.manifestsDeleted += row.n
    else if (row.action === 'delete' || row.action === 'quarantine') {
      if (row.action === 'delete') counts.deleted += row.n
      else counts.quarantined += row.n
      counts.bytes += Number(row.bytes ?? 0)
    }
  }
  return counts
}
