import {createWriteStream, type WriteStream} from 'node:fs'
import {mkdir} from 'node:fs/promises'
import {dirname} from 'node:path'
import {once} from 'node:events'
import type {Db} from '../metadata/db.js'
import {createJob, finishJob, getJob, resumeJob, saveCheckpoint, startHeartbeat, type Job} from '../metadata/jobs.js'
import {InterruptedError, RefusedError, UsageError, errorMessage} from '../errors.js'
import type {Logger} from '../output/logger.js'
import type {StorageDriver} from '../storage/driver.js'
import type {RegionConfig} from '../config/config.js'
import {parseKey, pathFor, quarantineKey, shardsFor, tagsPrefix} from '../storage/layout.js'
import {listTags, problemOf, readRevision, type Problem} from '../storage/repositories.js'
import {markFromStorage, type UntaggedManifest} from './mark-storage.js'
import {referencedAmong, referencedDigestsFromDb} from './references.js'
import {MarkSpill, ShardLines} from './spill.js'
import {enumerateBlobs, enumerateBlobsInWorker, parseListedBlob} from './enumerate.js'
import {journalIntents, journalOutcome, unfinishedIntents, type JournalAction} from './journal.js'

export type SweepStrategy = 'storage' | 'metadata'
export type SweepMode = 'dry-run' | 'delete' | 'quarantine'

/** Clock skew allowed between this host and the storage's clock when comparing lastModified. */
const CLOCK_SKEW_MS = 5 * 60_000
const MAX_PROBLEMS_IN_RESULT = 100

export interface SweepBlobsOptions {
  driver: StorageDriver
  /** the driver's region configuration: lets a filesystem listing run on a worker thread */
  region?: RegionConfig
  db?: Db
  strategy: SweepStrategy
  mode: SweepMode
  minAgeMs: number
  force?: boolean
  deleteUntagged?: boolean
  maxDeletes?: number
  maxBytes?: number
  shard?: {index: number; count: number}
  resumeJobId?: string
  reportFile?: string
  quarantinePrefix: string
  concurrency?: number
  batchSize?: number
  logger: Logger
  signal?: AbortSignal
  onProgress?: (progress: SweepProgress) => void
  /** metadata strategy: the registry itself keeps the database current (no storage re-walk needed) */
  metadataAuthoritative?: boolean
  /** for tests: the instant the sweep takes as now */
  now?: Date
}

export interface SweepProgress {
  phase: 'mark' | 'plan' | 'act'
  shardsDone: number
  shards: number
  scanned: number
  candidates: number
  acted: number
  elapsedMs: number
}

export interface SweepCandidate {
  kind: 'blob' | 'manifest'
  digest: string
  key: string
  size: number
  lastModified: string
  repository?: string
  reason: 'unreferenced' | 'untagged'
}

export interface SweepBlobsResult {
  kind: 'sweep-blobs'
  jobId: string | null
  region: string
  strategy: SweepStrategy
  mode: SweepMode
  cutoff: string
  shards: {index: number; count: number; prefixes: number}
  markComplete: boolean
  marked: {repositories: number; manifests: number; youngLinks: number}
  scanned: {blobs: number; bytes: number}
  referenced: number
  tooYoung: {count: number; bytes: number}
  candidates: {count: number; bytes: number; manifests: number}
  acted: {deleted: number; quarantined: number; manifestsDeleted: number; bytes: number; failed: number}
  skipped: {referencedAgain: number; changed: number; gone: number}
  problems: Problem[]
  problemCount: number
  reportFile: string | null
  durationMs: number
}

interface SweepCheckpoint {
  phase: 'plan' | 'act'
  markStart: string
  cutoff: string
  planned: string[]
  result?: Partial<SweepBlobsResult>
}

/**
 * The orphaned-blob sweep (design §6). Dry-run unless mode says otherwise. A blob is acted on only if
 * it is unreferenced, older than the cutoff (and so is every link to it), still unreferenced and
 * unchanged when re-checked just before its batch, and its intent is journaled first.
 */
export async function sweepBlobs(opts: SweepBlobsOptions): Promise<SweepBlobsResult> {
  const started = performance.now()
  const {driver, db, logger} = opts
  const shard = opts.shard ?? {index: 0, count: 1}
  let job: Job<SweepCheckpoint> | undefined
  let checkpoint: SweepCheckpoint | null = null
  if (opts.resumeJobId) {
    if (!db) throw new UsageError('--resume needs the database that holds the job')
    const found = await getJob<SweepCheckpoint>(db, opts.resumeJobId)
    if (found.params.region !== undefined && found.params.region !== driver.region) {
      throw new UsageError(`job ${found.id} swept region '${String(found.params.region)}', not '${driver.region}': pass --region ${String(found.params.region)}`)
    }
    job = await resumeJob<SweepCheckpoint>(db, opts.resumeJobId, 'sweep-blobs')
    checkpoint = job.checkpoint
    // A resumed job runs with the settings it was started with, not with this invocation's flags.
    opts = {...opts, ...pickResumable(job.params)}
    logger.info('resuming sweep', {job: job.id, phase: checkpoint?.phase ?? 'plan', mode: opts.mode})
  }
  const acting = opts.mode !== 'dry-run'
  if (opts.minAgeMs < 3_600_000 && !opts.force) {
    throw new RefusedError(`--min-age below 1h is unsafe on a live registry (pushes in flight): pass --force to accept it`)
  }
  if (opts.strategy === 'metadata' && !db) throw new UsageError('--strategy metadata needs a database (database.url or DATABASE_URL)')
  if (acting && !db) throw new UsageError(`--${opts.mode} needs a database: the journal and the checkpoint live in PostgreSQL`)
  if (opts.strategy === 'metadata' && opts.deleteUntagged) throw new UsageError('--delete-untagged works with --strategy storage only')
  if (!job && db && acting) job = (await createJob(db, 'sweep-blobs', resumableParams(opts), shard)) as unknown as Job<SweepCheckpoint>
  const stopHeartbeat = db && job ? startHeartbeat(db, job.id) : () => {}

  const now = opts.now ?? new Date()
  const markStart = checkpoint ? new Date(checkpoint.markStart) : now
  const cutoff = checkpoint ? new Date(checkpoint.cutoff) : new Date(now.getTime() - opts.minAgeMs)
  const shards = shardsFor(job?.shardIndex ?? shard.index, job?.shardCount ?? shard.count)
  const result: SweepBlobsResult = {
    kind: 'sweep-blobs',
    jobId: job?.id ?? null,
    region: driver.region,
    strategy: opts.strategy,
    mode: opts.mode,
    cutoff: cutoff.toISOString(),
    shards: {index: job?.shardIndex ?? shard.index, count: job?.shardCount ?? shard.count, prefixes: shards.length},
    markComplete: true,
    marked: {repositories: 0, manifests: 0, youngLinks: 0},
    scanned: {blobs: 0, bytes: 0},
    referenced: 0,
    tooYoung: {count: 0, bytes: 0},
    candidates: {count: 0, bytes: 0, manifests: 0},
    acted: {deleted: 0, quarantined: 0, manifestsDeleted: 0, bytes: 0, failed: 0},
    skipped: {referencedAgain: 0, changed: 0, gone: 0},
    problems: [],
    problemCount: 0,
    reportFile: opts.reportFile ?? null,
    durationMs: 0,
    ...(checkpoint?.result ?? {}),
  }
  const onProblem = (problem: Problem) => {
    result.problemCount++
    if (result.problems.length < MAX_PROBLEMS_IN_RESULT) result.problems.push(problem)
    logger.warn(problem.message, {problem: problem.kind, key: problem.key})
  }
  const progress = (phase: SweepProgress['phase'], shardsDone: number) =>
    opts.onProgress?.({
      phase,
      shardsDone,
      shards: shards.length,
      scanned: result.scanned.blobs,
      candidates: result.candidates.count,
      acted: result.acted.deleted + result.acted.quarantined,
      elapsedMs: performance.now() - started,
    })

  try {
    if (checkpoint?.phase !== 'act') {
      await planSweep({...opts, shards, cutoff, markStart, job, checkpoint, result, onProblem, progress})
      if (!result.markComplete) {
        if (acting) {
          throw new RefusedError(
            `the mark is incomplete (${result.problemCount} problem(s), e.g. ${result.problems[0]?.kind} at ${result.problems[0]?.key}): ` +
              `what those manifests reference is unknown, so nothing was ${opts.mode === 'delete' ? 'deleted' : 'quarantined'}`,
            {hint: 'fix or remove the objects named in problems, then run again; a dry-run lists them', details: {problems: result.problems.slice(0, 10)}},
          )
        }
      }
      if (acting && db && job) {
        const over =
          opts.maxDeletes !== undefined && result.candidates.count > opts.maxDeletes
            ? `${result.candidates.count} candidates exceed --max-deletes ${opts.maxDeletes}`
            : opts.maxBytes !== undefined && result.candidates.bytes > opts.maxBytes
              ? `${result.candidates.bytes} candidate bytes exceed --max-bytes ${opts.maxBytes}`
              : undefined
        if (over) throw new RefusedError(`${over}: nothing was acted on`, {hint: 'check the dry-run report; raise the cap only if the finding is expected'})
        await saveCheckpoint(db, job.id, {phase: 'act', markStart: markStart.toISOString(), cutoff: cutoff.toISOString(), planned: shards, result: snapshot(result)}, snapshot(result))
      }
    }
    if (acting && db && job) await actSweep({...opts, db, job, cutoff, markStart, result, onProblem, progress})
    result.durationMs = Math.round(performance.now() - started)
    if (db && job) await finishJob(db, job.id, result.acted.failed > 0 ? 'failed' : 'done', snapshot(result), result.acted.failed > 0 ? `${result.acted.failed} action(s) failed` : undefined)
    return result
  } catch (error) {
    result.durationMs = Math.round(performance.now() - started)
    if (db && job) {
      if (opts.signal?.aborted) await finishJob(db, job.id, 'interrupted', snapshot(result)).catch(() => {})
      else await finishJob(db, job.id, 'failed', snapshot(result), errorMessage(error)).catch(() => {})
    }
    if (opts.signal?.aborted) {
      const reason = String((opts.signal.reason as Error | undefined)?.message ?? '')
      throw new InterruptedError(reason.includes('SIGTERM') ? 'SIGTERM' : 'SIGINT', job?.id)
    }
    throw error
  } finally {
    stopHeartbeat()
  }
}

const RESUMABLE_KEYS = ['strategy', 'mode', 'minAgeMs', 'force', 'deleteUntagged', 'maxDeletes', 'maxBytes', 'quarantinePrefix', 'metadataAuthoritative'] as const

function resumableParams(opts: SweepBlobsOptions): Record<string, unknown> {
  const params: Record<string, unknown> = {region: opts.driver.region}
  for (const key of RESUMABLE_KEYS) if (opts[key] !== undefined) params[key] = opts[key]
  return params
}

function pickResumable(params: Record<string, unknown>): Partial<SweepBlobsOptions> {
  const picked: Record<string, unknown> = {}
  for (const key of RESUMABLE_KEYS) if (params[key] !== undefined) picked[key] = params[key]
  return picked as Partial<SweepBlobsOptions>
}

function snapshot(result: SweepBlobsResult): Partial<SweepBlobsResult> {
  const {problems: _problems, ...rest} = result
  return rest
}

interface PlanContext extends SweepBlobsOptions {
  shards: string[]
  cutoff: Date
  markStart: Date
  job?: Job<SweepCheckpoint>
  checkpoint: SweepCheckpoint | null
  result: SweepBlobsResult
  onProblem: (p: Problem) => void
  progress: (phase: SweepProgress['phase'], shardsDone: number) => void
}

async function planSweep(ctx: PlanContext): Promise<void> {
  const {driver, db, result, logger} = ctx
  const concurrency = ctx.concurrency ?? 32
  // A resumed plan keeps the candidates of the prefixes it finished (the act phase re-checks each one
  // against everything written since the original start) and redoes the others.
  const planned = new Set(ctx.checkpoint?.planned ?? [])
  const todo = ctx.shards.filter((shard) => !planned.has(shard))
  const files = ShardLines.create(todo, 'sweep')
  const marks = new MarkSpill(files)
  const listing = files.sibling('.blobs')
  const report = await openReport(ctx.reportFile)
  try {
    let untagged: UntaggedManifest[] = []
    let delta: Set<string> | undefined
    ctx.progress('mark', 0)
    const markProblem = (problem: Problem) => {
      result.markComplete = false
      ctx.onProblem(problem)
    }
    const mark = async () => {
      if (ctx.strategy === 'storage') {
        const marked = await markFromStorage(driver, {
          cutoff: ctx.cutoff,
          deleteUntagged: ctx.deleteUntagged,
          concurrency,
          signal: ctx.signal,
          mark: (digest) => marks.add(digest),
          onProblem: markProblem,
        })
        marks.lines.flushAll()
        result.marked = {repositories: marked.repositories, manifests: marked.manifests, youngLinks: marked.youngLinks}
        untagged = marked.untagged
        logger.debug('mark done', {repositories: marked.repositories, manifests: marked.manifests, marks: marks.count})
      } else if (!ctx.metadataAuthoritative) {
        // The database knows what was imported; storage may have changed since. Re-walk what is newer.
        const since = await lastImportStart(db!)
        if (!since) {
          throw new RefusedError('no finished import in this database: --strategy metadata would miss every reference', {
            hint: 'run regops import first, or pass --metadata-authoritative if the registry itself writes this database',
          })
        }
        delta = new Set()
        const marked = await markFromStorage(driver, {
          cutoff: ctx.cutoff,
          since: new Date(Math.min(since.getTime(), ctx.markStart.getTime()) - CLOCK_SKEW_MS),
          concurrency,
          signal: ctx.signal,
          mark: (digest) => delta!.add(digest),
          onProblem: markProblem,
        })
        result.marked = {repositories: marked.repositories, manifests: marked.manifests, youngLinks: marked.youngLinks}
      }
    }
    // The blob listing runs while the mark does (on a second thread for a filesystem region). Listing
    // first is the safe order anyway: a blob that appears later is not a candidate of this run.
    const listingOptions = {concurrency, signal: ctx.signal, onProblem: ctx.onProblem}
    const [, enumerated] = await Promise.all([
      mark(),
      driver.kind === 'file' && ctx.region && todo.length > 0
        ? enumerateBlobsInWorker(ctx.region, todo, listing, listingOptions)
        : enumerateBlobs(driver, todo, listing, listingOptions),
    ])
    logger.debug('listing done', {prefixes: enumerated.completed.length})
    const listed = new Set(enumerated.completed)
    if (enumerated.failed) result.markComplete = false

    if (db && ctx.job) {
      await db.query(
        `DELETE FROM regops_sweep_candidates WHERE job_id = $1 AND state = 'pending'
           AND (kind = 'manifest' OR NOT (substring(digest from 8 for 2) = ANY($2::text[])))`,
        [ctx.job.id, [...planned]],
      )
    }
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
      result.candidates.manifests++
      report?.write(JSON.stringify(candidate) + '\n')
      if (db && ctx.job) await insertCandidates(db, ctx.job.id, [candidate])
    }

    let checkpointing = Promise.resolve()
    let done = ctx.shards.length - todo.length
    ctx.progress('plan', done)
    for (const shard of todo) {
      ctx.signal?.throwIfAborted()
      // A prefix whose listing did not finish: unknown, so no checkpoint (and acting is refused).
      if (!listed.has(shard)) continue
      const refs = ctx.strategy === 'storage' ? await marks.read(shard) : await referencedDigestsFromDb(db!, shard)
      const candidates: SweepCandidate[] = []
      let i = 0
      for (const line of await listing.read(shard)) {
        const blob = parseListedBlob(line)
        const digest = `sha256:${blob.hex}`
        result.scanned.blobs++
        result.scanned.bytes += blob.size
        while (i < refs.length && refs[i] < digest) i++
        if ((i < refs.length && refs[i] === digest) || delta?.has(digest)) {
          result.referenced++
          continue
        }
        if (blob.lastModified >= ctx.cutoff.getTime()) {
          result.tooYoung.count++
          result.tooYoung.bytes += blob.size
          continue
        }
        candidates.push({kind: 'blob', digest, key: pathFor({kind: 'blob-data', digest}), size: blob.size, lastModified: new Date(blob.lastModified).toISOString(), reason: 'unreferenced'})
      }
      for (const c of candidates) {
        result.candidates.count++
        result.candidates.bytes += c.size
        // Respect the file's backpressure: millions of candidates must not pile up in memory.
        if (report && !report.write(JSON.stringify(c) + '\n')) await once(report, 'drain')
      }
      if (db && ctx.job) await insertCandidates(db, ctx.job.id, candidates)
      planned.add(shard)
      if (db && ctx.job) {
        const state = {phase: 'plan', markStart: ctx.markStart.toISOString(), cutoff: ctx.cutoff.toISOString(), planned: [...planned], result: snapshot(result)}
        checkpointing = checkpointing.then(() => saveCheckpoint(db, ctx.job!.id, state, state.result))
      }
      ctx.progress('plan', ++done)
    }
    await checkpointing
  } finally {
    await closeReport(report)
    await files.dispose()
  }
}

/**
 * The earliest start of the latest complete import: the import jobs sharing params.group, every shard
 * 0..n-1 of them done, none limited to some repositories (params.complete). A group with a shard
 * missing, failed or running, or an import of a few repositories, does not count: the database would
 * lack references.
 */
async function lastImportStart(db: Db): Promise<Date | undefined> {
  const result = await db.query<{started_at: Date}>(
    `SELECT min(started_at) AS started_at FROM regops_jobs
      WHERE kind = 'import' AND status = 'done' AND params ? 'group' AND coalesce(params->>'complete', 'true') = 'true'
      GROUP BY params->>'group', shard_count
     HAVING count(DISTINCT shard_index) = shard_count
      ORDER BY max(finished_at) DESC LIMIT 1`,
  )
  return result.rows[0]?.started_at ?? undefined
}

async function openReport(file: string | undefined): Promise<WriteStream | undefined> {
  if (!file) return undefined
  try {
    await mkdir(dirname(file), {recursive: true})
  } catch (error) {
    throw new UsageError(`cannot create the report directory for ${file}: ${errorMessage(error)}`)
  }
  const stream = createWriteStream(file, {flags: 'w'})
  await Promise.race([
    once(stream, 'open'),
    once(stream, 'error').then(([error]) => {
      throw new UsageError(`cannot write the report ${file}: ${errorMessage(error)}`)
    }),
  ])
  return stream
}

async function closeReport(stream: WriteStream | undefined): Promise<void> {
  if (!stream) return
  stream.end()
  await once(stream, 'close')
}

async function insertCandidates(db: Db, jobId: string, candidates: SweepCandidate[]): Promise<void> {
  for (let i = 0; i < candidates.length; i += 1000) {
    const batch = candidates.slice(i, i + 1000)
    await db.query(
      `INSERT INTO regops_sweep_candidates (job_id, kind, digest, repository, key, size, last_modified)
       SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::timestamptz[])
       ON CONFLICT DO NOTHING`,
      [
        jobId,
        batch.map((c) => c.kind),
        batch.map((c) => c.digest),
        batch.map((c) => c.repository ?? null),
        batch.map((c) => c.key),
        batch.map((c) => c.size),
        batch.map((c) => c.lastModified),
      ],
    )
  }
}

interface CandidateRow {
  kind: 'blob' | 'manifest'
  digest: string
  repository: string | null
  key: string
  size: string
  last_modified: Date
}

interface ActContext extends SweepBlobsOptions {
  db: Db
  job: Job<SweepCheckpoint>
  cutoff: Date
  markStart: Date
  result: SweepBlobsResult
  onProblem: (p: Problem) => void
  progress: (phase: SweepProgress['phase'], shardsDone: number) => void
}

function actionOf(ctx: ActContext, kind: 'blob' | 'manifest'): JournalAction {
  if (kind === 'manifest') return 'delete-manifest'
  return ctx.mode === 'quarantine' ? 'quarantine' : 'delete'
}

async function actSweep(ctx: ActContext): Promise<void> {
  const {db, job, driver, result} = ctx
  await recoverUnfinished(ctx)
  const batchSize = ctx.batchSize ?? 500
  for (const kind of ['manifest', 'blob'] as const) {
    for (;;) {
      ctx.signal?.throwIfAborted()
      const rows = (
        await db.query<CandidateRow>(
          `SELECT kind, digest, repository, key, size, last_modified FROM regops_sweep_candidates
           WHERE job_id = $1 AND kind = $2 AND state = 'pending' ORDER BY digest, key LIMIT $3`,
          [job.id, kind, batchSize],
        )
      ).rows
      if (rows.length === 0) break
      const keep = kind === 'blob' ? await recheckReferences(ctx, rows.map((r) => r.digest)) : new Set<string>()
      // Blob re-checks are independent stats: in parallel (the driver caps requests in flight), not
      // one round trip after another. Manifest re-checks read tags and are rare: one at a time.
      const skips: Array<string | undefined> = []
      if (kind === 'blob') skips.push(...(await Promise.all(rows.map((row) => recheckBlob(ctx, row, keep)))))
      else for (const row of rows) skips.push(await recheckManifest(ctx, row))
      const go: CandidateRow[] = []
      for (const [i, row] of rows.entries()) {
        const skip = skips[i]
        if (skip) {
          await db.query(`UPDATE regops_sweep_candidates SET state = 'skipped', note = $4 WHERE job_id = $1 AND kind = $2 AND key = $3`, [job.id, kind, row.key, skip])
          if (skip === 'gone') result.skipped.gone++
          else if (skip === 'changed') result.skipped.changed++
          else result.skipped.referencedAgain++
          if (kind === 'manifest') await protectReferencesOf(ctx, row)
        } else go.push(row)
      }
      if (go.length === 0) continue
      const action = actionOf(ctx, kind)
      const intents = await journalIntents(
        db,
        job.id,
        go.map((row) => ({
          action,
          region: driver.region,
          key: row.key,
          digest: row.digest,
          size: Number(row.size),
          detail: action === 'quarantine' ? {quarantineKey: quarantineKey(ctx.quarantinePrefix, row.digest)} : row.repository ? {repository: row.repository} : {},
        })),
      )
      // Deletes go to storage as one batched request (S3 DeleteObjects takes 1,000 keys); each outcome is
      // still journaled per object.
      const deleted = action === 'delete' ? await driver.deleteMany(go.map((row) => row.key)) : undefined
      const deleteErrors = new Map((deleted?.errors ?? []).map((e) => [e.key, e.message]))
      await Promise.all(go.map((row, i) => performAndRecord(ctx, row, action, intents[i], deleted ? deleteErrors.get(row.key) ?? null : undefined)))
      ctx.progress('act', 0)
    }
  }
}

/** Marks found by re-walking what changed in storage since the mark, and (metadata) by re-querying. */
async function recheckReferences(ctx: ActContext, digests: string[]): Promise<Set<string>> {
  const keep = new Set<string>()
  if (ctx.strategy === 'metadata') for (const d of await referencedAmong(ctx.db, digests)) keep.add(d)
  if (ctx.strategy === 'storage' || !ctx.metadataAuthoritative) {
    const wanted = new Set(digests)
    await markFromStorage(ctx.driver, {
      cutoff: ctx.cutoff,
      // What may have appeared since the mark listed it. Never earlier than the cutoff: links older than
      // that were seen by the mark, and an operator who forced --min-age 0 gets what was before the start.
      since: new Date(Math.max(ctx.cutoff.getTime(), ctx.markStart.getTime() - CLOCK_SKEW_MS)),
      concurrency: ctx.concurrency ?? 32,
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
  const info = await ctx.driver.stat(row.key)
  if (!info) return 'gone'
  if (info.lastModified >= ctx.cutoff) return 'changed'
  const problems: Problem[] = []
  const tags = await listTags(ctx.driver, row.repository!, (p) => problems.push(p))
  if (problems.length > 0 || tags.some((t) => t.digest === row.digest)) return 'referenced again'
  // Tagged indexes of the repository that (now) list it as a child keep it.
  for (const tag of tags) {
    if (!tag.digest) continue
    const read = await readRevision(ctx.driver, row.repository!, {digest: tag.digest, key: pathFor({kind: 'manifest-revision-link', repository: row.repository!, digest: tag.digest}), lastModified: new Date()}, {verifyLink: false})
    if (read.manifest?.manifests.some((c) => c.digest === row.digest)) return 'referenced again'
  }
  return undefined
}

/** A manifest kept at the last moment keeps what it references too. */
async function protectReferencesOf(ctx: ActContext, row: CandidateRow): Promise<void> {
  const read = await readRevision(ctx.driver, row.repository!, {digest: row.digest, key: row.key, lastModified: row.last_modified}, {verifyLink: false})
  const protect = [row.digest, ...(read.manifest?.references ?? [])]
  await ctx.db.query(
    `UPDATE regops_sweep_candidates SET state = 'skipped', note = 'referenced by a kept manifest'
     WHERE job_id = $1 AND kind = 'blob' AND state = 'pending' AND digest = ANY($2::text[])`,
    [ctx.job.id, protect],
  )
  if (read.problems.length > 0) {
    throw new RefusedError(`manifest ${row.digest} in ${row.repository} was kept but cannot be read: its references are unknown; stopping before any blob is touched`)
  }
}

/** `deleteError`: for a delete already sent in a batch, null when it succeeded or its error message. */
async function performAndRecord(ctx: ActContext, row: CandidateRow, action: JournalAction, intentId: string, deleteError?: string | null): Promise<void> {
  const {db, job, driver, result} = ctx
  try {
    if (action === 'delete-manifest') await deleteManifestLinks(driver, row.repository!, row.digest, row.key)
    else if (action === 'quarantine') await quarantineBlob(driver, row.key, quarantineKey(ctx.quarantinePrefix, row.digest))
    else if (deleteError) throw new Error(deleteError)
    else if (deleteError === undefined) {
      const outcome = await driver.deleteMany([row.key])
      if (outcome.errors.length > 0) throw new Error(outcome.errors[0].message)
    }
    await journalOutcome(db, job.id, intentId, 'done', {}, {kind: row.kind, key: row.key, state: 'done'})
    if (action === 'delete-manifest') result.acted.manifestsDeleted++
    else {
      if (action === 'quarantine') result.acted.quarantined++
      else result.acted.deleted++
      result.acted.bytes += Number(row.size)
    }
  } catch (error) {
    result.acted.failed++
    ctx.onProblem(problemOf(error, 'storage-error', row.key, {digest: row.digest}))
    await journalOutcome(db, job.id, intentId, 'failed', {error: errorMessage(error)}, {kind: row.kind, key: row.key, state: 'failed'})
  }
}

export async function quarantineBlob(driver: StorageDriver, key: string, qKey: string): Promise<void> {
  const source = await driver.stat(key)
  if (source) {
    await driver.copy(key, qKey)
    const copy = await driver.stat(qKey)
    if (!copy || copy.size !== source.size) throw new Error(`quarantine copy ${qKey} is not complete; the blob was left in place`)
    const outcome = await driver.deleteMany([key])
    if (outcome.errors.length > 0) throw new Error(outcome.errors[0].message)
    return
  }
  // Already moved (a resumed action): the quarantine copy must exist.
  if (!(await driver.stat(qKey))) throw new Error(`neither ${key} nor its quarantine copy exists`)
}

/** Removes an untagged manifest from a repository the way distribution does: its revision link and tag index entries. */
async function deleteManifestLinks(driver: StorageDriver, repository: string, digest: string, revisionKey: string): Promise<void> {
  const keys = [revisionKey]
  for await (const object of driver.list(tagsPrefix(repository))) {
    try {
      const spec = parseKey(object.key)
      if (spec.kind === 'tag-index-link' && spec.digest === digest) keys.push(object.key)
    } catch {
      // not ours to judge here; the sweep's walk reported it
    }
  }
  const outcome = await driver.deleteMany(keys)
  if (outcome.errors.length > 0) throw new Error(outcome.errors[0].message)
}

/** Finishes actions whose intent was journaled but whose outcome was not (the process died in between). */
async function recoverUnfinished(ctx: ActContext): Promise<void> {
  const {db, job, driver, result} = ctx
  for (const intent of await unfinishedIntents(db, job.id)) {
    const kind = intent.action === 'delete-manifest' ? 'manifest' : 'blob'
    try {
      if (intent.action === 'delete') {
        const outcome = await driver.deleteMany([intent.key])
        if (outcome.errors.length > 0) throw new Error(outcome.errors[0].message)
        result.acted.deleted++
        result.acted.bytes += intent.size ?? 0
      } else if (intent.action === 'quarantine') {
        await quarantineBlob(driver, intent.key, String(intent.detail.quarantineKey))
        result.acted.quarantined++
        result.acted.bytes += intent.size ?? 0
      } else if (intent.action === 'delete-manifest') {
        await deleteManifestLinks(driver, String(intent.detail.repository), intent.digest!, intent.key)
        result.acted.manifestsDeleted++
      }
      await journalOutcome(db, job.id, intent.id, 'done', {recovered: true}, {kind, key: intent.key, state: 'done'})
    } catch (error) {
      result.acted.failed++
      await journalOutcome(db, job.id, intent.id, 'failed', {recovered: true, error: errorMessage(error)}, {kind, key: intent.key, state: 'failed'})
    }
  }
}
