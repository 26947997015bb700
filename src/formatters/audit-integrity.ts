import {ExitCode} from '../lib/errors.js'
import {counter, gauge, type MetricSample} from '../lib/output/metrics.js'
import type {AuditIntegrityResult} from '../lib/audit/integrity.js'
import {formatDuration, renderTable} from '../lib/output/format.js'

export function render(r: AuditIntegrityResult): string {
  const lines = [
    renderTable(
      ['region', 'blobs', 're-hashed', 'corrupt', 'problems'],
      [[r.region, r.scanned, r.checked, r.corrupt, r.problemCount]],
    ),
    `${r.statement}; ${formatDuration(r.durationMs)}${r.jobId ? `; job ${r.jobId}` : ''}`,
  ]
  for (const f of r.findings.first.slice(0, 20)) lines.push(`corrupt: ${f.key}`)
  for (const p of r.problems.slice(0, 20)) lines.push(`problem: ${p.where}: ${p.message}`)
  return lines.join('\n')
}

export function exitCode(r: AuditIntegrityResult): number {
  if (r.problemCount > 0) return ExitCode.Partial
  return r.corrupt > 0 ? ExitCode.Found : ExitCode.Ok
}

export const metricsJob = 'audit_integrity'

export function metrics(r: AuditIntegrityResult): MetricSample[] {
  return [
    counter('objects_scanned_total', 'Blobs listed.', r.scanned),
    counter('checked_total', 'Blobs re-hashed.', r.checked),
    gauge('candidates', 'Blobs that do not hash to their digest.', r.corrupt),
    counter('errors_total', 'Blobs or listings that could not be read.', r.problemCount),
  ]
}
