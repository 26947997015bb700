import {ExitCode} from '../lib/errors.js'
import {formatBytes, renderTable} from '../lib/output/format.js'
import type {BlobInspection} from '../lib/inspect/inspect-blob.js'

export function render(r: BlobInspection): string {
  const sections = [
    renderTable(
      ['region', 'present', 'size', 'last modified', 'verified'],
      r.regions.map((g) => [
        g.region,
        g.present ? 'yes' : 'no',
        g.size === undefined ? '' : formatBytes(g.size),
        g.lastModified ?? '',
        verified(g),
      ]),
    ),
    `linked by (${r.referencesFrom}${r.repositories ? `, in ${r.repositories.join(', ')}` : ''}): ${r.linkedBy.join(', ') || 'no repository'}`,
    r.referencedBy.length
      ? renderTable(
          ['repository', 'manifest', 'as'],
          r.referencedBy.map((m) => [m.repository, m.manifest, m.as]),
        )
      : 'referenced by: no manifest',
    r.quarantined.length
      ? renderTable(
          ['quarantined in', 'job', 'key', 'since'],
          r.quarantined.map((q) => [q.region, q.jobId, q.key, q.lastModified]),
        )
      : 'quarantined: no',
    r.journal.length
      ? renderTable(
          ['journal', 'action', 'phase', 'region', 'key', 'at'],
          r.journal.map((e) => [e.id, e.action, e.phase, e.region, e.key, e.at.toISOString()]),
        )
      : 'journal: no entries',
  ]
  if (r.problems.length)
    sections.push(`problems: ${r.problems.length} (first: ${r.problems[0].key}: ${r.problems[0].message})`)
  return sections.join('\n')
}

function verified(g: BlobInspection['regions'][number]): string {
  if (g.error) return `error: ${g.error}`
  if (g.verified === undefined) return ''
  return g.verified ? 'ok' : `CORRUPT (${g.actualDigest})`
}

export function exitCode(r: BlobInspection): number {
  return r.regions.some((g) => g.present) ? ExitCode.Ok : ExitCode.Found
}
