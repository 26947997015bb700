import {ExitCode} from '../lib/errors.js'
import {formatDuration, renderTable} from '../lib/output/format.js'
import type {QuickstartResult} from '../lib/quickstart/quickstart.js'

export function render(result: QuickstartResult): string {
  const status = (found: string[], digest: string) => (found.includes(digest) ? 'found' : 'MISSED')
  return [
    renderTable(['step', 'time', 'result'], result.steps.map((s) => [s.step, formatDuration(s.ms), s.detail])),
    '\nOrphaned blobs found (dry-run: nothing was deleted):',
    renderTable(
      ['digest', 'why it is an orphan', 'storage', 'metadata'],
      result.planted.map((o) => [o.digest, o.why, status(result.found.storage, o.digest), status(result.found.metadata, o.digest)]),
    ),
    `\nin-flight upload ${result.inFlight.slice(0, 19)}… left alone: ${result.found.storage.includes(result.inFlight) ? 'NO' : 'yes'} (younger than --min-age 24h)`,
    result.matches ? 'both strategies found exactly the planted orphans.' : 'MISMATCH: the sweeps did not find exactly the planted orphans.',
    `\nNext:\n${result.next.map((n) => `  ${n}`).join('\n')}`,
  ].join('\n')
}

export function exitCode(result: QuickstartResult): number {
  return result.matches ? ExitCode.Ok : ExitCode.Found
}
