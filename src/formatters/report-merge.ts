import type {MergeableKind} from '../lib/report/merge-kinds.js'
import type {ReportMergeResult} from '../lib/report/merge.js'
import {renderTable} from '../lib/output/format.js'
import type {Formatter} from './formatter.js'
import * as auditIntegrity from './audit-integrity.js'
import * as auditRegions from './audit-regions.js'
import * as importFormatter from './import.js'
import * as replicate from './replicate.js'
import * as sweepBlobs from './sweep-blobs.js'

/** Each mergeable command's own formatter: it judges each shard's report, and renders the merged one. */
const FORMATTERS: Record<MergeableKind, Formatter<any>> = {
  import: importFormatter,
  'sweep-blobs': sweepBlobs,
  'audit-regions': auditRegions,
  'audit-integrity': auditIntegrity,
  replicate,
}

/** A shard report's exit code, as the command that wrote it decided it. */
export function shardExitCode(kind: MergeableKind, report: Record<string, unknown>): number {
  return FORMATTERS[kind].exitCode(report)
}

export function render(result: ReportMergeResult): string {
  const shards = renderTable(
    ['shard', 'report', 'job', 'exit'],
    result.shards.map((s) => [`${s.index}/${s.count}`, s.file, String(s.run.jobId ?? ''), s.exitCode]),
  )
  return [
    `${result.of}: ${result.shardCount} shard reports merged; exit ${result.exitCode} (the worst of the shards)`,
    shards,
    FORMATTERS[result.of].render(result.merged),
  ].join('\n')
}

export function exitCode(result: ReportMergeResult): number {
  return result.exitCode
}
