import type {RegionConfig} from '../config/config.js'
import type {Db} from '../metadata/db.js'
import type {Logger} from '../output/logger.js'
import type {StorageDriver} from '../storage/driver.js'
import type {Problem} from '../storage/repositories.js'
import {shardOfRepository} from '../metadata/import-options.js'
import {markFromStorage, type UntaggedManifest} from './mark-storage.js'
import {MERGE_UNIT_LENGTH, ShardReferenceReader, mergeUnitsOf} from './references.js'
import {requireCompleteImport, rereadUnreadableRevisions} from './mark-metadata.js'
import {MarkSpill, ShardLines} from './spill.js'
import {enumerateBlobs, enumerateBlobsInWorker, type EnumerateResult} from './enumerate.js'
import {mergePrefix, type PrefixMerge} from './merge.js'
import {readSharedMarks, type MarkRun} from './shared-marks.js'
import {dropUnplannedCandidates, insertCandidates} from './candidates.js'
import {CandidateReport} from './report.js'
import type {ReportTarget} from '../output/report-target.js'
import {REPOSITORIES_PREFIX} from '../storage/layout.js'
import {CLOCK_SKEW_MS, type SweepBlobsResult, type SweepCandidate, type SweepSettings} from './types.js'

export interface PlanContext extends Pick<
  SweepSettings,
  'strategy' | 'deleteUntagged' | 'deleteReferrers' | 'metadataAuthoritative'
> {
  driver: StorageDriver
  region?: RegionConfig
  /** the database of the metadata strategy */
  db?: Db
  /** an acting job: candidates go to its table, and a checkpoint (taken at once, written later) after each prefix */
  job?: {db: Db; id: string; checkpointAfter: (planned: string[]) => () => Promise<void>}
  prefixes: string[]
  /** this worker of a sharded sweep: it plans the untagged manifests of the repositories it owns */
  shard?: {index: number; count: number}
  /** prefixes a resumed job planned already */
  planned: string[]
  cutoff: Date
  markStart: Date
  /** storage strategy: a finished sharded mark to read per prefix instead of walking the manifests */
  sharedMarks?: MarkRun
  concurrency: number
  reportFile?: string | ReportTarget
  signal: AbortSignal
  logger: Logger
  result: SweepBlobsResult
  onProblem: (problem: Problem) => void
  onProgress: (phase: 'mark' | 'plan', planned: number, live: ListingProgress) => void
}

/** What the listing and the mark have found so far: the progress line's figures before any prefix is merged. */
export interface ListingProgress {
  listed: number
  marks: number
}

interface Marked {
  /** the mark set of the storage strategy, spilled per prefix */
  marks: MarkSpill
  /** metadata strategy: references found in storage since the last import */
  delta?: Set<string>
  untagged: UntaggedManifest[]
}

/**
 * The plan: marks what is referenced while listing the blobs of the prefixes still to plan, then
 * merges each prefix. Candidates go to the report, and for an acting job to its candidate table.
 */
export async function planSweep(ctx: PlanContext): Promise<void> {
  const planned = new Set(ctx.planned)
  const todo = ctx.prefixes.filter((prefix) => !planned.has(prefix))
  const files = ShardLines.create(todo, 'sweep')
  const listing = files.sibling('.blobs')
  const report = await CandidateReport.open(ctx.reportFile)
  const marks = new MarkSpill(files)
  const live: ListingProgress = {listed: 0, marks: 0}
  const onListed = (count: number) => {
    live.listed += count
    live.marks = marks.count
    ctx.onProgress('mark', 0, live)
  }
  // The metadata strategy's references are read while the blobs are listed.
  const fromDb =
    ctx.strategy === 'metadata'
      ? new ShardReferenceReader(ctx.db!, todo.flatMap(mergeUnitsOf), {linkedSince: ctx.cutoff})
      : undefined
  try {
    fromDb?.start()
    ctx.onProgress('mark', 0, live)
    // The blob listing runs while the mark does (on a second thread for a filesystem region). Listing
    // first is the safe order anyway: a blob that appears later is not a candidate of this run.
    const [marked, enumerated] = await Promise.all([mark(ctx, marks), listBlobs(ctx, todo, listing, onListed)])
    ctx.logger.debug('listing done', {prefixes: enumerated.completed.length, blobs: live.listed})
    if (enumerated.failed) ctx.result.markComplete = false
    // A resumed plan keeps the candidates of the prefixes it finished (the act phase re-checks each one
    // against everything written since the original start) and redoes the others.
    if (ctx.job) await dropUnplannedCandidates(ctx.job.db, ctx.job.id, [...planned])
    await recordUntagged(ctx, marked.untagged, report)
    await mergePrefixes(ctx, todo, new Set(enumerated.completed), marked, listing, planned, report, live, fromDb)
    await reportBlindMark(ctx)
  } finally {
    await report?.close()
    await files.dispose()
  }
}

function listBlobs(
  ctx: PlanContext,
  todo: string[],
  listing: ShardLines,
  onListed: (count: number) => void,
): Promise<EnumerateResult> {
  const options = {concurrency: ctx.concurrency, signal: ctx.signal, onProblem: ctx.onProblem, onListed}
  return ctx.driver.kind === 'file' && ctx.region && todo.length > 0
    ? enumerateBlobsInWorker(ctx.region, todo, listing, options)
    : enumerateBlobs(ctx.driver, todo, listing, options)
}

async function mark(ctx: PlanContext, marks: MarkSpill): Promise<Marked> {
  const {result} = ctx
  const markProblem = (problem: Problem) => {
    result.markComplete = false
    ctx.onProblem(problem)
  }
  if (ctx.strategy === 'storage' && ctx.sharedMarks) {
    const run = ctx.sharedMarks
    result.marked = {repositories: run.repositories, manifests: run.manifests, youngLinks: run.youngLinks}
    if (!run.complete)
      markProblem({
        kind: 'incomplete-mark',
        key: REPOSITORIES_PREFIX,
        message: `mark run '${run.id}' could not read every manifest or listing (see its shards' problems): it is incomplete`,
      })
    return {marks, untagged: []}
  }
  if (ctx.strategy === 'storage') {
    const marked = await markFromStorage(ctx.driver, {
      cutoff: ctx.cutoff,
      deleteUntagged: ctx.deleteUntagged,
      deleteReferrers: ctx.deleteReferrers,
      ownsRepository:
        ctx.shard && ((repository) => shardOfRepository(repository, ctx.shard!.count) === ctx.shard!.index),
      concurrency: ctx.concurrency,
      signal: ctx.signal,
      mark: (digest) => marks.add(digest),
      onProblem: markProblem,
    })
    marks.lines.flushAll()
    result.marked = {repositories: marked.repositories, manifests: marked.manifests, youngLinks: marked.youngLinks}
    ctx.logger.debug('mark done', {repositories: marked.repositories, manifests: marked.manifests, marks: marks.count})
    return {marks, untagged: marked.untagged}
  }
  const delta = new Set<string>()
  if (!ctx.metadataAuthoritative) {
    // The database knows what was imported; storage may have changed since. Re-walk what is newer.
    const since = await requireCompleteImport(ctx.db!, ctx.driver.region)
    const marked = await markFromStorage(ctx.driver, {
      cutoff: ctx.cutoff,
      since: new Date(Math.min(since.getTime(), ctx.markStart.getTime()) - CLOCK_SKEW_MS),
      concurrency: ctx.concurrency,
      signal: ctx.signal,
      mark: (digest) => delta.add(digest),
      onProblem: markProblem,
    })
    result.marked = {repositories: marked.repositories, manifests: marked.manifests, youngLinks: marked.youngLinks}
  }
  // Revisions the import could not read are older than its start, so the walk above skips them: read
  // them again, or the mark is incomplete (they may reference anything).
  await rereadUnreadableRevisions(ctx.db!, ctx.driver, {
    concurrency: ctx.concurrency,
    signal: ctx.signal,
    mark: (digest) => delta.add(digest),
    onProblem: markProblem,
  })
  return {marks, delta, untagged: []}
}

async function recordUntagged(
  ctx: PlanContext,
  untagged: UntaggedManifest[],
  report: CandidateReport | undefined,
): Promise<void> {
  for (const manifest of untagged) {
    const candidate: SweepCandidate = {
      kind: 'manifest',
      digest: manifest.digest,
      key: manifest.revisionKey,
      size: 0,
      lastModified: manifest.lastModified,
      repository: manifest.repository,
      reason: 'untagged',
    }
    ctx.result.candidates.manifests++
    await report?.write(candidate)
    if (ctx.job) await insertCandidates(ctx.job.db, ctx.job.id, [candidate])
  }
}

async function mergePrefixes(
  ctx: PlanContext,
  todo: string[],
  listed: Set<string>,
  marked: Marked,
  listing: ShardLines,
  planned: Set<string>,
  report: CandidateReport | undefined,
  live: ListingProgress,
  fromDb: ShardReferenceReader | undefined,
): Promise<void> {
  const {result} = ctx
  let checkpointing = Promise.resolve()
  let done = ctx.prefixes.length - todo.length
  ctx.onProgress('plan', done, live)
  for (const prefix of todo) {
    // A stopped job waits for its checkpoint writes: none lands after the job was marked interrupted.
    if (ctx.signal.aborted) await checkpointing.catch(() => undefined)
    ctx.signal.throwIfAborted()
    // A prefix whose listing did not finish: unknown, so no checkpoint (and acting is refused).
    if (!listed.has(prefix)) continue
    // A unit's candidates go out as it is merged (to the candidate table in batches): a prefix's are not
    // held. The prefix counts as planned, and is checkpointed, once all its units are; a job stopped
    // before that redoes the prefix, and drops the candidates it had put in the table.
    let toInsert: SweepCandidate[] = []
    for await (const merged of mergeByUnits(ctx, prefix, listing, marked, fromDb)) {
      result.scanned.blobs += merged.scanned.blobs
      result.scanned.bytes += merged.scanned.bytes
      result.referenced += merged.referenced
      result.tooYoung.count += merged.tooYoung.count
      result.tooYoung.bytes += merged.tooYoung.bytes
      for (const candidate of merged.candidates) {
        result.candidates.count++
        result.candidates.bytes += candidate.size
        const drain = report?.write(candidate)
        if (drain) await drain
        if (ctx.job) toInsert.push(candidate)
      }
      if (ctx.job && toInsert.length >= CANDIDATES_PER_INSERT) {
        await insertCandidates(ctx.job.db, ctx.job.id, toInsert)
        toInsert = []
      }
    }
    planned.add(prefix)
    if (ctx.job) {
      const job = ctx.job
      await insertCandidates(job.db, job.id, toInsert)
      // The checkpoint holds the counters as they are now; it is written behind the next prefix's merge.
      checkpointing = checkpointing.then(job.checkpointAfter([...planned]))
    }
    ctx.onProgress('plan', ++done, live)
  }
  await checkpointing
}

/**
 * One prefix merged a sixteenth at a time (ShardLines.readUnits), a result per unit: one unit's listing
 * lines and its references are held at once, so a prefix of millions of blobs (10^9 / 256) is not read
 * whole. The merge alone of 4M blobs and 3.6M references peaked at 1.3 GiB of RSS read whole, 230 MiB
 * by units. References come from the database in units (metadata strategy, shared marks), or from this
 * walk's marks, which a large prefix splits by unit first (MarkSpill.units).
 */
async function* mergeByUnits(
  ctx: PlanContext,
  prefix: string,
  listing: ShardLines,
  marked: Marked,
  fromDb: ShardReferenceReader | undefined,
): AsyncIterable<PrefixMerge> {
  const local =
    ctx.strategy === 'storage' && !ctx.sharedMarks ? await marked.marks.units(prefix, MERGE_UNIT_LENGTH) : undefined
  try {
    for await (const {unit, lines} of listing.readUnits(prefix, MERGE_UNIT_LENGTH)) {
      const references = local
        ? await local.read(unit)
        : ctx.sharedMarks
          ? await readSharedMarks(ctx.db!, ctx.sharedMarks.id, unit)
          : await fromDb!.read(unit)
      yield mergePrefix(lines, references, ctx.cutoff.getTime(), marked.delta)
    }
  } finally {
    await local?.dispose()
  }
}

/** Candidates of an acting sweep go to its table in batches of about this many, not a statement per unit. */
const CANDIDATES_PER_INSERT = 1000

/**
 * A mark that found no repositories, or no manifests, while the blob store holds blobs has not seen
 * the registry (repositories/ renamed, a wrong prefix, a listing permission missing): every blob would
 * look like an orphan. That mark is incomplete, with a problem that says why.
 */
async function reportBlindMark(ctx: PlanContext): Promise<void> {
  const {result} = ctx
  if (result.scanned.blobs === 0) return
  const walked = ctx.strategy === 'storage' || !ctx.metadataAuthoritative
  const blind =
    walked && result.marked.repositories === 0
      ? `no repository under ${REPOSITORIES_PREFIX}`
      : ctx.strategy === 'storage' && result.marked.manifests === 0
        ? `${result.marked.repositories} repositories but not one manifest revision`
        : ctx.strategy === 'metadata' && !(await databaseHasManifests(ctx.db!))
          ? 'no manifest in the metadata database'
          : undefined
  if (!blind) return
  result.markComplete = false
  ctx.onProblem({
    kind: 'empty-mark',
    key: REPOSITORIES_PREFIX,
    message:
      `the mark found ${blind} at ${ctx.driver.location} while the blob store holds ${result.scanned.blobs} blobs: ` +
      'a registry whose repositories cannot be seen would make every blob an orphan (a renamed repositories/, a wrong prefix, a missing listing permission?)',
  })
}

/** Revisions the import could not read count: they are re-read before the merge, and marked. */
async function databaseHasManifests(db: Db): Promise<boolean> {
  const found = await db.query<{found: boolean}>(
    'SELECT EXISTS (SELECT 1 FROM manifests) OR EXISTS (SELECT 1 FROM unreadable_revisions) AS found',
  )
  return found.rows[0].found
}
