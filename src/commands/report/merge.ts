import {Args} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {failOnFlag} from '../../flags.js'
import {mergeShardReports, type ReportMergeResult} from '../../lib/report/merge.js'
import * as formatter from '../../formatters/report-merge.js'

export default class ReportMerge extends RegopsCommand<ReportMergeResult> {
  static override summary =
    'Merge the --json reports of the shards of one run (import, sweep blobs, audit regions, audit integrity, replicate) into one report and one exit code.'
  static override description = `Counts add up, lists join, settings must agree; each shard's job, timing and files are listed per shard. The exit code is the worst of the shards' (0 < 1 < 3).
Refused (exit 2, nothing merged) when the reports are of different commands, when a shard is missing or given twice, when shards ran with different settings, or when a report is a failed run's error. Load test reports merge with loadtest merge.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> shard-0.json shard-1.json shard-2.json shard-3.json',
    '<%= config.bin %> <%= command.id %> reports/*.json --fail-on never --json',
  ]
  static override strict = false
  static override args = {
    reports: Args.string({description: 'Shard reports: the --json output of each shard.', required: true}),
  }
  static override flags = {
    'fail-on': failOnFlag(),
  }

  protected readonly formatter = formatter

  protected async execute(): Promise<ReportMergeResult> {
    const {argv} = await this.parse(ReportMerge)
    return mergeShardReports(argv as string[], formatter.shardExitCode)
  }
}
