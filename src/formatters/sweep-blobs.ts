import {ExitCode} from '../lib/errors.js'
import {counter, gauge, type MetricSample} from '../lib/output/metrics.js'
import {formatBytes, formatDuration, renderTable} from '../lib/output/format.js'
import type {SweepBlobsResult} from '../lib/sweep/sweep-blobs.js'

const LISTED = 20

/** The sweep's result, plus the grace period as understood, so the operator sees "48h" and not a surprise. */
export type SweepBlobsCommandResult = SweepBlobsResult & {gracePeriod: string}

export function exitCode(result: SweepBlobsResult): number {
  if (result.acted.failed > 0 || result.postCheck.broken.length > 0) return ExitCode.Partial
  if (result.mode === 'dry-run') {
    const found = result.candidates.count > 0 || result.candidates.manifests > 0 || result.problemCount > 0
    return found ? ExitCode.Found : ExitCode.Ok
  }
  return result.problemCount > 0 ? ExitCode.Found : ExitCode.Ok
}

export function render(r: SweepBlobsCommandResult): string {
  const verb = r.mode === 'dry-run' ? 'would remove' : r.mode === 'delete' ? 'deleted' : 'quarantined'
  const lines = [
    renderTable(
      ['sweep', r.jobId ? `job ${r.jobId}` : ''],
      [
        ['region / strategy / mode', `${r.region} / ${r.strategy} / ${r.mode}`],
        ['blobs scanned', `${r.scanned.blobs} (${formatBytes(r.scanned.bytes)})`],
        ['referenced', r.referenced],
        ['younger than the cutoff', `${r.tooYoung.count} (grace period ${r.gracePeriod}, cutoff ${r.cutoff})`],
        [
          'candidates',
          `${r.candidates.count} (${formatBytes(r.candidates.bytes)})${r.candidates.manifests ? `, and ${r.candidates.manifests} untagged manifests` : ''}`,
        ],
        ['acted', r.acted.deleted + r.acted.quarantined + r.acted.manifestsDeleted],
        [
          're-check to action (p50 / p99)',
          r.window.batches
            ? `${formatDuration(r.window.p50Ms)} / ${formatDuration(r.window.p99Ms)} over ${r.window.batches} batches`
            : '-',
        ],
        [
          'skipped at re-check',
          `${r.skipped.referencedAgain} referenced again, ${r.skipped.changed} changed, ${r.skipped.gone} gone`,
        ],
        ['problems', problemsByKind(r)],
        // In the table, so that a long reason wraps within the terminal's width.
        ...(r.mode === 'dry-run' && r.wouldRefuse.length > 0
          ? [['acting would be refused (exit 4)', r.wouldRefuse.join('; ')]]
          : []),
        ['time', formatDuration(r.durationMs)],
      ],
    ),
  ]
  for (const p of r.problems.slice(0, LISTED)) lines.push(`problem: ${p.kind} at ${p.key}: ${p.message}`)
  if (r.problemCount > LISTED) lines.push(`... and ${r.problemCount - LISTED} more problems (see --json)`)
  if (r.postCheck.movedBack)
    lines.push(`moved back ${r.postCheck.movedBack} quarantined blobs that images pushed during the sweep reference`)
  for (const b of r.postCheck.broken) {
    lines.push(
      `broken: ${b.repository}${b.manifest ? `@${b.manifest}` : ' (a push in progress)'} needs blob ${b.digest}, deleted after its re-check`,
    )
  }
  if (r.postCheck.broken.length > 0) {
    lines.push(
      'restore each from a region that still holds it (regops audit regions --repair --from REGION), or push the image again',
    )
  }
  if (r.restartRegistry)
    lines.push(
      'the registry caches blob descriptors in memory: restart every registry process before it takes writes again',
    )
  if (r.mode === 'dry-run') {
    const report = r.reportFile ? `; candidates in ${r.reportFile}` : ''
    const next = r.candidates.count && r.wouldRefuse.length === 0 ? '; act with --quarantine or --delete' : ''
    lines.push(
      `dry-run: ${verb} ${r.candidates.count} blobs (${formatBytes(r.candidates.bytes)}), grace period ${r.gracePeriod}`,
    )
    if (report || next) lines.push((report + next).slice(2))
    if (r.plan) lines.push(`plan ${r.plan.file} (${r.plan.hash}); act on exactly it: regops sweep apply ${r.plan.file}`)
  } else {
    const manifests = r.acted.manifestsDeleted ? ` and ${r.acted.manifestsDeleted} untagged manifests` : ''
    lines.push(
      `${verb} ${r.acted.deleted + r.acted.quarantined} blobs (${formatBytes(r.acted.bytes)})${manifests}, grace period ${r.gracePeriod}; ` +
        `job ${r.jobId} journaled every action (regops journal --job ${r.jobId})`,
    )
  }
  return lines.join('\n')
}

/** "5120 (5118 bad-manifest, 2 storage-error)": one count per kind, never one line per problem. */
function problemsByKind(r: SweepBlobsResult): string {
  const kinds = Object.entries(r.problemKinds ?? {}).sort(([, a], [, b]) => b - a)
  return kinds.length === 0
    ? String(r.problemCount)
    : `${r.problemCount} (${kinds.map(([kind, n]) => `${n} ${kind}`).join(', ')})`
}

export const metricsJob = 'sweep'

export function metrics(r: SweepBlobsResult): MetricSample[] {
  return [
    counter('objects_scanned_total', 'Blobs listed and merged against the references.', r.scanned.blobs),
    counter('bytes_scanned_total', 'Bytes of the blobs scanned.', r.scanned.bytes),
    gauge('candidates', 'Unreferenced blobs older than the grace period.', r.candidates.count),
    gauge('candidate_bytes', 'Bytes of the candidates.', r.candidates.bytes),
    counter('deleted_total', 'Objects deleted, by type.', r.acted.deleted, {type: 'blob'}),
    counter('deleted_total', 'Objects deleted, by type.', r.acted.manifestsDeleted, {type: 'manifest'}),
    counter('quarantined_total', 'Blobs moved under the quarantine prefix.', r.acted.quarantined, {type: 'blob'}),
    counter('acted_bytes_total', 'Bytes deleted or quarantined.', r.acted.bytes),
    counter(
      'errors_total',
      'Actions that failed, and problems the mark or listing recorded.',
      r.acted.failed + r.problemCount,
    ),
  ]
}
