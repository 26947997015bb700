import type {Job} from '../lib/jobs/store.js'
import {renderTable} from '../lib/output/format.js'

export interface JobsListResult {
  kind: 'jobs-list'
  jobs: Job[]
}

export function render({jobs}: JobsListResult): string {
  return renderTable(
    ['id', 'kind', 'shard', 'status', 'started', 'finished', 'owner', 'error'],
    jobs.map((j) => [
      j.id,
      j.kind,
      `${j.shardIndex}/${j.shardCount}`,
      j.status,
      j.startedAt?.toISOString(),
      j.finishedAt?.toISOString(),
      j.owner,
      j.error,
    ]),
  )
}

export function exitCode(): number {
  return 0
}
