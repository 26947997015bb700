import {ExitCode} from '../lib/errors.js'
import {formatBytes, renderPairs, renderTable} from '../lib/output/format.js'
import type {ManifestInspection} from '../lib/inspect/inspect-manifest.js'

export function render(r: ManifestInspection): string {
  const name = `${r.repository}${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`
  if (!r.found) return `${name}: not found (${r.reason})${r.tags.length ? `\n${tags(r)}` : ''}`
  const sections = [
    renderPairs([
      ['manifest', name],
      ['media type', r.mediaType],
      ['size', r.size === undefined ? undefined : formatBytes(r.size)],
      ['complete', r.complete ? 'yes: every blob it references is in every region' : 'NO: see the table'],
    ]),
    renderTable(
      ['role', 'digest', 'size', 'platform', 'present in', 'missing in'],
      r.items.map((i) => [
        i.dangling ? `${i.role} (DANGLING: no revision link)` : i.role,
        i.digest,
        formatBytes(i.size),
        i.platform ?? '',
        regions(i.presentIn, true),
        regions(i.presentIn, false),
      ]),
    ),
    tags(r),
    r.referrers.length
      ? renderTable(
          ['referrer', 'media type'],
          r.referrers.map((x) => [x.digest, x.mediaType]),
        )
      : 'referrers: none',
  ]
  return sections.join('\n')
}

function regions(presentIn: Record<string, boolean>, present: boolean): string {
  return Object.entries(presentIn)
    .filter(([, p]) => p === present)
    .map(([name]) => name)
    .join(', ')
}

function tags(r: ManifestInspection): string {
  if (!r.tags.length) return 'tags: none, now or in any tag history'
  return renderTable(
    ['tag', 'points here now', 'current', 'history (oldest first)'],
    r.tags.map((t) => [
      t.tag,
      t.pointsHere ? 'yes' : 'no',
      t.current ?? '',
      t.history.map((h) => `${h.digest} ${h.lastModified}`).join('; '),
    ]),
  )
}

export function exitCode(r: ManifestInspection): number {
  return r.found ? ExitCode.Ok : ExitCode.Found
}
