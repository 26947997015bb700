import {ExitCode} from '../lib/errors.js'
import {formatBytes, renderTable} from '../lib/output/format.js'
import type {QuarantineOpResult} from '../lib/sweep/restore-purge.js'

export function render(result: QuarantineOpResult): string {
  const table = renderTable(
    ['digest', 'action', 'size'],
    result.items.map((i) => [i.digest, result.dryRun ? 'would restore' : i.action, formatBytes(i.size)]),
  )
  const failed = result.failed.length ? `; ${result.failed.length} failed` : ''
  const summary = result.dryRun
    ? `would restore ${result.entries} of ${result.entries} quarantined blobs${failed}`
    : `restored ${result.restored} of ${result.entries} quarantined blobs${failed}`
  return `${table}\n${summary}`
}

export function exitCode(result: QuarantineOpResult): number {
  return result.failed.length > 0 ? ExitCode.Partial : ExitCode.Ok
}
