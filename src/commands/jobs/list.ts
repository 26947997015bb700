import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {openConfiguredDatabase} from '../../lib/metadata/connect.js'
import {listJobs, type Job} from '../../lib/jobs/store.js'
import {renderTable} from '../../lib/output/format.js'
import {databaseUrlFlag} from '../../lib/output/flags.js'

export interface JobsListResult {
  kind: 'jobs'
  jobs: Job[]
}

export default class JobsList extends RegopsCommand<JobsListResult> {
  static override summary = 'Past and running jobs (imports, sweeps, …) with their status and shard.'
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --kind sweep-blobs --json']
  static override flags = {
    'database-url': databaseUrlFlag,
    kind: Flags.string({summary: 'Only jobs of this kind (import, sweep-blobs, …).'}),
    limit: Flags.integer({summary: 'How many, newest first.', default: 50, min: 1}),
  }

  public async run(): Promise<JobsListResult> {
    const {flags} = await this.parse(JobsList)
    const db = openConfiguredDatabase(this.loadConfig({databaseUrl: flags['database-url']}))
    try {
      const jobs = await listJobs(db, {kind: flags.kind, limit: flags.limit})
      this.say(
        renderTable(
          ['id', 'kind', 'shard', 'status', 'started', 'finished', 'owner', 'error'],
          jobs.map((j) => [j.id, j.kind, `${j.shardIndex}/${j.shardCount}`, j.status, j.startedAt?.toISOString(), j.finishedAt?.toISOString(), j.owner, j.error]),
        ),
      )
      return {kind: 'jobs', jobs}
    } finally {
      await db.close()
    }
  }
}
