import {ExitCode} from '../lib/errors.js'
import {counter, gauge, type MetricSample} from '../lib/output/metrics.js'
import {formatBytes, renderTable} from '../lib/output/format.js'
import type {SweepUploadsResult} from '../lib/sweep/sweep-uploads.js'

export type SweepUploadsCommandResult = SweepUploadsResult & {olderThan: string}

export function render(result: SweepUploadsCommandResult): string {
  const table = renderTable(
    ['repository', 'upload', 'started', 'last write', 'objects', 'multipart', 'size'],
    result.items.map((u) => [
      u.repository,
      u.uuid,
      u.startedAt,
      u.lastActivity,
      u.objects,
      u.multipart.uploads
        ? `${u.multipart.uploads} (${u.multipart.parts} parts, ${formatBytes(u.multipart.bytes)})`
        : '-',
      formatBytes(u.bytes),
    ]),
  )
  const dryRun = result.mode === 'dry-run'
  const summary =
    `${dryRun ? 'would delete' : 'deleted'} ${dryRun ? result.abandoned.count : result.deleted} of ${result.uploads} uploads ` +
    `in ${result.repositories} repositories (${formatBytes(result.abandoned.bytes)}) older than ${result.olderThan}`
  const multipart = result.abandoned.multipartUploads
    ? `\n${formatBytes(result.abandoned.multipartBytes)} of it in ${result.abandoned.multipartUploads} pending multipart uploads` +
      (dryRun ? ', aborted with --delete' : ` (${result.aborted} aborted)`)
    : ''
  return `${table}\n${summary}${multipart}`
}

export function exitCode(result: SweepUploadsResult): number {
  if (result.failed > 0) return ExitCode.Partial
  return result.mode === 'dry-run' && result.abandoned.count > 0 ? ExitCode.Found : ExitCode.Ok
}

export const metricsJob = 'sweep_uploads'

export function metrics(r: SweepUploadsResult): MetricSample[] {
  return [
    counter('objects_scanned_total', "Uploads found under the repositories' _uploads.", r.uploads),
    gauge('candidates', 'Abandoned uploads older than the limit.', r.abandoned.count),
    gauge('candidate_bytes', 'Bytes the abandoned uploads hold, multipart parts included.', r.abandoned.bytes),
    gauge(
      'candidate_multipart_bytes',
      'Bytes of the abandoned uploads in pending multipart uploads (S3).',
      r.abandoned.multipartBytes,
    ),
    counter('deleted_total', 'Objects deleted, by type.', r.deleted, {type: 'upload'}),
    counter('deleted_total', 'Objects deleted, by type.', r.aborted, {type: 'multipart'}),
    counter('errors_total', 'Deletions that failed, and problems recorded.', r.failed + r.problems.length),
  ]
}
