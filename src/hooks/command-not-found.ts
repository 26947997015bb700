import {type Hook, toConfiguredId} from '@oclif/core'
import pluginNotFound from '@oclif/plugin-not-found'
import {ExitCode} from '../lib/errors.js'

/**
 * A mistyped command. At a terminal, @oclif/plugin-not-found asks "Did you mean …?" and runs the answer.
 * From a script (no TTY) or with --json it would print no suggestion and plain text where JSON was
 * promised, so there we print the suggestion, or the documented JSON error, and exit 2 (usage).
 */
const hook: Hook.CommandNotFound = async function (opts) {
  const json = opts.argv?.includes('--json') ?? false
  if (!json && process.stdin.isTTY && process.stderr.isTTY) return pluginNotFound.call(this, opts)
  const typed = toConfiguredId(opts.id, opts.config)
  const candidates = [
    ...opts.config.commands.filter((c) => !c.hidden).map((c) => c.id),
    ...opts.config.topics.map((t) => t.name),
  ]
  const suggestion = closest(opts.id, candidates)
  const message = `${typed} is not a ${opts.config.bin} command${suggestion ? `; did you mean ${toConfiguredId(suggestion, opts.config)}?` : ''}`
  const hint = `${opts.config.bin} help lists the commands`
  if (json) {
    const error = {code: 'COMMAND_NOT_FOUND', message, exitCode: ExitCode.Usage, hint}
    process.stdout.write(JSON.stringify({kind: 'error', error, warnings: []}, null, 2) + '\n')
  } else {
    process.stderr.write(`error: ${message}\nhint: ${hint}\n`)
  }
  this.exit(ExitCode.Usage)
}

/** The candidate within a few edits of what was typed (a typo, not a different word), or undefined. */
export function closest(typed: string, candidates: string[]): string | undefined {
  let best: {id: string; distance: number} | undefined
  for (const id of new Set(candidates)) {
    const distance = editDistance(typed, id)
    if (!best || distance < best.distance) best = {id, distance}
  }
  return best && best.distance <= Math.max(2, Math.floor(typed.length / 3)) ? best.id : undefined
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({length: b.length + 1}, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]
}

export default hook
