import type {Job} from '../lib/jobs/store.js'
import {renderPairs} from '../lib/output/format.js'

export interface JobShowResult {
  kind: 'jobs-show'
  job: Job
}

export function render({job}: JobShowResult): string {
  return renderPairs([
    ['id', job.id],
    ['kind', job.kind],
    ['status', job.status],
    ['shard', `${job.shardIndex}/${job.shardCount}`],
    ['owner', job.owner],
    ['started', job.startedAt?.toISOString()],
    ['finished', job.finishedAt?.toISOString()],
    ['heartbeat', job.heartbeatAt?.toISOString()],
    ['params', JSON.stringify(job.params)],
    ['checkpoint', JSON.stringify(job.checkpoint)],
    ['stats', JSON.stringify(job.stats)],
    ['error', job.error],
  ])
}

export function exitCode(): number {
  return 0
}
