import {setMaxListeners} from 'node:events'
import {DatabaseConnectionError, type Db} from '../metadata/db.js'
import {InterruptedError, JobFailedError, RefusedError, RegopsError, UsageError, errorMessage} from '../errors.js'
import type {Logger} from '../output/logger.js'
import {boundOldGenerationGrowth} from '../v8-flags.js'
import {
  createJob,
  findJobByKey,
  finishJob,
  getJob,
  resumeJob,
  saveCheckpoint,
  startHeartbeat,
  type Job,
} from './store.js'
import {REQUEST_LISTENERS_PER_SIGNAL, stopSignalOf, timeBoxOf} from './signals.js'
import {TimeBoxError} from './time-box.js'
import {acquireJobLock, type HeldLock, type LockScope} from './lock.js'

export interface Shard {
  index: number
  count: number
}

export interface JobSpec {
  kind: string
  /**
   * A new job: its settings, stored with it. A resume: the settings this invocation states (undefined =
   * not stated); any that differ from the job's are refused, since a job runs with the settings it started with.
   */
  params: Record<string, unknown>
  shard?: Shard
  /** the id of a job to resume instead of starting one */
  resume?: string
  /**
   * The caller's name for the job (--job-key): the first run creates the job under it, a later one
   * resumes it (same checks as a resume, refused when they fail) or, when it is done, returns its result
   * without running anything. What makes an Argo retry continue rather than start over.
   */
  key?: string
  /**
   * What this invocation states, to compare with a keyed job that exists already, when it is not
   * `params` (a new import's generated group is not a statement). Undefined values are not stated.
   */
  stated?: Record<string, unknown>
  /** the region the run works on; stored with a new job, and a job of another region is not resumed */
  region: string
  /**
   * Aborted by SIGINT/SIGTERM (see signals.ts): the job ends 'interrupted', exit 130/143. Aborted by the
   * end of a time box (--max-duration, --window): the job ends 'interrupted' too, but the run is partial (exit 3).
   */
  signal?: AbortSignal
  logger: Logger
  /**
   * What the job must hold alone for its life (an acting job: its region and prefixes), given its shard.
   * Taken before the job is created or taken over, so a refused run leaves no trace.
   */
  lock?: (shard: Shard) => LockScope
}

export interface RunningJob<C> {
  /** null when the run keeps no job (no database: a dry-run) */
  id: string | null
  /** the job's settings: on a resume, those it was started with */
  params: Record<string, unknown>
  shard: Shard
  /** where a resumed job stopped; null for a new one */
  checkpoint: C | null
  /** aborted on a stop signal, and when the heartbeat is lost (another worker may take the job over) */
  signal: AbortSignal
  save(checkpoint: C, stats: unknown): Promise<void>
  /** what the job row shows if the run ends on an error or a signal */
  showStats(stats: () => unknown): void
}

export interface JobEnd<R> {
  result: R
  stats: unknown
  /** set when the run finished but some of its work failed: the job ends 'failed' (resumable) */
  failure?: string
}

/**
 * Runs `body` as a job: creates it, or resumes one after checking its kind, region and settings; keeps
 * its heartbeat; saves checkpoints; and finishes it done, failed or interrupted. Without a database the
 * body runs with no job (a dry-run), with the same signal handling. Errors: a regops error passes
 * through; a stop signal becomes InterruptedError (130/143); a bug (TypeError...) is rethrown as it is;
 * anything else (PostgreSQL, storage, network) becomes JobFailedError (exit 3, resumable). The job is
 * marked failed or interrupted in every case, when the database still answers.
 */
export async function runJob<C, R>(
  db: Db | undefined,
  spec: JobSpec,
  body: (job: RunningJob<C>) => Promise<JobEnd<R>>,
): Promise<R> {
  // before the job starts its worker threads, which take it too
  boundOldGenerationGrowth()
  if (!db) return runWithoutJob(spec, body)
  if (spec.key !== undefined && spec.resume !== undefined)
    throw new UsageError('--job-key and --resume do not go together: a key names the job to resume already')
  let resume = spec.resume
  if (spec.key !== undefined) {
    const keyed = await findJobByKey<C>(db, spec.key)
    if (keyed) {
      checkSameWork(keyed, spec, 'key')
      if (keyed.status === 'done') {
        spec.logger.info(`job ${keyed.id} with key '${spec.key}' is done: its result is returned, nothing is run`, {
          job: keyed.id,
        })
        if (keyed.result === null)
          throw new RefusedError(`job ${keyed.id} with key '${spec.key}' is done but kept no result to return`)
        return keyed.result as R
      }
      resume = keyed.id
      spec.logger.info(`job key '${spec.key}' names job ${keyed.id} (${keyed.status}): resuming it`, {job: keyed.id})
    }
  }
  let lock: HeldLock | undefined
  if (spec.lock) {
    const shard = resume
      ? await getJob(db, resume).then((found) => ({index: found.shardIndex, count: found.shardCount}))
      : (spec.shard ?? {index: 0, count: 1})
    lock = await acquireJobLock(db, spec.lock(shard))
  }
  let job: Job<C>
  try {
    job = resume
      ? await takeOver<C>(db, spec, resume, spec.key === undefined ? 'resume' : 'key')
      : ((await createJob(db, spec.kind, {...spec.params, region: spec.region}, spec.shard, spec.key)) as Job<C>)
  } catch (error) {
    await lock?.release()
    throw error
  }
  if (resume) spec.logger.info(`resuming ${spec.kind}`, {jobId: job.id})
  const controller = new AbortController()
  // the job's requests in flight share it (an import's repositories list and read at once)
  setMaxListeners(REQUEST_LISTENERS_PER_SIGNAL, controller.signal)
  lock?.onLost((reason) => {
    spec.logger.error('job lock lost: stopping so that no other worker acts beside this one', {
      jobId: job.id,
      error: reason.message,
    })
    controller.abort(reason)
  })
  const forwardStop = () => controller.abort(spec.signal!.reason)
  if (spec.signal?.aborted) forwardStop()
  else spec.signal?.addEventListener('abort', forwardStop, {once: true})
  const stopHeartbeat = startHeartbeat(db, job.id, (reason) => {
    spec.logger.error('heartbeat lost: stopping so that no other worker acts beside this one', {
      jobId: job.id,
      error: reason.message,
    })
    controller.abort(reason)
  })
  let stats: () => unknown = () => job.stats
  const finish = async (status: 'failed' | 'interrupted', error?: string) => {
    await finishJob(db, job.id, status, stats(), error).catch((failure: unknown) =>
      spec.logger.warn(`could not mark job ${job.id} ${status}`, {jobId: job.id, error: errorMessage(failure)}),
    )
  }
  try {
    const end = await body({
      id: job.id,
      params: job.params,
      shard: {index: job.shardIndex, count: job.shardCount},
      checkpoint: job.checkpoint,
      signal: controller.signal,
      save: (checkpoint, latest) => saveCheckpoint(db, job.id, checkpoint, latest),
      showStats: (fn) => (stats = fn),
    })
    stats = () => end.stats
    await finishJob(
      db,
      job.id,
      end.failure ? 'failed' : 'done',
      end.stats,
      end.failure,
      end.failure ? undefined : end.result,
    )
    return end.result
  } catch (error) {
    const stop = stopSignalOf(spec.signal)
    if (stop) {
      await finish('interrupted')
      throw new InterruptedError(stop, job.id)
    }
    const timeBox = timeBoxOf(spec.signal)
    if (timeBox) {
      await finish('interrupted', timeBox.message)
      throw new TimeBoxError(timeBox, {id: job.id, key: spec.key})
    }
    // A lost heartbeat aborts the body, which then throws whatever the abort reached first: report the cause.
    const cause = controller.signal.aborted ? controller.signal.reason : error
    await finish('failed', errorMessage(cause))
    // Losing the database mid-job is not "nothing was done" (that error's exit 2): the job is partial.
    if ((cause instanceof RegopsError && !(cause instanceof DatabaseConnectionError)) || isBug(cause)) throw cause
    throw new JobFailedError(job.id, cause)
  } finally {
    stopHeartbeat()
    spec.signal?.removeEventListener('abort', forwardStop)
    await lock?.release()
  }
}

async function runWithoutJob<C, R>(spec: JobSpec, body: (job: RunningJob<C>) => Promise<JobEnd<R>>): Promise<R> {
  if (spec.resume)
    throw new UsageError(
      '--resume needs the database that holds the job (database.url, DATABASE_URL or --database-url)',
    )
  // A run without a database keeps no job (a dry-run): running it again is its retry.
  if (spec.key !== undefined)
    spec.logger.info(`no job is kept without a database: --job-key ${spec.key} has nothing to resume`)
  const signal = spec.signal ?? new AbortController().signal
  try {
    const end = await body({
      id: null,
      params: {...spec.params, region: spec.region},
      shard: spec.shard ?? {index: 0, count: 1},
      checkpoint: null,
      signal,
      save: async () => {},
      showStats: () => {},
    })
    return end.result
  } catch (error) {
    const stop = stopSignalOf(spec.signal)
    if (stop) throw new InterruptedError(stop)
    const timeBox = timeBoxOf(spec.signal)
    if (timeBox) throw new TimeBoxError(timeBox)
    throw error
  }
}

/**
 * Checks a job before taking it over: the kind, the region and the stated settings must match. A
 * mismatch leaves the job as it was (it is still someone's to resume correctly): a usage error after
 * --resume, a refusal after --job-key (the key names work already started with other settings).
 */
async function takeOver<C>(db: Db, spec: JobSpec, id: string, by: 'resume' | 'key'): Promise<Job<C>> {
  checkSameWork(await getJob(db, id), spec, by)
  return resumeJob<C>(db, id, spec.kind)
}

/** Refuses a job of another kind, region or settings than this invocation states. */
function checkSameWork(found: Job<unknown>, spec: JobSpec, by: 'resume' | 'key'): void {
  const fail = (message: string, options?: {hint?: string; details?: Record<string, unknown>}) =>
    by === 'key'
      ? new RefusedError(`job key '${spec.key}' names job ${found.id}, which ${message.replace(/^job \d+ /, '')}`, {
          ...options,
          hint: 'use another --job-key for other work, or run with the settings the job started with',
        })
      : new UsageError(message, options)
  if (found.kind !== spec.kind) throw fail(`job ${found.id} is a ${found.kind} job, not ${spec.kind}`)
  const region = found.params.region
  if (region !== undefined && region !== spec.region) {
    throw fail(`job ${found.id} ran on region '${String(region)}', not '${spec.region}'`, {
      hint: `pass --region ${String(region)}`,
    })
  }
  // A keyed run states everything it would start a job with, its shard included (none stated: the whole).
  const shard = by === 'key' ? (spec.shard ?? {index: 0, count: 1}) : spec.shard
  const settings = (by === 'key' ? spec.stated : undefined) ?? spec.params
  const stated = shard ? {...settings, shard} : settings
  const differing = differingParams(
    {...found.params, shard: {index: found.shardIndex, count: found.shardCount}},
    stated,
  )
  if (differing.length > 0) {
    const named = differing.map((d) => `${d.name} (job: ${d.job}, given: ${d.given})`).join(', ')
    throw fail(`job ${found.id} runs with the settings it started with; this invocation differs in ${named}`, {
      hint: `leave those out of --resume ${found.id}, or start a new job`,
      details: {differing},
    })
  }
}

export interface DifferingParam {
  name: string
  job: string
  given: string
}

/** The stated settings (undefined = not stated) whose value differs from the job's, in the order stated. */
export function differingParams(job: Record<string, unknown>, stated: Record<string, unknown>): DifferingParam[] {
  const differing: DifferingParam[] = []
  for (const [name, given] of Object.entries(stated)) {
    if (given === undefined) continue
    const held = job[name]
    if (canonical(held) !== canonical(given))
      differing.push({name, job: held === undefined ? '(not set)' : canonical(held), given: canonical(given)})
  }
  return differing
}

/** JSON with object keys sorted, so that settings compare by value whatever order they were written in. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  )
}

/**
 * Errors that mean a mistake in regops' own code. Everything else that reaches the runner comes from
 * what the job talks to (PostgreSQL, storage, the network, local files), which a resume can get past.
 * fetch reports a network failure as a TypeError with the system error as its cause: that one is not a bug.
 */
export function isBug(error: unknown): boolean {
  if (error instanceof TypeError)
    return !(error.cause instanceof Error && typeof (error.cause as {code?: unknown}).code === 'string')
  return (
    error instanceof RangeError ||
    error instanceof ReferenceError ||
    error instanceof SyntaxError ||
    error instanceof EvalError ||
    error instanceof URIError ||
    (error instanceof Error && (error as {code?: unknown}).code === 'ERR_ASSERTION')
  )
}
