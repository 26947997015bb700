import {ExitCode} from '../lib/errors.js'
import {counter, gauge, type MetricSample} from '../lib/output/metrics.js'
import {formatBytes, renderTable} from '../lib/output/format.js'
import type {QuarantineOpResult} from '../lib/sweep/restore-purge.js'

export type SweepPurgeResult = QuarantineOpResult & {holdFor: string}

export function render(result: SweepPurgeResult): string {
  const table = renderTable(
    ['digest', 'action', 'size'],
    result.items.map((i) => [i.digest, result.dryRun ? `would ${i.action}` : i.action, formatBytes(i.size)]),
  )
  const count = (action: string) => result.items.filter((i) => i.action === action).length
  const failed = result.failed.length ? `, ${result.failed.length} failed` : ''
  const summary = result.dryRun
    ? `dry-run: ${count('purge')} to purge, ${count('rescue')} to rescue (hold time ${result.holdFor}); act with --delete`
    : `purged ${result.purged} (${formatBytes(result.bytes)}), rescued ${result.rescued}${failed} (hold time ${result.holdFor})`
  return `${table}\n${summary}`
}

export function exitCode(result: QuarantineOpResult): number {
  if (result.failed.length > 0) return ExitCode.Partial
  return result.problems.length > 0 || (result.dryRun && result.entries > 0) ? ExitCode.Found : ExitCode.Ok
}

export const metricsJob = 'sweep_purge'

export function metrics(r: QuarantineOpResult): MetricSample[] {
  return [
    counter('objects_scanned_total', 'Quarantine entries examined.', r.entries),
    gauge(
      'candidates',
      'Quarantined blobs past their hold time and still unreferenced.',
      r.items.filter((i) => i.action === 'purge').length,
    ),
    counter('deleted_total', 'Objects deleted, by type.', r.purged, {type: 'blob'}),
    counter('rescued_total', 'Quarantined blobs moved back because something references them again.', r.rescued),
    counter('acted_bytes_total', 'Bytes purged or rescued.', r.bytes),
    counter('errors_total', 'Actions that failed, and problems recorded.', r.failed.length + r.problems.length),
  ]
}
