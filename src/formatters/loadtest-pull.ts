import {ExitCode} from '../lib/errors.js'
import {counter, gauge, type MetricSample} from '../lib/output/metrics.js'
import {formatBytes, renderTable, type Cell} from '../lib/output/format.js'
import type {MergeReport, PullReport} from '../lib/loadtest/report.js'
import type {StageReport} from '../lib/loadtest/stage-stats.js'

/** The stage table, the pull counts, and each threshold with its verdict. */
export function render(result: PullReport): string {
  const lines = [renderStages(result.stages)]
  const p = result.pulls
  lines.push(
    `${result.model} model: ${p.started} pulls started (${result.achievedRate}/s), ${p.succeeded} succeeded, ${p.failed} failed, ` +
      `${p.dropped} dropped by --max-in-flight, ${p.cutOff} cut off at the end; ${result.tokenFetches} token fetches`,
  )
  lines.push(...renderErrorsAndThresholds(result))
  if (result.abortedBy) lines.push(`stopped early: threshold ${result.abortedBy} breached (--abort-on-fail)`)
  return lines.join('\n')
}

export function exitCode(result: PullReport | MergeReport): number {
  return result.breached.length > 0 ? ExitCode.Found : ExitCode.Ok
}

const ms = (n: number): string => (n >= 100 ? n.toFixed(0) : n.toFixed(n >= 10 ? 1 : 2))

export function renderStages(stages: Record<string, StageReport>): string {
  const rows: Cell[][] = Object.entries(stages)
    .filter(([, s]) => s.count > 0 || Object.keys(s.errors).length > 0)
    .map(([name, s]) => [
      name,
      s.count,
      ms(s.p50Ms),
      ms(s.p95Ms),
      ms(s.p99Ms),
      ms(s.maxMs),
      Object.entries(s.statuses)
        .map(([code, n]) => `${code}:${n}`)
        .join(' '),
      Object.entries(s.errors)
        .map(([kind, n]) => `${kind}:${n}`)
        .join(' '),
      formatBytes(s.bytes),
    ])
  return renderTable(['stage', 'count', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'statuses', 'errors', 'bytes'], rows)
}

export function renderErrorsAndThresholds(result: PullReport | MergeReport): string[] {
  const lines: string[] = []
  const errors = Object.entries(result.errors)
  if (errors.length) lines.push(`errors: ${errors.map(([kind, n]) => `${kind} ${n}`).join(', ')}`)
  for (const t of result.thresholds)
    lines.push(`threshold ${t.expr}: ${t.ok ? 'ok' : 'BREACHED'} (actual ${formatActual(t.expr, t.actual)})`)
  return lines
}

function formatActual(expr: string, actual: number): string {
  if (/\.rate\s*[<>]/.test(expr)) return `${(actual * 100).toFixed(3)}%`
  if (/\.count\s*[<>]/.test(expr)) return String(actual)
  return `${ms(actual)}ms`
}

export const metricsJob = 'loadtest_pull'

export function metrics(r: PullReport): MetricSample[] {
  const pulls = 'Pulls, by how they ended.'
  return [
    counter('pulls_total', pulls, r.pulls.succeeded, {result: 'succeeded'}),
    counter('pulls_total', pulls, r.pulls.failed, {result: 'failed'}),
    counter('pulls_total', pulls, r.pulls.dropped, {result: 'dropped'}),
    counter(
      'bytes_total',
      'Body bytes received, over every stage.',
      Object.values(r.stages).reduce((a, s) => a + s.bytes, 0),
    ),
    gauge('thresholds_breached', 'Thresholds that failed.', r.breached.length),
    counter('errors_total', 'Pulls that failed.', r.pulls.failed),
  ]
}
