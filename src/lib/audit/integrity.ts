import {randomUUID} from 'node:crypto'
import type {Db} from '../metadata/db.js'
import {errorMessage} from '../errors.js'
import {runJob, type Shard} from '../jobs/runner.js'
import type {Logger} from '../output/logger.js'
import type {StorageDriver} from '../storage/driver.js'
import {parseKey, shardsFor} from '../storage/layout.js'
import {corruptionBound} from './classify.js'
import {FindingsSink, type AuditProblem, type Finding, type FindingCounts} from './findings.js'
import {blobPrefix} from './sources.js'
import {Bounded, blobVerifies, sampler} from './verify.js'

export const AUDIT_INTEGRITY_KIND = 'audit-integrity'
const MAX_PROBLEMS_IN_RESULT = 100

export interface AuditIntegrityOptions {
  driver: StorageDriver
  db?: Db
  /** the fraction of blobs to re-hash (1: all) */
  sample: number
  findingsFile?: string
  shard?: Shard
  resume?: string
  /** --job-key: a re-run with the same key resumes the job, or returns its result when done */
  jobKey?: string
  concurrency: number
  logger: Logger
  signal?: AbortSignal
}

export interface AuditIntegrityResult {
  kind: 'audit-integrity'
  jobId: string | null
  region: string
  shard: Shard
  scanned: number
  checked: number
  corrupt: number
  sampleFraction: number
  bound95: number
  statement: string
  findings: {total: number; byRegion: FindingCounts; file?: string; first: Finding[]}
  problems: AuditProblem[]
  problemCount: number
  durationMs: number
}

interface IntegrityCheckpoint {
  prefixesDone: number
  scanned: number
  checked: number
  corrupt: number
  problemCount: number
  counts: FindingCounts
  sampleSeed: string
}

/** The scrub: re-hashes a region's blobs (all, or a sampled fraction) against the digest in their key. */
export async function auditIntegrity(opts: AuditIntegrityOptions): Promise<AuditIntegrityResult> {
  const started = performance.now()
  const region = opts.driver.region
  return runJob<IntegrityCheckpoint, AuditIntegrityResult>(
    opts.db,
    {
      kind: AUDIT_INTEGRITY_KIND,
      params: {sample: opts.sample},
      shard: opts.shard,
      resume: opts.resume,
      key: opts.jobKey,
      region,
      signal: opts.signal,
      logger: opts.logger,
    },
    async (job) => {
      const state: IntegrityCheckpoint = job.checkpoint ?? {
        prefixesDone: 0,
        scanned: 0,
        checked: 0,
        corrupt: 0,
        problemCount: 0,
        counts: {},
        sampleSeed: randomUUID(),
      }
      const sink = new FindingsSink(opts.findingsFile, 1000, job.checkpoint !== null, state.counts)
      const problems: AuditProblem[] = []
      const problem = (where: string, error: unknown) => {
        state.problemCount++
        if (problems.length < MAX_PROBLEMS_IN_RESULT) problems.push({region, where, message: errorMessage(error)})
      }
      const isSampled = sampler(opts.sample, state.sampleSeed)
      const pool = new Bounded(opts.concurrency)
      const shards = shardsFor(job.shard.index, job.shard.count)
      try {
        for (let i = state.prefixesDone; i < shards.length; i++) {
          job.signal.throwIfAborted()
          try {
            for await (const object of opts.driver.list(blobPrefix(shards[i]), {signal: job.signal})) {
              state.scanned++
              let digest: string
              try {
                const spec = parseKey(object.key)
                if (spec.kind !== 'blob-data') throw new Error('not a blob key')
                digest = spec.digest
              } catch (error) {
                problem(object.key, error)
                continue
              }
              if (!isSampled(digest)) continue
              await pool.run(async () => {
                let verifies: boolean
                try {
                  verifies = await blobVerifies(opts.driver, digest, job.signal, object.size)
                } catch (error) {
                  if (job.signal.aborted) throw error
                  problem(object.key, error)
                  return
                }
                state.checked++
                if (!verifies) {
                  state.corrupt++
                  await sink.add({
                    kind: 'corrupt',
                    object: 'blob',
                    region,
                    key: object.key,
                    digest,
                    detail: {size: object.size},
                  })
                }
              })
            }
          } catch (error) {
            if (job.signal.aborted) throw error
            problem(blobPrefix(shards[i]), error)
          }
          await pool.wait()
          state.prefixesDone = i + 1
          state.counts = sink.counts
          await job.save(state, {checked: state.checked, corrupt: state.corrupt})
        }
      } finally {
        await pool.wait().catch(() => {})
        await sink.close()
      }
      const bound = corruptionBound(state.checked, state.corrupt)
      const result: AuditIntegrityResult = {
        kind: 'audit-integrity',
        jobId: job.id,
        region,
        shard: job.shard,
        scanned: state.scanned,
        checked: state.checked,
        corrupt: state.corrupt,
        sampleFraction: opts.sample,
        bound95: bound,
        statement: `${state.corrupt} corrupt in ${state.checked} re-hashed blobs: no corruption above ${(bound * 100).toPrecision(2)}% at 95% confidence`,
        findings: {total: sink.total, byRegion: sink.counts, file: opts.findingsFile, first: sink.sample},
        problems,
        problemCount: state.problemCount,
        durationMs: Math.round(performance.now() - started),
      }
      return {
        result,
        stats: {checked: result.checked, corrupt: result.corrupt},
        failure: result.problemCount > 0 ? 'some blobs could not be read' : undefined,
      }
    },
  )
}
