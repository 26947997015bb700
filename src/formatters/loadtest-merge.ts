import type {MergeReport} from '../lib/loadtest/report.js'
import {renderErrorsAndThresholds, renderStages} from './loadtest-pull.js'

export {exitCode} from './loadtest-pull.js'

/** The merged stage table, the summed pull counts, and each threshold judged once on the whole. */
export function render(result: MergeReport): string {
  const p = result.pulls
  return [
    renderStages(result.stages),
    `${result.shards.length} shards: ${p.started} pulls started, ${p.succeeded} succeeded, ${p.failed} failed, ${p.dropped} dropped, ${p.cutOff} cut off; ${result.tokenFetches} token fetches`,
    ...renderErrorsAndThresholds(result),
  ].join('\n')
}
