import {errorMessage} from '../errors.js'
import type {StorageDriver} from '../storage/driver.js'
import {quarantineKey} from '../storage/layout.js'
import {problemOf} from '../storage/repositories.js'
import {journalIntents, journaledOutcomes, unfinishedIntents, type IntentRow, type JournalAction} from './journal.js'
import {
  pendingCandidates,
  retryFailedCandidates,
  skipCandidate,
  skippedCounts,
  type CandidateRow,
} from './candidates.js'
import {copyChecked, deleteManifestLinks, deleteObjects, moveBack, quarantineBlob} from './vacuum.js'
import type {ActingMode, SweepBlobsResult} from './types.js'
import {recordOutcome, storageNow, type ActContext, type ActedBatch, type ActState} from './act-state.js'
import {keepReferencesOf, postCheck, recheckRows} from './recheck.js'

/** Blobs acted on that may wait for a post-check together (about 15 MB of what undoing them needs). */
export const POST_CHECK_AFTER_BLOBS = 50_000

/**
 * The act phase: the job's pending candidates in batches, manifests first (a removed manifest frees its
 * blobs). Each batch is re-checked, its intents journaled, then acted on and each outcome journaled.
 * What was written after a batch's re-check began is walked once more (the next batch's re-check does
 * it, and one last walk after the last batch): a quarantined blob found referenced is moved back, a
 * deleted one is reported as a broken image. The counters are then taken from the journal, so a
 * resumed job reports the whole job.
 */
export async function actOnCandidates(ctx: ActContext): Promise<void> {
  const state: ActState = {windowsMs: [], unchecked: []}
  await recoverUnfinished(ctx, state)
  await retryFailedCandidates(ctx.db, ctx.jobId)
  for (const kind of ['manifest', 'blob'] as const) {
    for (;;) {
      ctx.signal.throwIfAborted()
      const rows = await pendingCandidates(ctx.db, ctx.jobId, kind, ctx.batchSize)
      if (rows.length === 0) break
      if (kind === 'blob' && ctx.mode === 'quarantine') await quarantineCopyFirst(ctx, state, rows)
      else {
        const recheckStart = storageNow(ctx)
        const go = await recheckBatch(ctx, state, kind, rows)
        const recheckEnd = performance.now()
        await ctx.hooks?.afterRecheck?.({kind, digests: go.map((row) => row.digest)})
        if (go.length > 0) {
          const intents = await journalBatchIntents(ctx, kind, go)
          const acted = await actOnBatch(ctx, kind, go, intents)
          if (kind === 'blob') noteActedBlobs(state, acted, recheckStart, recheckEnd)
        }
      }
      // Batches no re-check walks after them (a registry stated read-only, an authoritative database) wait
      // for one post-check together, but not the whole job's: memory would grow with every blob acted on.
      const waiting = state.unchecked.reduce((sum, batch) => sum + batch.acted.size, 0)
      if (waiting >= (ctx.postCheckAfterBlobs ?? POST_CHECK_AFTER_BLOBS)) await postCheck(ctx, state)
      ctx.onBatch()
    }
  }
  await postCheck(ctx, state)
  ctx.result.window = windowSummary(state.windowsMs)
  ctx.result.acted = await journaledOutcomes(ctx.db, ctx.jobId)
  ctx.result.skipped = await skippedCounts(ctx.db, ctx.jobId)
}

export function windowSummary(samples: number[]): SweepBlobsResult['window'] {
  if (samples.length === 0) return {batches: 0, p50Ms: 0, p99Ms: 0, maxMs: 0}
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)])
  return {batches: sorted.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: Math.round(sorted[sorted.length - 1])}
}

/**
 * A quarantine batch, copied before its re-check: intents, then every blob copied to its quarantine key
 * (the blob still in place), then the re-check, then one batched delete of the originals that passed it.
 * Copying after the re-check, as a delete has no copy to make, left each blob in place for its own copy's
 * time after the re-check had read the repositories: a push that mounted or HEADed it in that time was
 * missed by the re-check and then refused (the soak on S3: 5 of 73 such reuses). Now the window is the
 * batch's delete request. The intents come first so that no copy exists that the journal does not name: a
 * run killed after the copies is resumed like any unfinished intent, and a copy of a blob the re-check
 * keeps is removed (its outcome `skipped`).
 */
async function quarantineCopyFirst(ctx: ActContext, state: ActState, rows: CandidateRow[]): Promise<void> {
  const intents = await journalBatchIntents(ctx, 'blob', rows)
  const targets = rows.map((row) => jobQuarantineKey(ctx.quarantinePrefix, ctx.jobId, row.digest))
  const copied = await copyAhead(ctx, rows, targets)
  const recheckStart = storageNow(ctx)
  const skips = await recheckRows(ctx, state, 'blob', rows, false)
  const recheckEnd = performance.now()
  const go: CandidateRow[] = []
  const goIntents: string[] = []
  for (const [i, row] of rows.entries()) {
    const skip = skips[i]
    if (skip === undefined) {
      go.push(row)
      goIntents.push(intents[i])
    } else await keepQuarantined(ctx, row, targets[i], intents[i], skip, false)
  }
  await ctx.hooks?.afterRecheck?.({kind: 'blob', digests: go.map((row) => row.digest)})
  if (go.length === 0) return
  const acted = await actOnBatch(ctx, 'blob', go, goIntents, undefined, copied)
  noteActedBlobs(state, acted, recheckStart, recheckEnd)
}

/** A blob batch acted on: its window (re-check end to last action), and its wait for a post-check. */
function noteActedBlobs(
  state: ActState,
  acted: ActedBatch['acted'] & {actedAt?: number},
  recheckStart: Date,
  recheckEnd: number,
): void {
  state.windowsMs.push((acted.actedAt ?? performance.now()) - recheckEnd)
  if (acted.size > 0) state.unchecked.push({since: recheckStart, acted})
}

/**
 * Copies each blob to its quarantine key and checks the copy's size; returns the keys whose copy is
 * complete. A copy that fails is left to the action, which copies again (and reports what fails then).
 */
async function copyAhead(ctx: ActContext, rows: CandidateRow[], targets: string[]): Promise<Set<string>> {
  const copied = new Set<string>()
  // The driver caps the requests in flight. Settled: a stopped job returns once no copy is still running.
  await Promise.allSettled(
    rows.map(async (row, i) => {
      ctx.signal.throwIfAborted()
      if (await copyChecked(ctx.driver, row.key, targets[i], Number(row.size))) copied.add(row.key)
    }),
  )
  ctx.signal.throwIfAborted()
  return copied
}

/**
 * A quarantine intent the re-check keeps: the intent ends `skipped` and its copy is removed. The blob
 * itself is left as it is, unless a killed run (`recovered`) had already removed it: then the copy is
 * moved back. A copy that cannot be removed is reported and named in the outcome.
 */
async function keepQuarantined(
  ctx: ActContext,
  row: CandidateRow,
  quarantineKey: string,
  intentId: string,
  reason: string,
  recovered: boolean,
): Promise<void> {
  let failure: unknown
  try {
    const inPlace = !recovered || (await ctx.driver.stat(row.key)) !== undefined
    if (inPlace) await deleteObjects(ctx.driver, [quarantineKey])
    else if (await ctx.driver.stat(quarantineKey))
      await moveBack(ctx.driver, {key: row.key, quarantineKey, size: Number(row.size)})
  } catch (error) {
    failure = error
    ctx.onProblem(problemOf(error, 'storage-error', quarantineKey, {digest: row.digest}))
  }
  await recordOutcome(
    ctx,
    intentId,
    'skipped',
    {
      ...(recovered ? {recovered: true} : {}),
      reason,
      ...(failure === undefined ? {} : {copyLeft: quarantineKey, error: errorMessage(failure)}),
    },
    {kind: 'blob', key: row.key, state: 'skipped', note: reason},
  )
}

/** Re-checks a batch just before acting; records the ones it keeps and returns the others. */
async function recheckBatch(
  ctx: ActContext,
  state: ActState,
  kind: 'blob' | 'manifest',
  rows: CandidateRow[],
): Promise<CandidateRow[]> {
  const skips = await recheckRows(ctx, state, kind, rows, false)
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

/**
 * Where a job quarantines a blob: under its own job id, so that one job's purge never deletes another
 * job's copy of the same digest, and a resumed move never takes another job's copy for its own.
 */
export function jobQuarantineKey(quarantinePrefix: string, jobId: string, digest: string): string {
  return quarantineKey(`${quarantinePrefix.replace(/\/+$/, '')}/job-${jobId}`, digest)
}

async function journalBatchIntents(ctx: ActContext, kind: 'blob' | 'manifest', go: CandidateRow[]): Promise<string[]> {
  const action = actionFor(ctx.mode, kind)
  return journalIntents(
    ctx.db,
    ctx.jobId,
    go.map((row) => ({
      action,
      region: ctx.driver.region,
      key: row.key,
      digest: row.digest,
      size: Number(row.size),
      detail:
        action === 'quarantine'
          ? {quarantineKey: jobQuarantineKey(ctx.quarantinePrefix, ctx.jobId, row.digest)}
          : row.repository
            ? {repository: row.repository}
            : {},
    })),
  )
}

/** Evicts the registry's cached descriptors of these rows (manifests: in their repository too). */
function evict(ctx: ActContext, rows: CandidateRow[]): Promise<number> {
  const repositories = new Map(rows.filter((row) => row.repository).map((row) => [row.digest, [row.repository!]]))
  return ctx.registryCache.evict(
    rows.map((row) => row.digest),
    (digest) => repositories.get(digest) ?? [],
  )
}

/** Acts on a re-checked batch whose intents are journaled; returns the blobs it removed, for the post-check. */
async function actOnBatch(
  ctx: ActContext,
  kind: 'blob' | 'manifest',
  go: CandidateRow[],
  intents: string[],
  recovered?: {quarantineKeys: Map<string, string>},
  /** keys of blobs already copied to their quarantine key: only the originals are left to delete */
  copied?: Set<string>,
): Promise<ActedBatch['acted'] & {actedAt?: number}> {
  const detail = recovered ? {recovered: true} : {}
  const {driver} = ctx
  const action = actionFor(ctx.mode, kind)
  await ctx.hooks?.afterIntents?.({kind, digests: go.map((row) => row.digest)})
  // The registry's cache must not answer "exists" for what is about to go: before (so no push in
  // between trusts an old entry) and after (a lookup during the action may have cached it again).
  await evict(ctx, go)
  ctx.signal.throwIfAborted()
  // Deletes go to storage as one batched request (S3 DeleteObjects takes 1,000 keys); each outcome is
  // still journaled per object. So do the originals of blobs copied to quarantine ahead.
  const batchDeleted = action === 'delete' ? go : go.filter((row) => copied?.has(row.key))
  const deleteErrors =
    batchDeleted.length > 0
      ? await deleteBatch(
          driver,
          batchDeleted.map((row) => row.key),
        )
      : new Map<string, string>()
  const acted: ActedBatch['acted'] & {actedAt?: number} = new Map()
  acted.actedAt = performance.now()
  // Settled, not raced: when recording fails the job stops, but only after every object's own record
  // (and its retries) has ended, so nothing writes to the journal behind the job's back.
  const settled = await Promise.allSettled(
    go.map(async (row, i) => {
      // A recovered intent goes where its intent said (a job started before keys carried the job id).
      const target =
        action === 'quarantine'
          ? (recovered?.quarantineKeys.get(row.key) ?? jobQuarantineKey(ctx.quarantinePrefix, ctx.jobId, row.digest))
          : undefined
      const act =
        action === 'delete-manifest'
          ? () => deleteManifestLinks(driver, row.repository!, row.digest, row.key)
          : action === 'quarantine' && !copied?.has(row.key)
            ? () => quarantineBlob(driver, row.key, target!, ctx.signal)
            : async () => {
                const error = deleteErrors.get(row.key)
                if (error !== undefined) throw new Error(error)
              }
      const timedAct = async () => {
        await act()
        acted.actedAt = Math.max(acted.actedAt!, performance.now())
      }
      const outcomeId = await actAndRecord(ctx, row.kind, row.key, row.digest, intents[i], timedAct, detail)
      if (outcomeId === undefined) {
        // A manifest that stays keeps what it references, whatever the plan thought of them.
        if (kind === 'manifest') await keepReferencesOf(ctx, row)
        return
      }
      count(ctx.result, action, Number(row.size))
      if (kind === 'blob')
        acted.set(row.digest, {key: row.key, size: Number(row.size), quarantineKey: target, outcomeId})
    }),
  )
  const stopped = settled.find((outcome) => outcome.status === 'rejected')
  if (stopped) throw stopped.reason
  await evict(ctx, go)
  return acted
}

/**
 * One batched delete. When the request itself fails (the connection, not a per-key error), some keys
 * may be gone and some not: each is stat'ed, and only one still there is a failure.
 */
async function deleteBatch(driver: StorageDriver, keys: string[]): Promise<Map<string, string>> {
  try {
    const outcome = await driver.deleteMany(keys)
    return new Map(outcome.errors.map((e) => [e.key, e.message]))
  } catch (error) {
    const errors = new Map<string, string>()
    const still = await Promise.all(keys.map((key) => driver.stat(key)))
    for (const [i, key] of keys.entries())
      if (still[i]) errors.set(key, `batch delete failed (${errorMessage(error)}) and the object is still there`)
    return errors
  }
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

/**
 * Runs one journaled action and records its outcome. A storage failure is that object's outcome
 * ('failed', the job goes on); a failure to record it (the database) stops the job. Returns the
 * outcome's journal id when the action was done.
 */
async function actAndRecord(
  ctx: ActContext,
  kind: 'blob' | 'manifest',
  key: string,
  digest: string | null,
  intentId: string,
  act: () => Promise<void>,
  detail: Record<string, unknown> = {},
): Promise<string | undefined> {
  let failure: unknown
  try {
    await act()
  } catch (error) {
    failure = error
  }
  // Stopped (signal, lost heartbeat) before this object was touched: no outcome, the resume re-checks it.
  if (failure !== undefined && ctx.signal.aborted) throw failure
  if (failure === undefined) return recordOutcome(ctx, intentId, 'done', detail, {kind, key, state: 'done'})
  ctx.result.acted.failed++
  ctx.onProblem(problemOf(failure, 'storage-error', key, digest ? {digest} : {}))
  await recordOutcome(ctx, intentId, 'failed', {...detail, error: errorMessage(failure)}, {kind, key, state: 'failed'})
  return undefined
}

/**
 * Actions whose intent was journaled but whose outcome was not (the process died in between). Each
 * goes through the same re-check as a fresh batch (references written since the mark started, a
 * re-stat against size and cutoff) before it is finished; one the re-check keeps ends 'skipped'.
 */
async function recoverUnfinished(ctx: ActContext, state: ActState): Promise<void> {
  const intents = await unfinishedIntents(ctx.db, ctx.jobId)
  for (const kind of ['manifest', 'blob'] as const) {
    const ofKind = intents.filter(
      (intent) => (intent.action === 'delete-manifest' ? 'manifest' : 'blob') === kind && intent.action !== 'rescue',
    )
    for (let i = 0; i < ofKind.length; i += ctx.batchSize) {
      const batch = ofKind.slice(i, i + ctx.batchSize)
      const rows = batch.map((intent) => rowOf(intent))
      const recheckStart = storageNow(ctx)
      const skips = await recheckRows(ctx, state, kind, rows, true)
      const go: CandidateRow[] = []
      const goIntents: string[] = []
      for (const [j, intent] of batch.entries()) {
        const skip = skips[j]
        if (skip === undefined) {
          go.push(rows[j])
          goIntents.push(intent.id)
          continue
        }
        // A quarantine may have been copied, or even moved, before the run was killed.
        if (intent.action === 'quarantine' && intent.detail.quarantineKey) {
          await keepQuarantined(ctx, rows[j], String(intent.detail.quarantineKey), intent.id, skip, true)
          continue
        }
        await recordOutcome(
          ctx,
          intent.id,
          'skipped',
          {recovered: true, reason: skip},
          {kind, key: intent.key, state: 'skipped', note: skip},
        )
        if (kind === 'manifest') await keepReferencesOf(ctx, rows[j])
      }
      if (go.length === 0) continue
      const recheckEnd = performance.now()
      const quarantineKeys = new Map(
        batch
          .filter((intent) => intent.detail.quarantineKey)
          .map((intent) => [intent.key, String(intent.detail.quarantineKey)]),
      )
      const acted = await actOnBatch(ctx, kind, go, goIntents, {quarantineKeys})
      if (kind === 'blob') noteActedBlobs(state, acted, recheckStart, recheckEnd)
    }
  }
  // A rescue of the post-check that did not finish: the blob is wanted, so finish moving it back.
  for (const intent of intents.filter((i) => i.action === 'rescue')) {
    const quarantine = {key: intent.key, quarantineKey: String(intent.detail.quarantineKey), size: intent.size ?? 0}
    try {
      await moveBack(ctx.driver, quarantine)
    } catch (error) {
      ctx.onProblem(problemOf(error, 'storage-error', intent.key, intent.digest ? {digest: intent.digest} : {}))
      await recordOutcome(ctx, intent.id, 'failed', {recovered: true, error: errorMessage(error)})
      continue
    }
    await recordOutcome(ctx, intent.id, 'done', {recovered: true})
  }
}

/** A journaled intent as the candidate row it was acting on. */
function rowOf(intent: IntentRow): CandidateRow {
  return {
    kind: intent.action === 'delete-manifest' ? 'manifest' : 'blob',
    digest: intent.digest!,
    repository: typeof intent.detail.repository === 'string' ? intent.detail.repository : null,
    key: intent.key,
    size: String(intent.size ?? 0),
    last_modified: intent.at,
  }
}
