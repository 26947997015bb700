import {ExitCode} from '../lib/errors.js'
import {renderPairs} from '../lib/output/format.js'
import type {UndoResult} from '../lib/repair/undo.js'

export function render(r: UndoResult): string {
  return renderPairs([
    ['entry', `${r.entry} (${r.action} ${r.key}, region ${r.region})`],
    ['undo', r.undo],
    ['state', r.state === 'would-undo' ? 'would undo (dry-run: --apply undoes it)' : r.state],
    ['journal', r.undoEntry],
    ...(r.error ? [['error', r.error] as [string, string]] : []),
  ])
}

export function exitCode(r: UndoResult): number {
  if (r.state === 'failed') return ExitCode.Partial
  return r.state === 'would-undo' ? ExitCode.Found : ExitCode.Ok
}
