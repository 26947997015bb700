import {ExitCode} from '../lib/errors.js'
import {formatBytes, renderTable} from '../lib/output/format.js'
import type {SweepUploadsResult} from '../lib/sweep/sweep-uploads.js'

export type SweepUploadsCommandResult = SweepUploadsResult & {olderThan: string}

export function render(result: SweepUploadsCommandResult): string {
  const table = renderTable(
    ['repository', 'upload', 'started', 'last write', 'objects', 'size'],
    result.items.map((u) => [u.repository, u.uuid, u.startedAt, u.lastActivity, u.objects, formatBytes(u.bytes)]),
  )
  const dryRun = result.mode === 'dry-run'
  const summary =
    `${dryRun ? 'would delete' : 'deleted'} ${dryRun ? result.abandoned.count : result.deleted} of ${result.uploads} uploads ` +
    `in ${result.repositories} repositories (${formatBytes(result.abandoned.bytes)}) older than ${result.olderThan}`
  return `${table}\n${summary}`
}

export function exitCode(result: SweepUploadsResult): number {
  if (result.failed > 0) return ExitCode.Partial
  return result.mode === 'dry-run' && result.abandoned.count > 0 ? ExitCode.Found : ExitCode.Ok
}
