import type {Db} from '../metadata/db.js'
import {RefusedError, errorMessage} from '../errors.js'
import type {StorageDriver} from '../storage/driver.js'
import {pathFor, quarantineKey} from '../storage/layout.js'
import {listTags, problemOf, readRevision, type Problem} from '../storage/repositories.js'
import {markFromStorage} from './mark-storage.js'
import {referencedAmong} from './references.js'
import {journalIntents, journalOutcome, journaledOutcomes, unfinishedIntents, type IntentRow, type JournalAction} from './journal.js'
import {pendingCandidates, skipBlobsReferencedByKept, skipCandidate, skippedCounts, type CandidateRow} from './candidates.js'
import {deleteManifestLinks, deleteObjects, quarantineBlob} from './vacuum.js'
import {CLOCK_SKEW_MS, type ActingMode, type SweepBlobsResult, type SweepStrategy} from './types.js'

export interface ActContext {
  db: Db
  jobId: string
  driver: StorageDriver
  strategy: SweepStrategy
  metadataAuthoritative?: boolean
  mode: ActingMode
  quarantinePrefix: string
  cutoff: Date
  markStart: Date
  concurrency: number
  batchSize: number
  signal: AbortSignal
  result: SweepBlobsResult
  onProblem: (problem: Problem) => void
  onBatch: () => void
}

/**
 * The act phase: the job's pending candidates in batches, manifests first (a removed manifest frees its
 * blobs). Each batch is re-checked, its intents journaled, then acted on and each outcome journaled.
 * The counters are then taken from the journal, so a resumed job reports the whole job.
 */
export async function actOnCandidates(ctx: ActContext): Promise<void> {
  await recoverUnfinished(ctx)
  for (const kind of ['manifest', 'blob'] as const) {
    for (;;) {
      ctx.signal.throwIfAborted()
      const rows = await pendingCandidates(ctx.db, ctx.jobId, kind, ctx.batchSize)
      if (rows.length === 0) break
      const go = await recheckBatch(ctx, kind, rows)
      if (go.length > 0) await actOnBatch(ctx, kind, go)
      ctx.onBatch()
    }
  }
  ctx.result.acted = await journaledOutcomes(ctx.db, ctx.jobId)
  ctx.result.skipped = await skippedCounts(ctx.db, ctx.jobId)
}

/** Re-checks a batch just before acting; records the ones it keeps and returns the others. */
async function recheckBatch(ctx: ActContext, kind: 'blob' | 'manifest', rows: CandidateRow[]): Promise<CandidateRow[]> {
  const keep = kind === 'blob' ? await recheckReferences(ctx, rows.map((r) => r.digest)) : new Set<string>()
  // Blob re-checks are independent stats: in parallel (the driver caps requests in flight), not
  // one round trip after another. Manifest re-checks read tags and are rare: one at a time.
  const skips: Array<string | undefined> = []
  if (kind === 'blob') skips.push(...(await Promise.all(rows.map((row) => recheckBlob(ctx, row, keep)))))
  else for (const row of rows) skips.push(await recheckManifest(ctx, row))
  const go: CandidateRow[] = []
  for (const [i, row] of rows.entries()) {
    const skip = skips[i]
    if (!skip) {
      go.push(row)
      continue
    }
    await skipCandidate(ctx.db, ctx.jobId, row, skip)
    if (kind === 'manifest') await keepReferencesOf(ctx, row)
  }
  return go
}

function actionFor(mode: ActingMode, kind: 'blob' | 'manifest'): JournalAction {
  if (kind === 'manifest') return 'delete-manifest'
  return mode === 'quarantine' ? 'quarantine' : 'delete'
}

async function actOnBatch(ctx: ActContext, kind: 'blob' | 'manifest', go: CandidateRow[]): Promise<void> {
  const {db, jobId, driver} = ctx
  const action = actionFor(ctx.mode, kind)
  const intents = await journalIntents(
    db,
    jobId,
    go.map((row) => ({
      action,
      region: driver.region,
      key: row.key,
      digest: row.digest,
      size: Number(row.size),
      detail:
        action === 'quarantine' ? {quarantineKey: quarantineKey(ctx.quarantinePrefix, row.digest)} : row.repository ? {repository: row.repository} : {},
    })),
  )
  // Deletes go to storage as one batched request (S3 DeleteObjects takes 1,000 keys); each outcome is
  // still journaled per object.
  const deleted = action === 'delete' ? await driver.deleteMany(go.map((row) => row.key)) : undefined
  const deleteErrors = new Map((deleted?.errors ?? []).map((e) => [e.key, e.message]))
  await Promise.all(
    go.map(async (row, i) => {
      const act =
        action === 'delete-manifest'
          ? () => deleteManifestLinks(driver, row.repository!, row.digest, row.key)
          : action === 'quarantine'
            ? () => quarantineBlob(driver, row.key, quarantineKey(ctx.quarantinePrefix, row.digest))
            : async () => {
                const error = deleteErrors.get(row.key)
                if (error !== undefined) throw new Error(error)
              }
      if (await actAndRecord(ctx, row.kind, row.key, row.digest, intents[i], act)) count(ctx.result, action, Number(row.size))
    }),
  )
}

/** Counts as it goes, for progress; the summary is recounted from the journal at the end. */
function count(result: SweepBlobsResult, action: JournalAction, size: number): void {
  if (action === 'delete-manifest') result.acted.manifestsDeleted++
  else {
    if (action === 'quarantine') result.acted.quarantined++
    else result.acted.deleted++
    result.acted.bytes += size
  }
}

/** Marks found by re-walking what changed in storage since the mark, and (metadata) by re-querying. */
async function recheckReferences(ctx: ActContext, digests: string[]): Promise<Set<string>> {
  const keep = new Set<string>()
  if (ctx.strategy === 'metadata') for (const d of await referencedAmong(ctx.db, digests, {linkedSince: ctx.cutoff})) keep.add(d)
  if (ctx.strategy === 'storage' || !ctx.metadataAuthoritative) {
    const wanted = new Set(digests)
    await markFromStorage(ctx.driver, {
      cutoff: ctx.cutoff,
      // What may have appeared since the mark listed it. Never earlier than the cutoff: links older than
      // that were seen by the mark, and an operator who forced --min-age 0 gets what was before the start.
      since: new Date(Math.max(ctx.cutoff.getTime(), ctx.markStart.getTime() - CLOCK_SKEW_MS)),
      concurrency: ctx.concurrency,
      signal: ctx.signal,
      mark: (digest) => {
        if (wanted.has(digest)) keep.add(digest)
      },
      onProblem: (problem) => {
        // During the re-check an unreadable new manifest means its references are unknown: keep the whole batch.
        for (const d of digests) keep.add(d)
        ctx.onProblem(problem)
      },
    })
  }
  return keep
}

async function recheckBlob(ctx: ActContext, row: CandidateRow, keep: Set<string>): Promise<string | undefined> {
  if (keep.has(row.digest)) return 'referenced again'
  const info = await ctx.driver.stat(row.key)
  if (!info) return 'gone'
  if (info.size !== Number(row.size) || info.lastModified >= ctx.cutoff) return 'changed'
  return undefined
}

async function recheckManifest(ctx: ActContext, row: CandidateRow): Promise<string | undefined> {
  const repository = row.repository!
  const info = await ctx.driver.stat(row.key)
  if (!info) return 'gone'
  if (info.lastModified >= ctx.cutoff) return 'changed'
  const problems: Problem[] = []
  const tags = await listTags(ctx.driver, repository, (p) => problems.push(p))
  if (problems.length > 0 || tags.some((t) => t.digest === row.digest)) return 'referenced again'
  // Tagged indexes of the repository that (now) list it as a child keep it.
  for (const tag of tags) {
    if (!tag.digest) continue
    const link = {digest: tag.digest, key: pathFor({kind: 'manifest-revision-link', repository, digest: tag.digest}), lastModified: new Date()}
    const read = await readRevision(ctx.driver, repository, link, {verifyLink: false})
    if (read.manifest?.manifests.some((c) => c.digest === row.digest)) return 'referenced again'
  }
  return undefined
}

/** A manifest kept at the last moment keeps what it references too. */
async function keepReferencesOf(ctx: ActContext, row: CandidateRow): Promise<void> {
  const link = {digest: row.digest, key: row.key, lastModified: row.last_modified}
  const read = await readRevision(ctx.driver, row.repository!, link, {verifyLink: false})
  await skipBlobsReferencedByKept(ctx.db, ctx.jobId, [row.digest, ...(read.manifest?.references ?? [])])
  if (read.problems.length > 0) {
    throw new RefusedError(
      `manifest ${row.digest} in ${row.repository} was kept but cannot be read: its references are unknown; stopping before any blob is touched`,
    )
  }
}

/**
 * Runs one journaled action and records its outcome. A storage failure is that object's outcome
 * ('failed', the job goes on); a failure to record it (the database) stops the job.
 */
async function actAndRecord(
  ctx: ActContext,
  kind: 'blob' | 'manifest',
  key: string,
  digest: string | null,
  intentId: string,
  act: () => Promise<void>,
  detail: Record<string, unknown> = {},
): Promise<boolean> {
  let failure: unknown
  try {
    await act()
  } catch (error) {
    failure = error
  }
  if (failure === undefined) {
    await journalOutcome(ctx.db, ctx.jobId, intentId, 'done', detail, {kind, key, state: 'done'})
    return true
  }
  ctx.result.acted.failed++
  ctx.onProblem(problemOf(failure, 'storage-error', key, digest ? {digest} : {}))
  await journalOutcome(ctx.db, ctx.jobId, intentId, 'failed', {...detail, error: errorMessage(failure)}, {kind, key, state: 'failed'})
  return false
}

/** Finishes actions whose intent was journaled but whose outcome was not (the process died in between). */
async function recoverUnfinished(ctx: ActContext): Promise<void> {
  for (const intent of await unfinishedIntents(ctx.db, ctx.jobId)) {
    const kind = intent.action === 'delete-manifest' ? 'manifest' : 'blob'
    const done = await actAndRecord(ctx, kind, intent.key, intent.digest, intent.id, () => redo(ctx.driver, intent), {recovered: true})
    if (done) count(ctx.result, intent.action, intent.size ?? 0)
  }
}

function redo(driver: StorageDriver, intent: IntentRow): Promise<void> {
  if (intent.action === 'delete') return deleteObjects(driver, [intent.key])
  if (intent.action === 'quarantine') return quarantineBlob(driver, intent.key, String(intent.detail.quarantineKey))
  if (intent.action === 'delete-manifest') return deleteManifestLinks(driver, String(intent.detail.repository), intent.digest!, intent.key)
  return Promise.resolve()
}
