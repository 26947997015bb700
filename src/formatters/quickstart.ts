import {ExitCode} from '../lib/errors.js'
import {fitText, formatDuration, renderTable} from '../lib/output/format.js'
import type {QuickstartResult} from '../lib/quickstart/quickstart.js'

export function render(result: QuickstartResult): string {
  const status = (found: string[], digest: string) => (found.includes(digest) ? 'found' : 'MISSED')
  const kept = !result.found.storage.includes(result.inFlight) && !result.found.metadata.includes(result.inFlight)
  const {upload, uploads, drift, loadtest: load} = result
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
    '\nDrift planted in region copy, named by the audit, repaired from local:',
    renderTable(
      ['finding', 'key', 'what was done to the copy', 'audit', 'after repair'],
      drift.planted.map((p) => [
        p.kind,
        p.key,
        p.why,
        drift.found.some((f) => f.kind === p.kind && f.key === p.key) ? 'found' : 'MISSED',
        drift.after.some((f) => f.key === p.key) ? 'STILL THERE' : 'repaired',
      ]),
    ),
    fitText(
      `load test: ${load.succeeded} of ${load.started} pulls of ${load.images.join(', ')} from the repaired copy, every body re-hashed; ` +
        `${load.failed} failed${load.dropped + load.cutOff > 0 ? `, ${load.dropped} starts dropped and ${load.cutOff} cut off (a busy host)` : ''}${Object.keys(load.errors).length ? ` (${JSON.stringify(load.errors)})` : ''}; pull p50 ${load.pullP50Ms} ms, p99 ${load.pullP99Ms} ms`,
    ),
    fitText(
      result.matches
        ? 'both strategies found exactly the planted orphans; the audit named exactly the planted drift, the repair fixed it, and every pull succeeded.'
        : 'MISMATCH: ' + mismatches(result).join('; ') + '.',
    ),
    // Each command on a line of its own under what it is for, so a narrow terminal breaks no command.
    `\nNext:\n${result.next.map((n) => `  # ${n.why}\n  ${n.command}`).join('\n')}`,
  ].join('\n')
}

/** What did not come out as planted, in words. */
function mismatches(result: QuickstartResult): string[] {
  const planted = result.planted.map((o) => o.digest).join(',')
  const out: string[] = []
  if (result.found.storage.join(',') !== planted || result.found.metadata.join(',') !== planted)
    out.push('the sweeps did not find exactly the planted orphans')
  if (!result.drift.named) out.push('the audit did not name exactly the planted drift')
  if (result.drift.after.length > 0 || result.drift.repair.failed > 0) out.push('the repair left drift behind')
  if (result.loadtest.failed > 0 || result.loadtest.succeeded === 0) out.push('pulls failed in the load test')
  if (out.length === 0) out.push('the in-flight layer or the upload was not treated as planted')
  return out
}

export function exitCode(result: QuickstartResult): number {
  return result.matches ? ExitCode.Ok : ExitCode.Found
}
