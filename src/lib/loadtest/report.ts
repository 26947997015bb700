import {readFileSync} from 'node:fs'
import {UsageError} from '../errors.js'
import {STAGES, StageStats, newStageSet, type StageReport, type StageSet} from './stage-stats.js'
import {evaluateThresholds, parseThresholds, type ThresholdOutcome} from './thresholds.js'

export interface PullCounts {
  /** starts the schedule called for (open model) */
  scheduled: number
  started: number
  /** starts not made because --max-in-flight pulls were running */
  dropped: number
  /** pulls that ended, with success or an error */
  completed: number
  succeeded: number
  failed: number
  /** pulls still running when the run ended, aborted and not counted as errors */
  cutOff: number
}

/** The result of `loadtest pull`, and the shard report `loadtest merge` reads back. */
export interface PullReport {
  kind: 'loadtest-pull'
  version: 1
  /** registry URL, without credentials */
  registry: string
  model: 'open' | 'closed'
  settings: {
    rate?: number
    stages?: Array<{durationMs: number; target: number}>
    vus?: number
    durationMs?: number
    maxPulls?: number
    maxInFlight?: number
    manifestsOnly: boolean
    verify: boolean
    parallelism: number
    platform: string
    images: Array<{image: string; weight: number}>
    zipf: number
  }
  startedAt: string
  elapsedMs: number
  pulls: PullCounts
  /** pulls started before the scheduled span ended (late starts from an overloaded host are not) */
  startedInSpan: number
  /** startedInSpan per second of the scheduled span */
  achievedRate: number
  /** how late the scheduler started the latest pull (ms): large when this host could not keep up */
  maxStartLagMs: number
  tokenFetches: number
  /** failed pulls by error kind */
  errors: Record<string, number>
  stages: Record<string, StageReport>
  thresholds: ThresholdOutcome[]
  /** the thresholds that failed, in the order given */
  breached: string[]
  /** the threshold that stopped the run early (--abort-on-fail) */
  abortedBy?: string
}

export interface MergeReport {
  kind: 'loadtest-merge'
  shards: Array<{file: string; registry: string; startedAt: string; pulls: PullCounts}>
  pulls: PullCounts
  tokenFetches: number
  errors: Record<string, number>
  stages: Record<string, StageReport>
  thresholds: ThresholdOutcome[]
  breached: string[]
}

export function emptyCounts(): PullCounts {
  return {scheduled: 0, started: 0, dropped: 0, completed: 0, succeeded: 0, failed: 0, cutOff: 0}
}

export function stagesToReport(stages: StageSet): Record<string, StageReport> {
  return Object.fromEntries(STAGES.map((s) => [s, stages[s].toJSON()]))
}

/** Reads a shard report; names the file and what is wrong with it. */
export function readPullReport(file: string): PullReport {
  let data: unknown
  try {
    data = JSON.parse(readFileSync(file, 'utf8'))
  } catch (error) {
    throw new UsageError(`${file}: not a readable JSON report (${(error as Error).message})`)
  }
  const report = data as Partial<PullReport>
  if (report?.kind !== 'loadtest-pull' || report.version !== 1 || !report.stages || !report.pulls) {
    throw new UsageError(`${file}: not a loadtest-pull report (version 1)`, {
      hint: 'write shard reports with regops loadtest pull --report FILE',
    })
  }
  return report as PullReport
}

/**
 * Merges shard reports: counts add, histograms add bucket by bucket, so every percentile of the merge is
 * the percentile of all the shards' samples together, and the thresholds are judged once on the whole.
 */
export function mergeReports(files: string[], thresholdExprs: string[] | undefined): MergeReport {
  const reports = files.map((file) => ({file, report: readPullReport(file)}))
  const stages = newStageSet()
  const pulls = emptyCounts()
  const errors: Record<string, number> = {}
  let tokenFetches = 0
  for (const {file, report} of reports) {
    for (const name of STAGES) {
      const stage = report.stages[name]
      if (stage) stages[name].add(StageStats.fromReport(stage, `${file} stage ${name}`))
    }
    for (const key of Object.keys(pulls) as Array<keyof PullCounts>) pulls[key] += Number(report.pulls[key] ?? 0)
    for (const [kind, n] of Object.entries(report.errors ?? {})) errors[kind] = (errors[kind] ?? 0) + n
    tokenFetches += report.tokenFetches ?? 0
  }
  // Without --threshold, the shards' own thresholds (they normally share one command line), each once.
  const exprs = thresholdExprs?.length
    ? thresholdExprs
    : [...new Set(reports.flatMap(({report}) => (report.thresholds ?? []).map((t) => t.expr)))]
  const thresholds = evaluateThresholds(parseThresholds(exprs), {stages, pulls})
  return {
    kind: 'loadtest-merge',
    shards: reports.map(({file, report}) => ({
      file,
      registry: report.registry,
      startedAt: report.startedAt,
      pulls: report.pulls,
    })),
    pulls,
    tokenFetches,
    errors,
    stages: stagesToReport(stages),
    thresholds,
    breached: thresholds.filter((t) => !t.ok).map((t) => t.expr),
  }
}
