import type {Db} from '../metadata/db.js'
import {errorMessage} from '../errors.js'
import type {Logger} from '../output/logger.js'
import type {StorageDriver} from '../storage/driver.js'
import {markFromStorage} from './mark-storage.js'
import {referencedAmong} from './references.js'
import {requireCompleteImport, rereadUnreadableRevisions} from './mark-metadata.js'
import {CLOCK_SKEW_MS} from './types.js'
import {journalIntents, journalOutcome, type JournalAction} from './journal.js'
import type {Problem} from '../storage/repositories.js'
import {deleteObjects, moveBack} from './vacuum.js'
import {acquireJobLock, regionLockScope} from '../jobs/lock.js'

/**
 * Runs fn holding the region's act lock: no sweep, purge or restore acts on the region meanwhile. So an
 * intent of a purge, restore or rescue still open when the lock is taken is one a killed run left.
 */
async function holdingRegion<T>(db: Db, driver: StorageDriver, fn: () => Promise<T>): Promise<T> {
  const lock = await acquireJobLock(db, regionLockScope(driver.region))
  try {
    await closeInterruptedIntents(db, driver)
    return await fn()
  } finally {
    await lock.release()
  }
}

/**
 * Gives each purge, restore or rescue intent a killed run left open its outcome, from what storage shows:
 * done when its effect is there (the quarantine copy gone, and for a move the blob in place), otherwise
 * failed, and the entry is acted on again under a fresh intent. Left open, the re-run would journal a
 * second intent for the same entry and the first would stay open for ever (a SIGKILLed purge did that).
 */
async function closeInterruptedIntents(db: Db, driver: StorageDriver): Promise<void> {
  const open = await db.query<{id: string; action: string; key: string; quarantine_key: string | null}>(
    `SELECT i.id, i.action, i.key, i.detail->>'quarantineKey' AS quarantine_key FROM regops_journal i
     WHERE i.job_id IS NULL AND i.phase = 'intent' AND i.region = $1 AND i.action IN ('restore', 'rescue', 'purge')
       AND NOT EXISTS (SELECT 1 FROM regops_journal o WHERE o.intent_id = i.id)
     ORDER BY i.id`,
    [driver.region],
  )
  for (const intent of open.rows) {
    const copyGone = intent.quarantine_key !== null && (await driver.stat(intent.quarantine_key)) === undefined
    const inPlace = intent.action === 'purge' || (await driver.stat(intent.key)) !== undefined
    if (copyGone && inPlace) await journalOutcome(db, null, String(intent.id), 'done', {recovered: true})
    else
      await journalOutcome(db, null, String(intent.id), 'failed', {
        recovered: true,
        error: 'interrupted before its outcome was journaled; acted on again',
      })
  }
}

export interface QuarantineEntry {
  /** journal id of the quarantine's outcome row */
  entry: string
  jobId: string | null
  digest: string
  key: string
  quarantineKey: string
  size: number
  quarantinedAt: string
}

/** Blobs quarantined in a region and neither restored, rescued nor purged since. */
export async function quarantinedEntries(
  db: Db,
  region: string,
  filter: {jobId?: string; digest?: string; olderThan?: Date} = {},
): Promise<QuarantineEntry[]> {
  const result = await db.query(
    `SELECT o.id AS entry, o.job_id, i.digest, i.key, i.detail->>'quarantineKey' AS quarantine_key, i.size, o.at
     FROM regops_journal o JOIN regops_journal i ON i.id = o.intent_id
     WHERE o.action = 'quarantine' AND o.phase = 'done' AND i.region = $1
       AND ($2::bigint IS NULL OR o.job_id = $2) AND ($3::text IS NULL OR i.digest = $3)
       AND ($4::timestamptz IS NULL OR o.at < $4)
       AND NOT EXISTS (
         SELECT 1 FROM regops_journal r
         WHERE r.action IN ('restore', 'rescue', 'purge') AND r.phase = 'done' AND r.detail->>'quarantineEntry' = o.id::text)
     ORDER BY i.digest, o.id`,
    [region, filter.jobId ?? null, filter.digest ?? null, filter.olderThan ?? null],
  )
  return result.rows.map((row) => ({
    entry: String(row.entry),
    jobId: row.job_id === null ? null : String(row.job_id),
    digest: row.digest,
    key: row.key,
    quarantineKey: row.quarantine_key,
    size: Number(row.size ?? 0),
    quarantinedAt: (row.at as Date).toISOString(),
  }))
}

export interface QuarantineOpResult {
  kind: 'sweep-restore' | 'sweep-purge'
  region: string
  dryRun: boolean
  entries: number
  restored: number
  rescued: number
  purged: number
  bytes: number
  failed: Array<{digest: string; key: string; message: string}>
  items: Array<{
    digest: string
    action: 'restore' | 'rescue' | 'purge' | 'keep'
    key: string
    quarantineKey: string
    size: number
  }>
  problems: Problem[]
}

/** Journals the intent, runs the move or delete, journals its outcome; false (and noted in the result) if it failed. */
async function journaled(
  db: Db,
  driver: StorageDriver,
  action: JournalAction,
  entry: QuarantineEntry,
  fn: () => Promise<void>,
  result: QuarantineOpResult,
): Promise<boolean> {
  const [intent] = await journalIntents(db, null, [
    {
      action,
      region: driver.region,
      key: entry.key,
      digest: entry.digest,
      size: entry.size,
      detail: {quarantineEntry: entry.entry, quarantineKey: entry.quarantineKey},
    },
  ])
  try {
    await fn()
    await journalOutcome(db, null, intent, 'done', {})
    return true
  } catch (error) {
    result.failed.push({digest: entry.digest, key: entry.key, message: errorMessage(error)})
    await journalOutcome(db, null, intent, 'failed', {error: errorMessage(error)})
    return false
  }
}

interface RestoreOptions {
  db: Db
  driver: StorageDriver
  jobId?: string
  digest?: string
  dryRun?: boolean
  logger: Logger
}

/** `sweep restore`: every quarantined blob of a job, or one digest, back where it was. */
export function restoreQuarantine(opts: RestoreOptions): Promise<QuarantineOpResult> {
  return opts.dryRun ? restore(opts) : holdingRegion(opts.db, opts.driver, () => restore(opts))
}

async function restore(opts: RestoreOptions): Promise<QuarantineOpResult> {
  const entries = await quarantinedEntries(opts.db, opts.driver.region, {jobId: opts.jobId, digest: opts.digest})
  const result: QuarantineOpResult = {
    kind: 'sweep-restore',
    region: opts.driver.region,
    dryRun: Boolean(opts.dryRun),
    entries: entries.length,
    restored: 0,
    rescued: 0,
    purged: 0,
    bytes: 0,
    failed: [],
    items: [],
    problems: [],
  }
  for (const entry of entries) {
    result.items.push({
      digest: entry.digest,
      action: 'restore',
      key: entry.key,
      quarantineKey: entry.quarantineKey,
      size: entry.size,
    })
    if (opts.dryRun) continue
    if (await journaled(opts.db, opts.driver, 'restore', entry, () => moveBack(opts.driver, entry), result)) {
      result.restored++
      result.bytes += entry.size
    }
  }
  return result
}

interface PurgeOptions {
  db: Db
  driver: StorageDriver
  holdForMs: number
  strategy: 'storage' | 'metadata'
  dryRun: boolean
  concurrency?: number
  jobId?: string
  logger: Logger
  now?: Date
}

/**
 * `sweep purge`: deletes quarantined blobs whose hold time has passed, after a fresh check that
 * nothing references them; a blob referenced again is rescued (moved back) instead. Acting holds the
 * region's lock, so no sweep quarantines or restores beside it.
 */
export function purgeQuarantine(opts: PurgeOptions): Promise<QuarantineOpResult> {
  return opts.dryRun ? purge(opts) : holdingRegion(opts.db, opts.driver, () => purge(opts))
}

async function purge(opts: PurgeOptions): Promise<QuarantineOpResult> {
  const now = opts.now ?? new Date()
  const entries = await quarantinedEntries(opts.db, opts.driver.region, {
    jobId: opts.jobId,
    olderThan: new Date(now.getTime() - opts.holdForMs),
  })
  const result: QuarantineOpResult = {
    kind: 'sweep-purge',
    region: opts.driver.region,
    dryRun: opts.dryRun,
    entries: entries.length,
    restored: 0,
    rescued: 0,
    purged: 0,
    bytes: 0,
    failed: [],
    items: [],
    problems: [],
  }
  if (entries.length === 0) return result
  const wanted = new Set(entries.map((e) => e.digest))
  const referenced = new Set<string>()
  const mark = (digest: string) => {
    if (wanted.has(digest)) referenced.add(digest)
  }
  let incomplete = false
  const onProblem = (problem: Problem) => {
    incomplete = true
    result.problems.push(problem)
  }
  const concurrency = opts.concurrency ?? 32
  // A cutoff a day ahead: no link counts as young, so links alone protect nothing here (a blob re-pushed
  // while in quarantine is in place again, and moveBack keeps that copy); references do. The database's
  // repository_blobs rows follow the same rule as the storage walk's _layers links.
  const linkCutoff = new Date(now.getTime() + 86_400_000)
  // The metadata strategy trusts the database only as far as the last complete import of this region
  // reached: what storage gained since is walked, as the sweep does.
  const since = opts.strategy === 'metadata' ? await requireCompleteImport(opts.db, opts.driver.region) : undefined
  if (opts.strategy === 'metadata') {
    for (const digest of await referencedAmong(opts.db, [...wanted], {linkedSince: linkCutoff})) referenced.add(digest)
    await rereadUnreadableRevisions(opts.db, opts.driver, {concurrency, mark, onProblem})
  }
  await markFromStorage(opts.driver, {
    cutoff: linkCutoff,
    since: since ? new Date(Math.min(since.getTime(), now.getTime()) - CLOCK_SKEW_MS) : undefined,
    concurrency,
    mark,
    onProblem,
  })
  for (const entry of entries) {
    const rescue = referenced.has(entry.digest)
    // An incomplete mark means a reference may have been missed: leave it in quarantine, purge nothing.
    const action = rescue ? 'rescue' : incomplete ? 'keep' : 'purge'
    result.items.push({
      digest: entry.digest,
      action,
      key: entry.key,
      quarantineKey: entry.quarantineKey,
      size: entry.size,
    })
    if (opts.dryRun || action === 'keep') continue
    if (rescue) {
      if (await journaled(opts.db, opts.driver, 'rescue', entry, () => moveBack(opts.driver, entry), result))
        result.rescued++
    } else {
      if (
        await journaled(
          opts.db,
          opts.driver,
          'purge',
          entry,
          () => deleteObjects(opts.driver, [entry.quarantineKey]),
          result,
        )
      ) {
        result.purged++
        result.bytes += entry.size
      }
    }
  }
  return result
}
