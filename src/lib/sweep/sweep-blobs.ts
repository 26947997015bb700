import type {Db} from '../metadata/db.js'
import {UsageError} from '../errors.js'
import {asReportTarget, reportFilePath} from '../output/report-target.js'
import {runJob, type JobEnd, type RunningJob} from '../jobs/runner.js'
import {regionLockScope} from '../jobs/lock.js'
import {assertCacheAllowsActing, openDescriptorCache} from '../registry/descriptor-cache.js'
import {shardsFor} from '../storage/layout.js'
import type {Problem} from '../storage/repositories.js'
import {planSweep, type ListingProgress} from './plan.js'
import {actOnCandidates} from './act.js'
import {actingRefusals, firstActingSweep, refuseUnsafePlan, storageClock} from './preconditions.js'
import type {StorageClock} from '../storage/clock.js'
import {readMarkRun, type MarkRun} from './shared-marks.js'
import {fingerprintStore, writePlanFile, type PlanSettings, type StoreFingerprint} from './plan-file.js'
import {
  CLOCK_SKEW_MS,
  SWEEP_JOB_KIND,
  type ActingMode,
  type NewSweep,
  type SweepBlobsOptions,
  type SweepBlobsResult,
  type SweepMode,
  type SweepProgress,
  type SweepSettings,
  zeroSweepCounts,
} from './types.js'

export type * from './types.js'
export {SWEEP_JOB_KIND} from './types.js'

const MAX_PROBLEMS_IN_RESULT = 100
/** Warnings logged per problem kind; the rest are counted (50,000 garbage manifests must not be 50,000 lines). */
export const PROBLEMS_LOGGED_PER_KIND = 5

interface SweepCheckpoint {
  phase: 'plan' | 'act'
  markStart: string
  cutoff: string
  planned: string[]
  result?: Partial<SweepBlobsResult>
}

/** The settings stored with an acting job: what decides which blobs it acts on. */
type StoredSettings = SweepSettings & {mode: SweepMode}
const SETTING_KEYS = [
  'strategy',
  'mode',
  'minAgeMs',
  'deleteUntagged',
  'deleteReferrers',
  'maxDeletes',
  'maxBytes',
  'quarantinePrefix',
  'metadataAuthoritative',
  'allowMassDelete',
  'marks',
] as const

/**
 * The orphaned-blob sweep. Dry-run unless the mode says otherwise. A blob is acted on only if it is
 * unreferenced, older than the cutoff (and so is every link to it), still unreferenced and unchanged
 * when re-checked just before its batch, and its intent is journaled first. An acting sweep is a job:
 * it checkpoints after each planned prefix and resumes where it stopped.
 */
export async function sweepBlobs(opts: SweepBlobsOptions): Promise<SweepBlobsResult> {
  const started = performance.now()
  if (opts.resume === undefined) {
    if (opts.strategy === 'metadata' && !opts.db)
      throw new UsageError('the metadata strategy needs a database (database.url or DATABASE_URL)')
    if (opts.strategy === 'metadata' && opts.deleteUntagged)
      throw new UsageError('untagged manifests are found by the storage strategy only')
    if (opts.marks !== undefined && (opts.strategy !== 'storage' || opts.deleteUntagged))
      throw new UsageError('--marks is for the storage strategy without --delete-untagged')
    if (opts.marks !== undefined && !opts.db) throw new UsageError('--marks needs a database (it holds the marks)')
  }
  const acting = opts.resume !== undefined || opts.mode !== 'dry-run'
  if (opts.planOut !== undefined && (acting || !opts.reportFile))
    throw new UsageError('a plan (--plan-out) is written by a new dry-run sweep with a candidate report')
  // The plan is streamed from the report afterwards: only a file can be read back.
  if (opts.planOut !== undefined && reportFilePath(opts.reportFile!) === undefined)
    throw new UsageError('a plan (--plan-out) is made from a candidate report in a file, not on stdout or in s3://')
  // Taken before the mark begins: any change to the repositories after it makes the plan stale.
  const storeBefore = opts.planOut !== undefined ? await fingerprintStore(opts.driver, opts.signal) : undefined
  const createdAt = new Date()
  // Before any job exists: an in-memory registry cache would hide what we remove, unless the registry is stopped.
  if (acting) assertCacheAllowsActing(opts.registryCache?.mode ?? 'none', opts.registryReadOnly ?? false)
  const result = await runJob<SweepCheckpoint, SweepBlobsResult>(
    acting ? opts.db : undefined,
    {
      kind: SWEEP_JOB_KIND,
      params: pickSettings(opts),
      shard: opts.shard,
      resume: opts.resume,
      key: opts.jobKey,
      region: opts.driver.region,
      signal: opts.signal,
      logger: opts.logger,
      // One actor per region and prefix: a second acting sweep (or purge, restore) on them is refused.
      lock: (shard) => regionLockScope(opts.driver.region, shardsFor(shard.index, shard.count)),
    },
    (job) => runSweep(opts, job, started),
  )
  if (storeBefore) result.plan = await writePlan(opts as SweepBlobsOptions & NewSweep, result, storeBefore, createdAt)
  return result
}

/** The dry-run's plan: its settings, the store it saw, and its candidates streamed from the report. */
async function writePlan(
  opts: SweepBlobsOptions & NewSweep,
  result: SweepBlobsResult,
  store: StoreFingerprint,
  createdAt: Date,
): Promise<{file: string; hash: string}> {
  const file = opts.planOut!
  const settings = {...pickSettings(opts), mode: 'dry-run'} as PlanSettings
  const hash = await writePlanFile({
    file,
    reportFile: reportFilePath(opts.reportFile!)!,
    header: {
      createdAt: createdAt.toISOString(),
      region: opts.driver.region,
      location: opts.driver.location,
      settings,
      shard: {index: result.shards.index, count: result.shards.count},
      cutoff: result.cutoff,
      // A new job's cutoff is its start less the grace period, both in storage time.
      markStart: new Date(Date.parse(result.cutoff) + settings.minAgeMs).toISOString(),
      store,
    },
    trailer: {
      candidates: result.candidates,
      scanned: result.scanned,
      markComplete: result.markComplete,
      problemCount: result.problemCount,
      problems: result.problems.slice(0, 10),
    },
  })
  return {file, hash}
}

function pickSettings(from: object): Partial<StoredSettings> {
  const source = from as Record<string, unknown>
  const picked: Record<string, unknown> = {}
  for (const key of SETTING_KEYS) if (source[key] !== undefined) picked[key] = source[key]
  return picked as Partial<StoredSettings>
}

async function runSweep(
  opts: SweepBlobsOptions,
  job: RunningJob<SweepCheckpoint>,
  started: number,
): Promise<JobEnd<SweepBlobsResult>> {
  const settings = pickSettings(job.params) as StoredSettings
  const checkpoint = job.checkpoint
  const acting = settings.mode !== 'dry-run' && job.id !== null && opts.db !== undefined
  const maxClockSkewMs = opts.maxClockSkewMs ?? CLOCK_SKEW_MS
  const clock = await storageClock(opts, acting, maxClockSkewMs)
  // Every instant compared with an object's lastModified is in the storage's time.
  const now = opts.now ?? clock?.now() ?? new Date()
  const cutoff = checkpoint ? new Date(checkpoint.cutoff) : new Date(now.getTime() - settings.minAgeMs)
  // A shared mark began before this run: what was written since its start is what the re-check walks.
  const sharedMarks = settings.marks
    ? await readMarkRun(opts.db!, settings.marks, opts.driver.region, cutoff)
    : undefined
  const markStart = checkpoint ? new Date(checkpoint.markStart) : (sharedMarks?.startedAt ?? now)
  const prefixes = shardsFor(job.shard.index, job.shard.count)
  const result = emptyResult(opts, job, settings, cutoff, prefixes.length, checkpoint)
  result.storageClock = clock ? {offsetMs: clock.offsetMs, uncertaintyMs: clock.uncertaintyMs} : null
  job.showStats(() => withoutProblems(result))
  // This run's problems by kind: the first few of each are logged, the rest counted and summed up at the end.
  const seenThisRun = new Map<string, number>()
  const onProblem = (problem: Problem) => {
    result.problemCount++
    result.problemKinds[problem.kind] = (result.problemKinds[problem.kind] ?? 0) + 1
    if (result.problems.length < MAX_PROBLEMS_IN_RESULT) result.problems.push(problem)
    const seen = (seenThisRun.get(problem.kind) ?? 0) + 1
    seenThisRun.set(problem.kind, seen)
    if (seen <= PROBLEMS_LOGGED_PER_KIND) opts.logger.warn(problem.message, {problem: problem.kind, key: problem.key})
  }
  try {
    return await planAndAct(opts, job, {
      started,
      settings,
      result,
      onProblem,
      acting,
      clock,
      maxClockSkewMs,
      markStart,
      cutoff,
      prefixes,
      sharedMarks,
    })
  } finally {
    for (const [kind, seen] of seenThisRun) {
      if (seen > PROBLEMS_LOGGED_PER_KIND) {
        const more = seen - PROBLEMS_LOGGED_PER_KIND
        opts.logger.warn(`… and ${more.toLocaleString('en-US')} more problems of kind ${kind}`, {
          problem: kind,
          count: more,
        })
      }
    }
  }
}

/** What runSweep settled before the plan: the job's settings, its instants and its result so far. */
interface SweepRun {
  started: number
  settings: StoredSettings
  result: SweepBlobsResult
  onProblem: (problem: Problem) => void
  acting: boolean
  clock: StorageClock | undefined
  maxClockSkewMs: number
  markStart: Date
  cutoff: Date
  prefixes: string[]
  sharedMarks: MarkRun | undefined
}

async function planAndAct(
  opts: SweepBlobsOptions,
  job: RunningJob<SweepCheckpoint>,
  run: SweepRun,
): Promise<JobEnd<SweepBlobsResult>> {
  const {
    started,
    settings,
    result,
    onProblem,
    acting,
    clock,
    maxClockSkewMs,
    markStart,
    cutoff,
    prefixes,
    sharedMarks,
  } = run
  const checkpoint = job.checkpoint
  let live: ListingProgress = {listed: 0, marks: 0}
  const progress = (phase: SweepProgress['phase'], shardsDone: number, listing?: ListingProgress) => {
    if (listing) live = listing
    opts.onProgress?.({
      phase,
      shardsDone,
      shards: prefixes.length,
      listed: live.listed,
      marks: live.marks,
      scanned: result.scanned.blobs,
      candidates: result.candidates.count,
      acted: result.acted.deleted + result.acted.quarantined,
      elapsedMs: performance.now() - started,
    })
  }
  const checkpointAt = (phase: SweepCheckpoint['phase'], planned: string[]): SweepCheckpoint => ({
    phase,
    markStart: markStart.toISOString(),
    cutoff: cutoff.toISOString(),
    planned,
    result: withoutProblems(result),
  })
  const db = opts.db
  const concurrency = opts.concurrency ?? 32

  if (checkpoint?.phase !== 'act') {
    const jobId = job.id
    await planSweep({
      ...settings,
      driver: opts.driver,
      region: opts.region,
      db,
      job:
        acting && jobId
          ? {
              db: db!,
              id: jobId,
              checkpointAfter: (planned) => {
                const state = checkpointAt('plan', planned)
                return () => job.save(state, state.result)
              },
            }
          : undefined,
      prefixes,
      shard: job.shard,
      planned: checkpoint?.planned ?? [],
      cutoff,
      markStart,
      sharedMarks,
      concurrency,
      reportFile: opts.reportFile,
      signal: job.signal,
      logger: opts.logger,
      result,
      onProblem,
      onProgress: progress,
    })
    // A dry-run says whether acting on the same plan would be refused, and why; acting stops here.
    const refusals = actingRefusals(result, settings, await firstActingSweep(opts.db, opts.driver.region))
    result.wouldRefuse = refusals.map((refusal) => refusal.reason)
    if (acting) {
      refuseUnsafePlan(refusals, settings)
      const state = checkpointAt('act', prefixes)
      await job.save(state, state.result)
    }
  }
  if (acting) {
    await actOnCandidates({
      db: db!,
      jobId: job.id!,
      driver: opts.driver,
      strategy: settings.strategy,
      metadataAuthoritative: settings.metadataAuthoritative,
      deleteReferrers: settings.deleteReferrers,
      mode: settings.mode as ActingMode,
      quarantinePrefix: settings.quarantinePrefix,
      cutoff,
      markStart,
      storageOffsetMs: clock?.offsetMs ?? 0,
      sinceMarginMs: maxClockSkewMs,
      registryCache: opts.registryCache ?? openDescriptorCache(undefined),
      registryReadOnly: opts.registryReadOnly,
      concurrency,
      batchSize: opts.batchSize ?? 500,
      postCheckAfterBlobs: opts.postCheckAfterBlobs,
      signal: job.signal,
      hooks: opts.hooks,
      result,
      onProblem,
      onBatch: () => progress('act', 0),
    })
    result.restartRegistry =
      result.registryCache === 'inmemory' &&
      result.acted.deleted + result.acted.quarantined + result.acted.manifestsDeleted > 0
  }
  result.durationMs = Math.round(performance.now() - started)
  const failures = [
    result.acted.failed > 0 ? `${result.acted.failed} action(s) failed` : undefined,
    result.postCheck.broken.length > 0
      ? `${result.postCheck.broken.length} image(s) reference a blob deleted after its re-check`
      : undefined,
  ].filter(Boolean)
  const failure = failures.length > 0 ? failures.join('; ') : undefined
  return {result, stats: withoutProblems(result), failure}
}

function emptyResult(
  opts: SweepBlobsOptions,
  job: RunningJob<SweepCheckpoint>,
  settings: StoredSettings,
  cutoff: Date,
  prefixes: number,
  checkpoint: SweepCheckpoint | null,
): SweepBlobsResult {
  return {
    kind: 'sweep-blobs',
    jobId: job.id,
    region: opts.driver.region,
    strategy: settings.strategy,
    mode: settings.mode,
    cutoff: cutoff.toISOString(),
    shards: {index: job.shard.index, count: job.shard.count, prefixes},
    markComplete: true,
    ...zeroSweepCounts(),
    registryCache: opts.registryCache?.mode ?? 'none',
    reportFile: opts.reportFile === undefined ? null : asReportTarget(opts.reportFile).location,
    durationMs: 0,
    ...(checkpoint?.result ?? {}),
  } as SweepBlobsResult
}

/** The job row keeps counters, not the problem list (that is in the result and the logs). */
function withoutProblems(result: SweepBlobsResult): Partial<SweepBlobsResult> {
  const {problems: _problems, ...rest} = result
  return rest
}

export type {Db}
