import {ExitCode} from '../lib/errors.js'
import {fitText, formatDuration, renderTable} from '../lib/output/format.js'
import type {QuickstartResult} from '../lib/quickstart/quickstart.js'

export function render(result: QuickstartResult): string {
  const status = (found: string[], digest: string) => (found.includes(digest) ? 'found' : 'MISSED')
  const kept = !result.found.storage.includes(result.inFlight) && !result.found.metadata.includes(result.inFlight)
  const {upload, uploads} = result
  return [
    renderTable(
      ['step', 'time', 'result'],
      result.steps.map((s) => [s.step, formatDuration(s.ms), s.detail]),
    ),
    '\nOrphaned blobs found (dry-run: nothing was deleted):',
    renderTable(
      ['digest', 'why it is an orphan', 'storage', 'metadata'],
      result.planted.map((o) => [
        o.digest,
        o.why,
        status(result.found.storage, o.digest),
        status(result.found.metadata, o.digest),
      ]),
    ),
    // What protected each in-flight thing, so that "0 unreferenced but younger" does not read as a contradiction.
    fitText(
      `\nlayer ${result.inFlight.slice(0, 19)}… pushed minutes ago, its manifest not yet put: ` +
        (kept ? 'left alone, referenced by its _layers link (younger than --min-age 24h)' : 'NOT left alone'),
    ),
    fitText(
      `upload ${upload.uuid} in ${upload.repository}/_uploads (${upload.bytes} bytes so far): not a blob yet, so the blob sweeps do not see it; ` +
        `sweep uploads found ${uploads.found} upload(s) in progress, ${uploads.abandoned} abandoned`,
    ),
    result.matches
      ? 'both strategies found exactly the planted orphans.'
      : 'MISMATCH: the sweeps did not find exactly the planted orphans.',
    // Each command on a line of its own under what it is for, so a narrow terminal breaks no command.
    `\nNext:\n${result.next.map((n) => `  # ${n.why}\n  ${n.command}`).join('\n')}`,
  ].join('\n')
}

export function exitCode(result: QuickstartResult): number {
  return result.matches ? ExitCode.Ok : ExitCode.Found
}
