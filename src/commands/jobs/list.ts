import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {databaseUrlFlag} from '../../flags.js'
import {listJobs} from '../../lib/jobs/store.js'
import * as formatter from '../../formatters/jobs-list.js'

export default class JobsList extends RegopsCommand<formatter.JobsListResult> {
  static override summary = 'Past and running jobs (imports, sweeps, …) with their status and shard.'
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --kind sweep-blobs --json',
  ]
  static override flags = {
    'database-url': databaseUrlFlag,
    kind: Flags.string({summary: 'Only jobs of this kind (import, sweep-blobs, …).'}),
    limit: Flags.integer({summary: 'How many, newest first.', default: 50, min: 1}),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<formatter.JobsListResult> {
    const {flags} = await this.parse(JobsList)
    const db = await this.database({schema: 'any'})
    return {kind: 'jobs-list', jobs: await listJobs(db, {kind: flags.kind, limit: flags.limit})}
  }
}
