import {Args} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {openConfiguredDatabase} from '../../lib/metadata/connect.js'
import {getJob, type Job} from '../../lib/jobs/store.js'
import {renderPairs} from '../../lib/output/format.js'
import {databaseUrlFlag} from '../../lib/output/flags.js'

export interface JobShowResult {
  kind: 'job'
  job: Job
}

export default class JobsShow extends RegopsCommand<JobShowResult> {
  static override summary = 'One job: parameters, checkpoint, stats and error.'
  static override examples = ['<%= config.bin %> <%= command.id %> 42']
  static override args = {id: Args.string({required: true, description: 'job id'})}
  static override flags = {'database-url': databaseUrlFlag}

  public async run(): Promise<JobShowResult> {
    const {args, flags} = await this.parse(JobsShow)
    const db = openConfiguredDatabase(this.loadConfig({databaseUrl: flags['database-url']}))
    try {
      const job = await getJob(db, args.id)
      this.say(
        renderPairs([
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
        ]),
      )
      return {kind: 'job', job}
    } finally {
      await db.close()
    }
  }
}
