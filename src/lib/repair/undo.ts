import {NotFoundError, RefusedError, UsageError} from '../errors.js'
import type {Db} from '../metadata/db.js'
import type {Logger} from '../output/logger.js'
import type {StorageDriver} from '../storage/driver.js'
import {parseLink, pathFor} from '../storage/layout.js'
import {listJournal, type JournalRow} from '../sweep/journal.js'
import {restoreQuarantine} from '../sweep/restore-purge.js'
import {journaledChange} from './journaled.js'
import {updateTagRow} from './repair-tag.js'

export interface UndoResult {
  kind: 'journal-undo'
  /** the intent undone (an outcome id given on the command line is resolved to its intent) */
  entry: string
  action: string
  region: string
  key: string
  applied: boolean
  /** what undoing does, in words */
  undo: string
  state: 'would-undo' | 'undone' | 'failed'
  /** the journal entry of the undo itself */
  undoEntry?: string
  error?: string
}

/** Why each irreversible action cannot be undone: said to the operator as the refusal. */
const IRREVERSIBLE: Record<string, string> = {
  delete: 'a deleted blob is gone; copy it back from another region or push the image again',
  purge: 'a purged quarantine copy is gone; copy the blob back from another region or push the image again',
  'delete-manifest': 'a deleted manifest revision is gone with its tag index entries; push the manifest again',
  'delete-upload': 'a deleted upload is gone; the client restarts the push',
  reimport:
    'a re-import replaces the repository rows without keeping the old ones; re-import again once storage is as wanted',
  unlink: 'this entry is itself an undo; repair links recreates the link',
  restore: 'this entry is itself an undo (or a sweep restore); sweep blobs --quarantine quarantines again',
  rescue: 'a rescued blob was referenced again; quarantining it would break an image',
}

/** The intent of an entry id (an intent id, or an outcome id), with its outcome. */
async function resolveEntry(db: Db, id: string): Promise<{intent: JournalRow; outcome?: JournalRow}> {
  const rows = await db.query(
    `SELECT i.id AS intent, o.id AS outcome FROM regops_journal e
       JOIN regops_journal i ON i.id = coalesce(e.intent_id, e.id)
       LEFT JOIN regops_journal o ON o.intent_id = i.id
      WHERE e.id = $1`,
    [id],
  )
  if (rows.rows.length === 0)
    throw new UsageError(`journal entry ${id} does not exist`, {hint: 'regops journal lists the entries'})
  const intentId = String(rows.rows[0].intent)
  const outcomeId = rows.rows[0].outcome == null ? undefined : String(rows.rows[0].outcome)
  const entries = await db.query('SELECT * FROM regops_journal WHERE id = ANY($1::bigint[])', [
    [intentId, outcomeId].filter(Boolean),
  ])
  const byId = new Map(entries.rows.map((row) => [String(row.id), row]))
  const toRow = (row: Record<string, any>): JournalRow => ({
    id: String(row.id),
    jobId: row.job_id == null ? null : String(row.job_id),
    intentId: row.intent_id == null ? null : String(row.intent_id),
    phase: row.phase,
    action: row.action,
    region: row.region,
    key: row.key,
    digest: row.digest,
    size: row.size == null ? null : Number(row.size),
    detail: row.detail ?? {},
    at: row.at,
  })
  return {intent: toRow(byId.get(intentId)!), ...(outcomeId ? {outcome: toRow(byId.get(outcomeId)!)} : {})}
}

/** Entries that undid this one (by their detail.undoes), done. */
async function undoneBy(db: Db, intentId: string): Promise<string | undefined> {
  const rows = await db.query(`SELECT id FROM regops_journal WHERE phase = 'done' AND detail->>'undoes' = $1 LIMIT 1`, [
    intentId,
  ])
  return rows.rows[0] ? String(rows.rows[0].id) : undefined
}

export interface UndoOptions {
  db: Db
  entryId: string
  /** opens the driver of the entry's region */
  region: (name: string) => Promise<StorageDriver>
  apply: boolean
  logger: Logger
}

/**
 * Reverses one journaled change that can be reversed: a created link (removed again), a tag move (the
 * tag points back where it was), a quarantine (the blob goes back). Refuses, saying why, what cannot be.
 */
export async function undoEntry(opts: UndoOptions): Promise<UndoResult> {
  const {db} = opts
  const {intent, outcome} = await resolveEntry(db, opts.entryId)
  const irreversible = IRREVERSIBLE[intent.action]
  if (irreversible)
    throw new RefusedError(
      `journal entry ${intent.id} (${intent.action} ${intent.key}) cannot be undone: ${irreversible}`,
    )
  if (outcome?.phase !== 'done') {
    throw new RefusedError(
      `journal entry ${intent.id} (${intent.action} ${intent.key}) did not complete (${outcome ? outcome.phase : 'no outcome recorded'}): there is nothing to undo`,
    )
  }
  const already = await undoneBy(db, intent.id)
  if (already) throw new RefusedError(`journal entry ${intent.id} was already undone by entry ${already}`)
  const driver = await opts.region(intent.region)
  const result: UndoResult = {
    kind: 'journal-undo',
    entry: intent.id,
    action: intent.action,
    region: intent.region,
    key: intent.key,
    applied: opts.apply,
    undo: '',
    state: 'would-undo',
  }
  switch (intent.action) {
    case 'link':
      return undoLink(db, driver, intent, result, opts.apply)
    case 'tag-move':
      return undoTagMove(db, driver, intent, result, opts.apply)
    case 'quarantine':
      return undoQuarantine(db, driver, intent, outcome, result, opts)
    default:
      throw new RefusedError(`journal entry ${intent.id}: regops does not know how to undo '${intent.action}'`)
  }
}

async function undoLink(
  db: Db,
  driver: StorageDriver,
  intent: JournalRow,
  result: UndoResult,
  apply: boolean,
): Promise<UndoResult> {
  result.undo = `remove the link ${intent.key} (to ${intent.digest})`
  // A link that was rewritten since (to something else) is not ours to remove.
  const current = await readLinkOrUndefined(driver, intent.key)
  if (current !== intent.digest) {
    throw new RefusedError(
      `the link ${intent.key} ${current ? `now names ${current}` : 'is already gone'}, not ${intent.digest}: it changed after entry ${intent.id}, so it is left alone`,
    )
  }
  if (!apply) return result
  const change = await journaledChange(
    db,
    {
      action: 'unlink',
      region: driver.region,
      key: intent.key,
      digest: intent.digest ?? undefined,
      detail: {...intent.detail, undoes: intent.id},
    },
    async () => {
      const deleted = await driver.deleteMany([intent.key])
      if (deleted.errors.length) throw new Error(deleted.errors.map((e) => e.message).join('; '))
    },
  )
  return finish(result, change)
}

async function undoTagMove(
  db: Db,
  driver: StorageDriver,
  intent: JournalRow,
  result: UndoResult,
  apply: boolean,
): Promise<UndoResult> {
  const {repository, tag, from, to} = intent.detail as {
    repository: string
    tag: string
    from: string | null
    to: string
  }
  if (!from)
    throw new RefusedError(
      `journal entry ${intent.id} created the tag ${repository}:${tag} (it had no current link before); remove the tag through the registry instead`,
    )
  result.undo = `point ${repository}:${tag} back at ${from} (from ${to})`
  const current = await readLinkOrUndefined(driver, intent.key)
  if (current !== to) {
    throw new RefusedError(
      `${repository}:${tag} ${current ? `now points at ${current}` : 'has no current link'}, not ${to}: it moved after entry ${intent.id}, so it is left alone`,
    )
  }
  if (!(await driver.stat(pathFor({kind: 'manifest-revision-link', repository, digest: from})))) {
    throw new RefusedError(
      `${repository}@${from} has no revision link any more: pointing the tag back would make it unresolvable`,
    )
  }
  if (!apply) return result
  const change = await journaledChange(
    db,
    {
      action: 'tag-move',
      region: driver.region,
      key: intent.key,
      digest: from,
      detail: {repository, tag, from: to, to: from, undoes: intent.id},
    },
    async () => {
      await driver.write(intent.key, Buffer.from(from))
      return {database: await updateTagRow(db, repository, tag, from)}
    },
  )
  return finish(result, change)
}

async function undoQuarantine(
  db: Db,
  driver: StorageDriver,
  intent: JournalRow,
  outcome: JournalRow | undefined,
  result: UndoResult,
  opts: UndoOptions,
): Promise<UndoResult> {
  result.undo = `move ${intent.digest} back from ${String(intent.detail.quarantineKey)} to ${intent.key}`
  // sweep restore of exactly this job and digest: the same lock, journal shape and byte-for-byte move as every restore.
  const restored = await restoreQuarantine({
    db,
    driver,
    jobId: intent.jobId ?? undefined,
    digest: intent.digest ?? undefined,
    dryRun: !opts.apply,
    logger: opts.logger,
  })
  if (restored.entries === 0)
    throw new RefusedError(`the quarantine of entry ${intent.id} was already restored, rescued or purged`)
  if (!opts.apply) return result
  const restoreEntry = (await listJournal(db, {digest: intent.digest ?? undefined, oldestFirst: true}))
    .filter((e) => e.action === 'restore' && e.detail.quarantineEntry === outcome?.id)
    .pop()
  if (restoreEntry) result.undoEntry = restoreEntry.intentId ?? restoreEntry.id
  if (restored.failed.length) {
    result.state = 'failed'
    result.error = restored.failed.map((f) => f.message).join('; ')
  } else result.state = 'undone'
  return result
}

function finish(result: UndoResult, change: {entry: string; ok: boolean; error?: string}): UndoResult {
  result.undoEntry = change.entry
  result.state = change.ok ? 'undone' : 'failed'
  if (change.error) result.error = change.error
  return result
}

async function readLinkOrUndefined(driver: StorageDriver, key: string): Promise<string | undefined> {
  try {
    return parseLink(await driver.readSmall(key, 1024), key)
  } catch (error) {
    if (error instanceof NotFoundError) return undefined
    throw error
  }
}
