import {RefusedError, errorMessage} from '../errors.js'
import pLimit from 'p-limit'
import {
  listRevisionLinks,
  listTags,
  problemOf,
  readRevision,
  type LinkEntry,
  type Problem,
} from '../storage/repositories.js'
import {keptManifests, markFromStorage, type MarkSource} from './mark-storage.js'
import {referencedAmong} from './references.js'
import {journalIntents} from './journal.js'
import {skipBlobsReferencedByKept, type CandidateRow} from './candidates.js'
import {moveBack} from './vacuum.js'
import {recordOutcome, type ActContext, type ActedBatch, type ActState} from './act-state.js'

// The checks around each action: before it (is the candidate still unreferenced and unchanged?) and
// after it (did anything written meanwhile reference what was just acted on?).

/**
 * The re-check of rows of one kind: the reason to keep each, or undefined to act. `recovered`: the
 * rows are intents of an earlier run whose action may have gone through already, so an object that is
 * gone is not a reason to keep it (the redo finds it done).
 */
export async function recheckRows(
  ctx: ActContext,
  state: ActState,
  kind: 'blob' | 'manifest',
  rows: CandidateRow[],
  recovered: boolean,
): Promise<Array<string | undefined>> {
  if (kind === 'manifest') {
    // Manifest re-checks read tags and are rare: one at a time.
    const skips: Array<string | undefined> = []
    const kept = new Map<string, Promise<Set<string> | undefined>>()
    for (const row of rows) {
      const skip = await recheckManifest(ctx, row, kept)
      skips.push(recovered && skip === 'gone' ? undefined : skip)
    }
    return skips
  }
  const keep = await recheckReferences(
    ctx,
    state,
    rows.map((r) => r.digest),
  )
  // Blob re-checks are independent stats: in parallel (the driver caps requests in flight).
  return Promise.all(rows.map((row) => recheckBlob(ctx, row, keep, recovered)))
}

/**
 * Marks found by re-walking what changed in storage since the mark, and (metadata) by re-querying. The
 * walk also serves the post-check of every batch acted on before it: it reads everything written since
 * the mark started, which covers what was written since each earlier batch's re-check began.
 *
 * The walk lists every repository, once per batch: on S3 about what the mark's listing costs (a 100k-blob
 * store on radosgw: quarantining about 2,900 blobs in 6 batches took 34.6 s, 19.6 s with one walk in all).
 * On a registry stated read-only nothing can become referenced, so batches skip it and postCheck walks once.
 */
async function recheckReferences(ctx: ActContext, state: ActState, digests: string[]): Promise<Set<string>> {
  const keep = new Set<string>()
  const checking = state.unchecked.splice(0)
  if (ctx.strategy === 'metadata')
    for (const d of await referencedAmong(ctx.db, digests, {linkedSince: ctx.cutoff})) keep.add(d)
  if ((ctx.strategy === 'storage' || !ctx.metadataAuthoritative) && !ctx.registryReadOnly) {
    const wanted = new Set(digests)
    const found = await walkWrittenSince(
      ctx,
      new Date(Math.max(ctx.cutoff.getTime(), ctx.markStart.getTime() - ctx.sinceMarginMs)),
      (digest, source) => {
        if (wanted.has(digest)) keep.add(digest)
        return checking.some((batch) => batch.acted.has(digest)) ? source : undefined
      },
    )
    // During the re-check an unreadable new manifest means its references are unknown: keep the whole batch.
    if (!found.complete) for (const d of digests) keep.add(d)
    await undoReferencedAgain(ctx, checking, found.referenced)
  } else state.unchecked.push(...checking)
  return keep
}

interface WalkResult {
  complete: boolean
  referenced: Map<string, MarkSource[]>
}

/** Walks the revisions and links written since `since` (storage time); `interest` picks the digests to remember. */
async function walkWrittenSince(
  ctx: ActContext,
  since: Date,
  interest: (digest: string, source: MarkSource) => MarkSource | undefined,
): Promise<WalkResult> {
  const found: WalkResult = {complete: true, referenced: new Map()}
  await markFromStorage(ctx.driver, {
    cutoff: ctx.cutoff,
    // What may have appeared since then. Never earlier than the cutoff: links older than that were seen
    // by the mark, and an operator who forced --min-age 0 gets what was before the start.
    since,
    concurrency: ctx.concurrency,
    signal: ctx.signal,
    mark: (digest, _reason, source) => {
      const hit = interest(digest, source)
      if (!hit) return
      const sources = found.referenced.get(digest) ?? []
      if (!sources.some((s) => s.repository === hit.repository && s.manifest === hit.manifest)) sources.push(hit)
      found.referenced.set(digest, sources)
    },
    onProblem: (problem) => {
      found.complete = false
      ctx.onProblem(problem)
    },
  })
  return found
}

/**
 * The post-check of the batches not yet walked after their action: one walk of what was written since
 * the earliest of them began its re-check (the last batch, and batches of a run with no storage re-walk).
 */
export async function postCheck(ctx: ActContext, state: ActState): Promise<void> {
  const checking = state.unchecked.splice(0)
  if (checking.length === 0) return
  const since = new Date(Math.min(...checking.map((batch) => batch.since.getTime())) - ctx.sinceMarginMs)
  if (ctx.strategy === 'metadata' && ctx.metadataAuthoritative) {
    const digests = checking.flatMap((batch) => [...batch.acted.keys()])
    const referenced = new Map(
      [...(await referencedAmong(ctx.db, digests, {linkedSince: ctx.cutoff}))].map((d) => [
        d,
        [{repository: '(metadata database)', manifest: null}],
      ]),
    )
    await undoReferencedAgain(ctx, checking, referenced)
    return
  }
  const found = await walkWrittenSince(ctx, since, (digest, source) =>
    checking.some((batch) => batch.acted.has(digest)) ? source : undefined,
  )
  await undoReferencedAgain(ctx, checking, found.referenced)
}

/**
 * Blobs acted on that something written after their re-check references. A quarantined one is moved
 * back at once (journaled as a rescue of that quarantine); a deleted one is gone: it is reported as a
 * broken image, which fails the job (exit 3).
 */
async function undoReferencedAgain(
  ctx: ActContext,
  checked: ActedBatch[],
  referenced: Map<string, MarkSource[]>,
): Promise<void> {
  for (const [digest, found] of referenced) {
    // A manifest put links its layers again: the link says no more than the manifest that names it.
    const sources = found.filter(
      (s) =>
        s.manifest !== null || !found.some((other) => other.manifest !== null && other.repository === s.repository),
    )
    const acted = checked.find((batch) => batch.acted.has(digest))?.acted.get(digest)
    if (!acted) continue
    if (acted.quarantineKey) {
      const quarantine = {key: acted.key, quarantineKey: acted.quarantineKey, size: acted.size}
      const [intent] = await journalIntents(ctx.db, ctx.jobId, [
        {
          action: 'rescue',
          region: ctx.driver.region,
          key: acted.key,
          digest,
          size: acted.size,
          detail: {quarantineEntry: acted.outcomeId, quarantineKey: acted.quarantineKey, postCheck: true},
        },
      ])
      let failure: unknown
      try {
        await moveBack(ctx.driver, quarantine)
      } catch (error) {
        failure = error
      }
      if (failure === undefined) {
        await recordOutcome(ctx, intent, 'done', {referencedBy: sources})
        ctx.result.postCheck.movedBack++
        continue
      }
      ctx.onProblem(problemOf(failure, 'storage-error', acted.key, {digest}))
      await recordOutcome(ctx, intent, 'failed', {error: errorMessage(failure), referencedBy: sources})
    }
    for (const source of sources)
      ctx.result.postCheck.broken.push({digest, repository: source.repository, manifest: source.manifest})
  }
}

async function recheckBlob(
  ctx: ActContext,
  row: CandidateRow,
  keep: Set<string>,
  recovered: boolean,
): Promise<string | undefined> {
  if (keep.has(row.digest)) return 'referenced again'
  const info = await ctx.driver.stat(row.key)
  if (!info) return recovered ? undefined : 'gone'
  // A blob uploaded again after an earlier delete went through is new: the cutoff keeps it.
  if (info.size !== Number(row.size) || info.lastModified >= ctx.cutoff) return 'changed'
  return undefined
}

/**
 * An untagged manifest is deleted only if its repository, read again now, still does not keep it: the
 * same decision as the mark (tags through index children to any depth, young revisions, referrers),
 * on what the repository holds now. `kept` caches one repository's answer for the rows of a batch.
 */
async function recheckManifest(
  ctx: ActContext,
  row: CandidateRow,
  kept: Map<string, Promise<Set<string> | undefined>>,
): Promise<string | undefined> {
  const repository = row.repository!
  const info = await ctx.driver.stat(row.key)
  if (!info) return 'gone'
  if (info.lastModified >= ctx.cutoff) return 'changed'
  if (!kept.has(repository)) kept.set(repository, keptNow(ctx, repository))
  const keeping = await kept.get(repository)!
  return !keeping || keeping.has(row.digest) ? 'referenced again' : undefined
}

/** The manifests a repository keeps now; undefined when a tag or a manifest cannot be read (keep everything). */
async function keptNow(ctx: ActContext, repository: string): Promise<Set<string> | undefined> {
  const problems: Problem[] = []
  const onProblem = (p: Problem) => problems.push(p)
  const tags = await listTags(ctx.driver, repository, onProblem)
  const links: LinkEntry[] = []
  for await (const link of listRevisionLinks(ctx.driver, repository, onProblem)) links.push(link)
  const limit = pLimit(ctx.concurrency)
  const reads = await Promise.all(
    links.map((link) => limit(() => readRevision(ctx.driver, repository, link, {verifyLink: false}))),
  )
  if (problems.length > 0 || tags.some((t) => t.digest === undefined) || reads.some((r) => r.problems.length > 0))
    return undefined
  return keptManifests(tags, reads, {cutoff: ctx.cutoff, deleteReferrers: ctx.deleteReferrers})
}

/** A manifest kept at the last moment keeps what it references too. */
export async function keepReferencesOf(ctx: ActContext, row: CandidateRow): Promise<void> {
  const link = {digest: row.digest, key: row.key, lastModified: row.last_modified}
  const read = await readRevision(ctx.driver, row.repository!, link, {verifyLink: false})
  await skipBlobsReferencedByKept(ctx.db, ctx.jobId, [row.digest, ...(read.manifest?.references ?? [])])
  if (read.problems.length > 0) {
    throw new RefusedError(
      `manifest ${row.digest} in ${row.repository} was kept but cannot be read: its references are unknown; stopping before any blob is touched`,
    )
  }
}
