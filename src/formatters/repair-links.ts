import {ExitCode} from '../lib/errors.js'
import {renderTable} from '../lib/output/format.js'
import type {RepairLinksResult} from '../lib/repair/repair-links.js'

export function render(r: RepairLinksResult): string {
  const lines: string[] = []
  if (r.links.length) {
    lines.push(
      renderTable(
        ['state', 'link', 'key', 'needed by', 'journal'],
        r.links.map((l) => [r.applied ? l.state : 'would create', l.link, l.key, l.neededBy, l.entry ?? '']),
      ),
    )
  }
  for (const u of r.unrepairable) lines.push(`cannot repair ${u.key} (needed by ${u.neededBy}): ${u.reason}`)
  const created = r.links.filter((l) => l.state === 'created').length
  const failed = r.links.filter((l) => l.state === 'failed').length
  lines.push(
    r.applied
      ? `${r.repository}: created ${created} of ${r.links.length} missing links${failed ? `, ${failed} failed` : ''}`
      : `${r.repository}: ${r.links.length} missing links${r.links.length ? ' (dry-run: --apply writes them)' : ''}`,
  )
  if (r.problems.length)
    lines.push(`problems: ${r.problems.length} (first: ${r.problems[0].key}: ${r.problems[0].message})`)
  return lines.join('\n')
}

export function exitCode(r: RepairLinksResult): number {
  if (r.links.some((l) => l.state === 'failed')) return ExitCode.Partial
  if (r.unrepairable.length || (!r.applied && r.links.length)) return ExitCode.Found
  return ExitCode.Ok
}
