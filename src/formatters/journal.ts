import {renderTable} from '../lib/output/format.js'
import type {JournalRow} from '../lib/sweep/journal.js'

export interface JournalResult {
  kind: 'journal'
  entries: JournalRow[]
}

export function render({entries}: JournalResult): string {
  return renderTable(
    ['id', 'job', 'action', 'phase', 'region', 'key', 'size', 'at'],
    entries.map((e) => [
      e.id,
      e.jobId,
      e.action,
      e.phase + (e.intentId ? ` (of ${e.intentId})` : ''),
      e.region,
      e.key,
      e.size,
      e.at.toISOString(),
    ]),
  )
}

export function exitCode(): number {
  return 0
}
