import {Args} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {databaseUrlFlag} from '../../flags.js'
import {getJob} from '../../lib/jobs/store.js'
import * as formatter from '../../formatters/jobs-show.js'

export default class JobsShow extends RegopsCommand<formatter.JobShowResult> {
  static override summary = 'One job: parameters, checkpoint, stats and error.'
  static override examples = ['<%= config.bin %> <%= command.id %> 42']
  static override args = {id: Args.string({required: true, description: 'job id'})}
  static override flags = {'database-url': databaseUrlFlag}
  protected readonly formatter = formatter

  protected async execute(): Promise<formatter.JobShowResult> {
    const {args} = await this.parse(JobsShow)
    return {kind: 'jobs-show', job: await getJob(await this.database({schema: 'any'}), args.id)}
  }
}
