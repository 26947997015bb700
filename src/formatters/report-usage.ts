import {ExitCode} from '../lib/errors.js'
import {formatBytes, renderTable} from '../lib/output/format.js'
import type {Usage, UsageResult} from '../lib/report/usage.js'

export type ReportUsageResult = UsageResult

export function render(result: UsageResult): string {
  const t = result.totals
  const cell = (u: Usage) => (u.objects ? `${formatBytes(u.bytes)} (${u.objects})` : '-')
  const groups = renderTable(
    [result.by, 'attributed', 'exclusive', 'metadata', 'uploads', 'multipart'],
    result.groups.map((g) => [
      g.name,
      cell(g.attributed),
      cell(g.exclusive),
      cell(g.metadata),
      cell(g.uploads),
      g.multipart.uploads ? `${formatBytes(g.multipart.bytes)} (${g.multipart.uploads})` : '-',
    ]),
  )
  const categories: Array<[string, Usage]> = [
    ['referenced', t.referenced],
    ['  of it shared', t.shared],
    ['orphaned', t.orphaned],
    [`  of it younger than ${result.minAge}`, t.orphanedYoung],
    ['metadata (links, tags)', t.metadata],
    ['upload debris (_uploads)', t.uploads],
    [`quarantined (${result.quarantinePrefix}/)`, t.quarantined],
    ['outside the layout', t.outside],
    ['undecided blobs (sha512)', t.undecidedBlobs],
    ['listing total', t.listing],
  ]
  const totals = renderTable(
    ['category', 'bytes', 'objects'],
    [
      ...categories.map(([name, u]) => [name, formatBytes(u.bytes), u.objects]),
      [
        'multipart debris (beside the listing)',
        formatBytes(t.multipart.bytes),
        `${t.multipart.uploads} uploads, ${t.multipart.parts} parts`,
      ],
    ],
  )
  const outside = result.outsideSample.length
    ? `\noutside the layout, e.g.: ${result.outsideSample.slice(0, 5).join(', ')}`
    : ''
  const missing = result.referencedMissing
    ? `\n${result.referencedMissing} referenced digests have no blob data in this region`
    : ''
  const notes = result.notes.map((n) => `\n${n}`).join('')
  return `${groups}\n\n${totals}${outside}${missing}${notes}`
}

export function exitCode(result: UsageResult): number {
  return result.problems.length > 0 ? ExitCode.Partial : ExitCode.Ok
}
