import {ExitCode} from '../lib/errors.js'
import {renderTable} from '../lib/output/format.js'
import type {RepairDbResult, RepositoryDifference} from '../lib/repair/repair-db.js'

export function render(r: RepairDbResult): string {
  const lines = [table(r.difference)]
  if (r.same) lines.push(`${r.repository}: the database agrees with region ${r.region}`)
  else if (!r.applied)
    lines.push(`${r.repository}: the database differs from region ${r.region} (dry-run: --apply re-imports it)`)
  else if (r.error) lines.push(`${r.repository}: re-import FAILED: ${r.error}`)
  else
    lines.push(
      `${r.repository}: re-imported (journal ${r.entry}, import job ${r.importJobId})${r.remaining && differs(r.remaining) ? '; still differs:\n' + table(r.remaining) : ''}`,
    )
  return lines.join('\n')
}

function table(d: RepositoryDifference): string {
  const rows: string[][] = []
  for (const [what, set] of [
    ['manifest', d.manifests],
    ['_layers link', d.layerLinks],
    ['tag', d.tags],
  ] as const) {
    for (const x of set.onlyInStorage) rows.push([what, x, 'only in storage'])
    for (const x of set.onlyInDatabase) rows.push([what, x, 'only in the database'])
  }
  for (const t of d.tags.differ) rows.push(['tag', t.tag, `storage ${t.storage}, database ${t.database}`])
  return rows.length ? renderTable(['what', 'which', 'difference'], rows) : ''
}

function differs(d: RepositoryDifference): boolean {
  return table(d) !== ''
}

export function exitCode(r: RepairDbResult): number {
  if (r.error) return ExitCode.Partial
  if (r.applied) return r.remaining && differs(r.remaining) ? ExitCode.Found : ExitCode.Ok
  return r.same ? ExitCode.Ok : ExitCode.Found
}
