import {ExitCode} from '../lib/errors.js'
import type {SweepMarkResult} from '../lib/sweep/shared-marks.js'

export function render(result: SweepMarkResult): string {
  const shard = `${result.shard.index}/${result.shard.count}`
  const lines = [
    `mark run ${result.runId}, shard ${shard} of region ${result.region}: ${result.repositories} repositories, ` +
      `${result.manifests} manifests, ${result.youngLinks} young links, ${result.marks} marks written ` +
      `in ${(result.durationMs / 1000).toFixed(1)} s`,
    result.complete
      ? result.runFinished
        ? `every shard has finished: sweep with regops sweep blobs --marks ${result.runId}`
        : 'other shards of the run have not finished yet'
      : `incomplete: ${result.problemCount} problem(s); a sweep on this run will not act until this shard is run again`,
  ]
  if (result.prunedRuns.length > 0)
    lines.push(`deleted ${result.prunedRuns.length} mark run(s) older than 7 days: ${result.prunedRuns.join(', ')}`)
  return lines.join('\n')
}

/** An incomplete shard is partial work: run it again. */
export function exitCode(result: SweepMarkResult): number {
  return result.complete ? ExitCode.Ok : ExitCode.Partial
}
