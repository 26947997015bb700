import {ExitCode} from '../lib/errors.js'
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
