import {ExitCode} from '../lib/errors.js'
import {counter, gauge, type MetricSample} from '../lib/output/metrics.js'
import {FINDING_KINDS} from '../lib/audit/findings.js'
import type {AuditRegionsResult} from '../lib/audit/regions-audit.js'
import {formatDuration, renderTable} from '../lib/output/format.js'

/** The summary: a table of region × finding kind, then what was re-hashed, repaired and unreadable. */
export function render(r: AuditRegionsResult): string {
  const rows = r.regions.map((region) => [
    region,
    r.sources[region],
    r.scanned[region] ?? 0,
    ...FINDING_KINDS.map((kind) => r.findings.byRegion[region]?.[kind] ?? 0),
  ])
  const lines = [renderTable(['region', 'source', 'blobs', ...FINDING_KINDS], rows)]
  lines.push(
    `level ${r.level}${r.databaseUsed ? ', with the database' : ''}; ${r.prefixes} prefixes; pending = newer than ${r.cutoff}; ${formatDuration(r.durationMs)}${r.jobId ? `; job ${r.jobId}` : ''}`,
  )
  if (r.checksum.checked > 0 || r.checksum.statement)
    lines.push(r.checksum.statement ?? `re-hashed ${r.checksum.checked} copies: ${r.checksum.corrupt} corrupt`)
  if (r.repair)
    lines.push(
      `repair from ${r.repair.from}: ${r.repair.copied} copied and verified, ${r.repair.failed} failed, ${r.repair.unavailable} with no good copy in ${r.repair.from}`,
    )
  for (const p of r.problems.slice(0, 20)) lines.push(`problem: ${p.region}: ${p.where}: ${p.message}`)
  if (r.problemCount > 20) lines.push(`... and ${r.problemCount - 20} more problems (see --json)`)
  lines.push(
    r.findings.drift === 0
      ? 'no drift'
      : `${r.findings.drift} findings of drift${r.findings.file ? `, every one in ${r.findings.file}` : ''}${r.repair ? '' : '; repair with --repair --from REGION'}`,
  )
  return lines.join('\n')
}

/** 3 when input could not be read or a repair failed (the rest was audited), 1 on any drift, else 0. */
export function exitCode(r: AuditRegionsResult): number {
  if (r.problemCount > 0 || (r.repair?.failed ?? 0) > 0) return ExitCode.Partial
  return r.findings.drift > 0 ? ExitCode.Found : ExitCode.Ok
}

export const metricsJob = 'audit_regions'

export function metrics(r: AuditRegionsResult): MetricSample[] {
  const byKind: Record<string, number> = Object.fromEntries(FINDING_KINDS.map((kind) => [kind, 0]))
  for (const kinds of Object.values(r.findings.byRegion))
    for (const [kind, n] of Object.entries(kinds)) byKind[kind] = (byKind[kind] ?? 0) + (n ?? 0)
  return [
    counter(
      'objects_scanned_total',
      'Blobs listed, summed over the regions.',
      Object.values(r.scanned).reduce((a, b) => a + b, 0),
    ),
    gauge('candidates', 'Findings that are drift (everything but pending).', r.findings.drift),
    ...Object.entries(byKind).map(([kind, n]) =>
      gauge('findings', 'Findings, by kind, summed over the regions.', n, {kind}),
    ),
    counter('checked_total', 'Copies re-hashed.', r.checksum.checked),
    counter('repaired_total', 'Objects copied from --from by --repair.', r.repair?.copied ?? 0),
    counter('errors_total', 'Listings, keys or copies that failed.', r.problemCount + (r.repair?.failed ?? 0)),
  ]
}
