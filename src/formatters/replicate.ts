import {ExitCode} from '../lib/errors.js'
import {counter, gauge, type MetricSample} from '../lib/output/metrics.js'
import type {ReplicateResult} from '../lib/audit/replicate.js'
import {formatBytes, formatDuration, renderTable} from '../lib/output/format.js'

export function render(r: ReplicateResult): string {
  const lines = [
    renderTable(
      ['', 'blobs', 'bytes', 'links', 'tags'],
      [
        [
          r.mode === 'dry-run' ? 'would copy' : 'lacking',
          r.planned.blobs,
          formatBytes(r.planned.bytes),
          r.planned.links,
          r.planned.tags,
        ],
        ['copied', r.copied.blobs, formatBytes(r.copied.bytes), r.copied.links, r.copied.tags],
      ],
    ),
    `${r.from} → ${r.to} (${r.mode}); ${r.failed} failed; ${r.conflictCount} conflicts left as they are; ${formatDuration(r.durationMs)}${r.jobId ? `; job ${r.jobId}` : ''}`,
  ]
  for (const c of r.conflicts.slice(0, 20)) lines.push(`conflict: ${c.key}: ${c.reason}`)
  for (const p of r.problems.slice(0, 20)) lines.push(`problem: ${p.region}: ${p.where}: ${p.message}`)
  if (r.mode === 'dry-run' && r.planned.blobs + r.planned.links + r.planned.tags > 0)
    lines.push('dry-run: copy with --apply')
  return lines.join('\n')
}

/** 3 when copies failed or input could not be read; 1 when a dry-run found work or a conflict remains; else 0. */
export function exitCode(r: ReplicateResult): number {
  if (r.failed > 0 || r.problemCount > 0) return ExitCode.Partial
  const lacking = r.planned.blobs + r.planned.links + r.planned.tags
  if (r.conflictCount > 0 || (r.mode === 'dry-run' && lacking > 0)) return ExitCode.Found
  return ExitCode.Ok
}

export const metricsJob = 'replicate'

export function metrics(r: ReplicateResult): MetricSample[] {
  const planned = 'Objects the target lacks, by type.'
  const copied = 'Objects copied and verified, by type.'
  return [
    ...(['blobs', 'links', 'tags'] as const).flatMap((type) => [
      gauge('candidates', planned, r.planned[type], {type: type.slice(0, -1)}),
      counter('copied_total', copied, r.copied[type], {type: type.slice(0, -1)}),
    ]),
    gauge('candidate_bytes', 'Bytes of the blobs the target lacks.', r.planned.bytes),
    counter('copied_bytes_total', 'Bytes of the blobs copied.', r.copied.bytes),
    gauge('conflicts', 'Objects present in the target with other content (never overwritten).', r.conflictCount),
    counter('errors_total', 'Copies that failed, and problems recorded.', r.failed + r.problemCount),
  ]
}
