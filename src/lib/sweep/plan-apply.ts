import pLimit from 'p-limit'
import type {Db} from '../metadata/db.js'
import {RefusedError} from '../errors.js'
import {runJob} from '../jobs/runner.js'
import {regionLockScope} from '../jobs/lock.js'
import type {Logger} from '../output/logger.js'
import {formatDuration} from '../output/format.js'
import {formatDurationSpec} from '../config/duration.js'
import {assertCacheAllowsActing, openDescriptorCache, type DescriptorCache} from '../registry/descriptor-cache.js'
import {assertClockSkewWithin, measureStorageClock} from '../storage/clock.js'
import type {StorageDriver} from '../storage/driver.js'
import {shardsFor} from '../storage/layout.js'
import {actOnCandidates} from './act.js'
import {insertCandidates} from './candidates.js'
import {actingRefusals, firstActingSweep, refuseUnsafePlan} from './preconditions.js'
import {fingerprintStore, readPlanFile, type PlanHeader, type PlanTrailer} from './plan-file.js'
import {
  CLOCK_SKEW_MS,
  SWEEP_JOB_KIND,
  type ActingMode,
  type SweepBlobsResult,
  type SweepCandidate,
  type SweepMode,
  zeroSweepCounts,
} from './types.js'

/** Candidates a dry-run apply lists; the plan file holds them all. */
const LISTED = 20
/** Skipped candidates named in the result; the job's candidate table holds them all. */
const SKIPPED_NAMED = 100
/** Candidate rows per INSERT while a plan is loaded into its job. */
const LOAD_BATCH = 1000

export type ApplyPlanOptions = {
  file: string
  /** a plan older than this is refused */
  maxAgeMs: number
  /** opens the plan's region (by the name the plan gives) */
  region: (name: string) => Promise<StorageDriver>
  concurrency?: number
  batchSize?: number
  registryCache?: DescriptorCache
  registryReadOnly?: boolean
  maxClockSkewMs?: number
  logger: Logger
  signal?: AbortSignal
  /** for tests: the instant the plan's age is measured at */
  now?: Date
} & ({mode: 'dry-run'; db?: Db} | {mode: ActingMode; db: Db})

export interface SweepApplyResult {
  kind: 'sweep-apply'
  mode: SweepMode
  plan: {file: string; hash: string; createdAt: string; ageMs: number; maxAgeMs: number}
  jobId: string | null
  region: string
  strategy: SweepBlobsResult['strategy']
  cutoff: string
  /** the plan's candidates: every one was re-stated as planned before anything was done */
  candidates: {count: number; bytes: number; manifests: number}
  /** dry-run: the first candidates it would act on */
  first: SweepCandidate[]
  acted: SweepBlobsResult['acted']
  skipped: SweepBlobsResult['skipped']
  /** candidates the re-check just before acting kept (referenced again, changed, gone), the first of them */
  skippedCandidates: Array<{kind: string; digest: string; key: string; reason: string}>
  /** dry-run: why acting on this plan would be refused (an incomplete mark, the caps, the mass-deletion guard) */
  wouldRefuse: string[]
  postCheck: SweepBlobsResult['postCheck']
  window: SweepBlobsResult['window']
  restartRegistry: boolean
  problems: SweepBlobsResult['problems']
  problemCount: number
  durationMs: number
}

/**
 * Acts on exactly the candidates of a plan written by `sweep blobs --plan-out`, or (dry-run) says what
 * it would do. Refused (exit 4), before anything is touched: a plan whose bytes are not the ones sealed,
 * one older than the limit, one made on another store, and one whose store has changed since (the
 * fingerprint of repositories/ differs, or a candidate is not as it was listed). Acting then goes the
 * way of every sweep: a job, the candidates in its table, each batch re-checked just before it is
 * touched (a candidate referenced again is skipped, never removed), journaled before and after.
 */
export async function applyPlan(opts: ApplyPlanOptions): Promise<SweepApplyResult> {
  const started = performance.now()
  const {header, trailer, planHash} = await readPlanFile(opts.file)
  const createdAt = Date.parse(header.createdAt)
  const ageMs = (opts.now ?? new Date()).getTime() - createdAt
  if (!(ageMs <= opts.maxAgeMs))
    throw new RefusedError(
      `the plan ${opts.file} was made ${formatDuration(Math.max(0, ageMs))} ago (${header.createdAt}), longer than --max-age ${formatDurationSpec(opts.maxAgeMs)}: the store has had time to change; nothing was done`,
      {
        code: 'PLAN_STALE',
        hint: 'make a new plan and review it, or pass a larger --max-age if this one is still right',
      },
    )
  const driver = await opts.region(header.region)
  if (driver.location !== header.location)
    throw new RefusedError(
      `the plan was made on region ${header.region} at ${header.location}, which now points at ${driver.location}; nothing was done`,
      {code: 'PLAN_OTHER_STORE', hint: 'apply a plan with the configuration it was made with'},
    )
  const acting = opts.mode !== 'dry-run'
  if (acting) assertCacheAllowsActing(opts.registryCache?.mode ?? 'none', opts.registryReadOnly ?? false)
  const first = await assertStoreUnchanged(opts, driver, header, planHash)
  const result = sweepResult(opts, header, trailer)
  const applied = (jobId: string | null): SweepApplyResult => ({
    kind: 'sweep-apply',
    mode: opts.mode,
    plan: {file: opts.file, hash: planHash, createdAt: header.createdAt, ageMs, maxAgeMs: opts.maxAgeMs},
    jobId,
    region: header.region,
    strategy: header.settings.strategy,
    cutoff: header.cutoff,
    candidates: trailer.candidates,
    first: acting ? [] : first,
    acted: result.acted,
    skipped: result.skipped,
    skippedCandidates: [],
    wouldRefuse: [],
    postCheck: result.postCheck,
    window: result.window,
    restartRegistry: result.restartRegistry,
    problems: result.problems,
    problemCount: result.problemCount,
    durationMs: Math.round(performance.now() - started),
  })
  // The caps and the mass-deletion guard judge the plan as they would have judged the sweep that made it.
  const refusals = actingRefusals(result, header.settings, await firstActingSweep(opts.db, header.region))
  if (opts.mode === 'dry-run') return {...applied(null), wouldRefuse: refusals.map((refusal) => refusal.reason)}
  const {db, mode} = opts
  const settings = {...header.settings, mode}
  refuseUnsafePlan(refusals, settings)
  // From here on, problems are this run's own.
  result.problems = []
  result.problemCount = 0
  const prefixes = shardsFor(header.shard.index, header.shard.count)
  return runJob(
    db,
    {
      kind: SWEEP_JOB_KIND,
      params: {...settings, plan: planHash},
      shard: header.shard,
      region: header.region,
      signal: opts.signal,
      logger: opts.logger,
      lock: (shard) => regionLockScope(header.region, shardsFor(shard.index, shard.count)),
    },
    async (job) => {
      const jobId = job.id!
      await loadCandidates(db, jobId, opts.file, planHash)
      const maxClockSkewMs = opts.maxClockSkewMs ?? CLOCK_SKEW_MS
      const clock = await measureStorageClock(driver)
      assertClockSkewWithin(clock, maxClockSkewMs, driver.location)
      result.jobId = jobId
      result.storageClock = {offsetMs: clock.offsetMs, uncertaintyMs: clock.uncertaintyMs}
      // The checkpoint of a sweep whose plan is done: `sweep blobs --resume` finishes a stopped apply.
      const {problems: _problems, ...stats} = result
      await job.save(
        {phase: 'act', markStart: header.markStart, cutoff: header.cutoff, planned: prefixes, result: stats},
        stats,
      )
      await actOnCandidates({
        db,
        jobId,
        driver,
        strategy: settings.strategy,
        metadataAuthoritative: settings.metadataAuthoritative,
        deleteReferrers: settings.deleteReferrers,
        mode,
        quarantinePrefix: settings.quarantinePrefix,
        cutoff: new Date(header.cutoff),
        markStart: new Date(header.markStart),
        storageOffsetMs: clock.offsetMs,
        sinceMarginMs: maxClockSkewMs,
        registryCache: opts.registryCache ?? openDescriptorCache(undefined),
        registryReadOnly: opts.registryReadOnly,
        concurrency: opts.concurrency ?? 32,
        batchSize: opts.batchSize ?? 500,
        signal: job.signal,
        result,
        onProblem: (problem) => {
          result.problemCount++
          if (result.problems.length < 100) result.problems.push(problem)
          opts.logger.warn(problem.message, {problem: problem.kind, key: problem.key})
        },
        onBatch: () => {},
      })
      result.restartRegistry =
        result.registryCache === 'inmemory' &&
        result.acted.deleted + result.acted.quarantined + result.acted.manifestsDeleted > 0
      const end = applied(jobId)
      end.skippedCandidates = await skippedCandidates(db, jobId)
      const failures = [
        result.acted.failed > 0 ? `${result.acted.failed} action(s) failed` : undefined,
        result.postCheck.broken.length > 0
          ? `${result.postCheck.broken.length} image(s) reference a blob deleted after its re-check`
          : undefined,
      ].filter(Boolean)
      const {problems: _p, ...endStats} = result
      return {result: end, stats: endStats, failure: failures.length > 0 ? failures.join('; ') : undefined}
    },
  )
}

/**
 * Refuses a plan whose store has changed: the fingerprint of repositories/ first (one LIST), then each
 * candidate re-stated against the size and last modified the sweep listed (a candidate gone, rewritten
 * or re-uploaded means the plan no longer describes the store). Returns the first candidates.
 */
async function assertStoreUnchanged(
  opts: ApplyPlanOptions,
  driver: StorageDriver,
  header: PlanHeader,
  planHash: string,
): Promise<SweepCandidate[]> {
  const now = await fingerprintStore(driver, opts.signal)
  const then = header.store.repositories
  if (now.repositories.sha256 !== then.sha256)
    throw new RefusedError(
      `the store changed since the plan was made: repositories/ held ${then.objects} objects (${then.sha256}), ` +
        `now ${now.repositories.objects} (${now.repositories.sha256}); a push, a tag move or a delete may reference a candidate; nothing was done`,
      {
        code: 'PLAN_STORE_CHANGED',
        hint: 'make a new plan (regops sweep blobs --plan-out FILE), review it, and apply that one',
      },
    )
  const limit = pLimit(opts.concurrency ?? 32)
  const first: SweepCandidate[] = []
  const changed: string[] = []
  let changedCount = 0
  let batch: SweepCandidate[] = []
  const check = async () => {
    const found = await Promise.all(batch.map((c) => limit(() => driver.stat(c.key))))
    for (const [i, candidate] of batch.entries()) {
      const why = candidateChange(candidate, found[i])
      if (!why) continue
      changedCount++
      if (changed.length < 3) changed.push(`${candidate.key} (${why})`)
    }
    batch = []
  }
  const read = await readPlanFile(opts.file, async (candidate) => {
    if (first.length < LISTED) first.push(candidate)
    batch.push(candidate)
    if (batch.length >= 256) await check()
  })
  await check()
  // The file was read again: it must still be the plan verified before.
  if (read.planHash !== planHash) throw planReplaced(opts.file)
  if (changedCount > 0)
    throw new RefusedError(
      `the store changed since the plan was made: ${changedCount} candidate(s) are not as the sweep listed them, e.g. ${changed.join(', ')}; nothing was done`,
      {
        code: 'PLAN_STORE_CHANGED',
        hint: 'make a new plan (regops sweep blobs --plan-out FILE), review it, and apply that one',
      },
    )
  return first
}

/** Why a candidate is not as listed; undefined when it is. Times compare to the second (S3's HEAD has no finer). */
function candidateChange(
  candidate: SweepCandidate,
  now: {size: number; lastModified: Date} | undefined,
): string | undefined {
  if (!now) return 'gone'
  // An untagged manifest's link is covered by the fingerprint of repositories/ already.
  if (candidate.kind === 'manifest') return undefined
  if (now.size !== candidate.size) return `size ${candidate.size} then, ${now.size} now`
  const second = (ms: number) => Math.floor(ms / 1000)
  if (second(now.lastModified.getTime()) !== second(Date.parse(candidate.lastModified)))
    return `last modified ${candidate.lastModified} then, ${now.lastModified.toISOString()} now`
  return undefined
}

/** The plan's candidates into its job's table, in batches, the plan verified once more as it is read. */
async function loadCandidates(db: Db, jobId: string, file: string, planHash: string): Promise<void> {
  let batch: SweepCandidate[] = []
  const read = await readPlanFile(file, async (candidate) => {
    batch.push(candidate)
    if (batch.length >= LOAD_BATCH) {
      await insertCandidates(db, jobId, batch)
      batch = []
    }
  })
  await insertCandidates(db, jobId, batch)
  // Rows of another plan would be acted on: stop before the act phase reads any.
  if (read.planHash !== planHash) throw planReplaced(file)
}

function planReplaced(file: string): RefusedError {
  return new RefusedError(`the plan ${file} changed while it was being applied; nothing was done`, {
    code: 'PLAN_ALTERED',
    hint: 'apply a plan no one is writing',
  })
}

async function skippedCandidates(db: Db, jobId: string): Promise<SweepApplyResult['skippedCandidates']> {
  const rows = await db.query<{kind: string; digest: string; key: string; note: string | null}>(
    `SELECT kind, digest, key, note FROM regops_sweep_candidates WHERE job_id = $1 AND state = 'skipped'
     ORDER BY digest, key LIMIT $2`,
    [jobId, SKIPPED_NAMED],
  )
  return rows.rows.map((row) => ({kind: row.kind, digest: row.digest, key: row.key, reason: row.note ?? 'skipped'}))
}

/** The sweep result the act phase fills, with the plan's own figures for the guards to judge. */
function sweepResult(opts: ApplyPlanOptions, header: PlanHeader, trailer: PlanTrailer): SweepBlobsResult {
  return {
    kind: 'sweep-blobs',
    jobId: null,
    region: header.region,
    strategy: header.settings.strategy,
    mode: opts.mode,
    cutoff: header.cutoff,
    shards: {
      index: header.shard.index,
      count: header.shard.count,
      prefixes: shardsFor(header.shard.index, header.shard.count).length,
    },
    markComplete: trailer.markComplete,
    ...zeroSweepCounts(),
    scanned: trailer.scanned,
    candidates: trailer.candidates,
    registryCache: opts.registryCache?.mode ?? 'none',
    // The plan's problems are what an incomplete mark is refused for; those of this run are counted from zero.
    problems: trailer.problems,
    problemCount: trailer.problemCount,
    problemKinds: {},
    reportFile: null,
    durationMs: 0,
  }
}
