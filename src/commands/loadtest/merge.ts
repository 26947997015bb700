import {Args, Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {mergeReports, type MergeReport} from '../../lib/loadtest/report.js'
import * as formatter from '../../formatters/loadtest-merge.js'

export default class LoadtestMerge extends RegopsCommand<MergeReport> {
  static override summary =
    'Merge shard reports of loadtest pull exactly (HDR histograms add) and judge the thresholds once.'
  static override description = `Without --threshold, the thresholds the shards were run with are judged, each once, on the merged figures.`
  static override examples = [
    "<%= config.bin %> <%= command.id %> shard0.json shard1.json --threshold 'manifest.p99<250ms'",
  ]
  static override strict = false
  static override args = {
    reports: Args.string({description: 'Shard reports written by loadtest pull --report.', required: true}),
  }
  static override flags = {
    threshold: Flags.string({
      summary: "Pass/fail rule, repeatable: 'manifest.p99<250ms', 'errors.rate<0.1%'.",
      multiple: true,
    }),
  }

  protected readonly formatter = formatter

  protected async execute(): Promise<MergeReport> {
    const {argv, flags} = await this.parse(LoadtestMerge)
    return mergeReports(argv as string[], flags.threshold)
  }
}
