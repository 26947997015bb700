// Kill points for crash trials: a CLI run is SIGKILLed (no handler runs, as when a pod is OOM-killed or its
// node is lost) once a condition on what it has written so far holds. Conditions on the run's own traces
// (journal rows, checkpoints, applied migrations) rather than on time keep a seed's kill point in the
// same place of the work on a quiet machine and on a loaded one.
import type {ChildProcess} from 'node:child_process'
import type {CliRun} from '../helpers/cli.js'

export interface KilledRun {
  /** false when the run ended by itself before its kill point came */
  killed: boolean
  run: CliRun
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Polls `reached` every `everyMs` while the run lives and SIGKILLs it the first time it answers true. A
 * probe that throws (a table not created yet) counts as not reached.
 */
export async function killWhen(
  started: {child: ChildProcess; done: Promise<CliRun>},
  reached: () => Promise<boolean>,
  everyMs = 4,
): Promise<KilledRun> {
  let ended = false
  const done = started.done.finally(() => (ended = true))
  while (!ended) {
    const now = await reached().catch(() => false)
    if (now && !ended) {
      started.child.kill('SIGKILL')
      break
    }
    await sleep(everyMs)
  }
  const run = await done
  return {killed: run.signal === 'SIGKILL', run}
}

/** A condition that holds once `condition` has held for `delayMs` (a seeded offset past a trace). */
export function heldFor(condition: () => Promise<boolean>, delayMs: number): () => Promise<boolean> {
  let since: number | undefined
  return async () => {
    if (since === undefined) {
      if (!(await condition())) return false
      since = Date.now()
    }
    return Date.now() - since >= delayMs
  }
}
