import {ExitCode} from '../lib/errors.js'
import {renderPairs} from '../lib/output/format.js'
import type {RepairTagResult} from '../lib/repair/repair-tag.js'

const STATE: Record<RepairTagResult['state'], string> = {
  'would-move': 'would move (dry-run: --apply moves it)',
  moved: 'moved',
  failed: 'FAILED',
  unchanged: 'already points there: nothing to do',
}

export function render(r: RepairTagResult): string {
  return renderPairs([
    ['tag', `${r.repository}:${r.tag} (region ${r.region})`],
    ['from', r.from ?? '(no current link)'],
    ['to', r.to],
    ['state', STATE[r.state]],
    ['database', r.database],
    ['journal', r.entry ? `${r.entry} (regops journal undo ${r.entry})` : undefined],
    ...(r.error ? [['error', r.error] as [string, string]] : []),
  ])
}

export function exitCode(r: RepairTagResult): number {
  if (r.state === 'failed' || r.database === 'failed') return ExitCode.Partial
  return r.state === 'would-move' ? ExitCode.Found : ExitCode.Ok
}
