import {ExitCode} from '../lib/errors.js'
import {counter, gauge, type MetricSample} from '../lib/output/metrics.js'
import type {ImportResult} from '../lib/metadata/import.js'
import {formatDuration, renderTable} from '../lib/output/format.js'

const LISTED = 20

export function exitCode(result: ImportResult): number {
  if (result.failed.length > 0) return ExitCode.Partial
  return result.problemCount > 0 ? ExitCode.Found : ExitCode.Ok
}

export function render(r: ImportResult): string {
  const lines = [
    renderTable(
      [
        'region',
        'shard',
        'repositories',
        'manifests',
        'tags',
        'layers',
        'references',
        'layer links',
        r.dryRun ? 'blobs seen' : 'new blobs',
        'problems',
        'failed',
        'time',
      ],
      [
        [
          r.region,
          `${r.shard.index}/${r.shard.count}`,
          r.repositories,
          r.manifests,
          r.tags,
          r.layers,
          r.references,
          r.repositoryBlobs,
          r.blobs,
          r.problemCount,
          r.failed.length,
          formatDuration(r.durationMs),
        ],
      ],
    ),
  ]
  for (const p of r.problems.slice(0, LISTED))
    lines.push(`problem: ${p.kind} at ${p.key}: ${p.message.replace(` (at ${p.key})`, '')}`)
  if (r.problemCount > LISTED) lines.push(`... and ${r.problemCount - LISTED} more problems (see --json)`)
  for (const f of r.failed.slice(0, LISTED)) lines.push(`failed: ${f.repository}: ${f.message}`)
  if (r.dryRun) {
    lines.push('dry-run: nothing was written')
    return lines.join('\n')
  }
  const w = r.written
  const deleted = w.deleted.repositories + w.deleted.manifests + w.deleted.tags + w.deleted.repositoryBlobs
  const removed = deleted
    ? `; removed ${w.deleted.repositories} repositories, ${w.deleted.manifests} manifests, ${w.deleted.tags} tags, ${w.deleted.repositoryBlobs} layer links storage no longer has`
    : ''
  lines.push(
    `job ${r.jobId} (group ${r.group}): wrote ${w.manifests} manifests, ${w.blobs} blobs, ${w.layers} layers, ${w.references} references, ` +
      `${w.tagsInserted + w.tagsUpdated} tags, ${w.repositoryBlobs} layer links${removed}`,
  )
  if (r.blobsListed !== null)
    lines.push(`blobs/ listed first: ${r.blobsListed} blobs (a stat only for a blob the listing did not have)`)
  if (r.failed.length > 0)
    lines.push(`partial: ${r.failed.length} repositories failed; resume with --resume ${r.jobId}`)
  return lines.join('\n')
}

export const metricsJob = 'import'

export function metrics(r: ImportResult): MetricSample[] {
  const imported = 'Objects in the database after the run, by type.'
  return [
    counter('objects_scanned_total', 'Manifests read from storage.', r.manifests),
    counter('imported_total', imported, r.repositories, {type: 'repository'}),
    counter('imported_total', imported, r.manifests, {type: 'manifest'}),
    counter('imported_total', imported, r.tags, {type: 'tag'}),
    counter('imported_total', imported, r.blobs, {type: 'blob'}),
    counter('errors_total', 'Repositories that failed, and problems recorded.', r.failed.length + r.problemCount),
  ]
}
