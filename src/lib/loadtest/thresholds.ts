import {UsageError} from '../errors.js'
import {stageByName, type StageName, type StageSet} from './stage-stats.js'

/**
 * A pass/fail rule on a run's figures, e.g. `manifest.p99<250ms`, `layer.p95<2s`, `errors.rate<0.1%`,
 * `dropped.count<=0`. Latency limits need a unit: a bare number would silently mean ms to one reader and
 * seconds to another.
 */
export type Threshold =
  | {expr: string; metric: 'latency'; stage: StageName; stat: LatencyStat; op: Op; limit: number}
  | {expr: string; metric: 'errors.rate' | 'dropped.rate'; op: Op; limit: number}
  | {expr: string; metric: 'errors.count' | 'dropped.count'; op: Op; limit: number}

type LatencyStat = {percentile: number} | 'max' | 'mean' | 'min'
type Op = '<' | '<=' | '>' | '>='

export interface ThresholdOutcome {
  expr: string
  /** the figure compared, in ms for latencies, a fraction for rates, a number for counts */
  actual: number
  ok: boolean
}

/** What thresholds are evaluated on: the per-stage figures and the pull counters. */
export interface ThresholdInput {
  stages: StageSet
  pulls: {completed: number; failed: number; started: number; dropped: number}
}

const EXPR = /^\s*([a-z_][a-z0-9_.-]*?)\.(p\d+(?:\.\d+)?|max|mean|min|rate|count)\s*(<=|>=|<|>)\s*(\S+)\s*$/i
const LATENCY_UNITS: Record<string, number> = {us: 0.001, µs: 0.001, ms: 1, s: 1000, m: 60_000}

export function parseThreshold(expr: string): Threshold {
  const bad = (why: string) =>
    new UsageError(`malformed threshold '${expr}': ${why}`, {
      code: 'BAD_THRESHOLD',
      hint: "write STAGE.STAT<LIMIT, e.g. 'manifest.p99<250ms', 'layer.p95<2s', 'errors.rate<0.1%', 'dropped.count<=0'",
      details: {threshold: expr},
    })
  const match = EXPR.exec(expr)
  if (!match) throw bad('expected METRIC OP LIMIT')
  const [, subject, statText, opText, limitText] = match as unknown as [string, string, string, string, string]
  const op = opText as Op
  const stat = statText.toLowerCase()
  if (subject === 'errors' || subject === 'dropped') {
    if (stat === 'rate') {
      const percent = /^(\d+(?:\.\d+)?)%$/.exec(limitText)
      const fraction = /^(\d+(?:\.\d+)?)$/.exec(limitText)
      const limit = percent ? Number(percent[1]) / 100 : fraction ? Number(fraction[1]) : NaN
      if (!Number.isFinite(limit) || limit > 1) throw bad('a rate is a percentage (0.1%) or a fraction of 1 (0.001)')
      return {expr, metric: `${subject}.rate`, op, limit}
    }
    if (stat === 'count') {
      if (!/^\d+$/.test(limitText)) throw bad('a count is a whole number')
      return {expr, metric: `${subject}.count`, op, limit: Number(limitText)}
    }
    throw bad(`${subject} has .rate and .count`)
  }
  const stage = stageByName(subject)
  if (!stage)
    throw bad(
      `unknown stage '${subject}' (stages: pull, ping, token, manifest, config, layer_first_byte, layer, redirect; or errors, dropped)`,
    )
  const unitMatch = /^(\d+(?:\.\d+)?)(us|µs|ms|s|m)$/.exec(limitText)
  if (!unitMatch) throw bad('a latency limit needs a unit: us, ms, s or m (e.g. 250ms)')
  const limit = Number(unitMatch[1]) * LATENCY_UNITS[unitMatch[2]!]!
  let latencyStat: LatencyStat
  if (stat.startsWith('p')) {
    const percentile = Number(stat.slice(1))
    if (!(percentile > 0 && percentile <= 100)) throw bad('a percentile is between p0 and p100')
    latencyStat = {percentile}
  } else if (stat === 'max' || stat === 'mean' || stat === 'min') {
    latencyStat = stat
  } else {
    throw bad(`a stage has pNN, max, mean and min, not ${stat}`)
  }
  return {expr, metric: 'latency', stage, stat: latencyStat, op, limit}
}

export function parseThresholds(exprs: readonly string[]): Threshold[] {
  return exprs.map(parseThreshold)
}

function actualOf(t: Threshold, input: ThresholdInput): number {
  const {pulls} = input
  switch (t.metric) {
    case 'errors.rate':
      return pulls.completed === 0 ? 0 : pulls.failed / pulls.completed
    case 'errors.count':
      return pulls.failed
    case 'dropped.rate':
      return pulls.started + pulls.dropped === 0 ? 0 : pulls.dropped / (pulls.started + pulls.dropped)
    case 'dropped.count':
      return pulls.dropped
    case 'latency': {
      const stats = input.stages[t.stage]
      const figures = stats.percentiles()
      if (t.stat === 'max') return figures.maxMs
      if (t.stat === 'mean') return figures.meanMs
      if (t.stat === 'min') return figures.minMs
      return stats.percentileMs(t.stat.percentile)
    }
  }
}

function holds(actual: number, op: Op, limit: number): boolean {
  if (op === '<') return actual < limit
  if (op === '<=') return actual <= limit
  if (op === '>') return actual > limit
  return actual >= limit
}

export function evaluateThresholds(thresholds: readonly Threshold[], input: ThresholdInput): ThresholdOutcome[] {
  return thresholds.map((t) => {
    const actual = actualOf(t, input)
    return {expr: t.expr, actual, ok: holds(actual, t.op, t.limit)}
  })
}
