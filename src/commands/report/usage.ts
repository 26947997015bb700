import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {regionFlag} from '../../flags.js'
import {formatDurationSpec} from '../../lib/config/duration.js'
import {reportUsage} from '../../lib/report/usage.js'
import {resolveQuarantine} from '../../lib/sweep/quarantine-prefix.js'
import * as formatter from '../../formatters/report-usage.js'

export default class ReportUsageCommand extends RegopsCommand<formatter.ReportUsageResult> {
  static override summary =
    'Storage accounting of a region: bytes referenced, orphaned, metadata, upload debris, quarantined and outside the layout, per namespace.'
  static override description = `Reads only. Every object of one listing of the registry root falls in exactly one category, and the categories add up to the listing (checked: a difference is a bug, exit 70). Pending S3 multipart uploads are upload debris that no object listing shows: they are counted beside the listing.
A blob referenced by several namespaces counts in each one's attributed bytes (which can add up to more than the referenced total); exclusive bytes are those only one namespace references, and with the shared bytes they add up to the referenced total.
Exit 0 when the report is complete, 3 when a repository or the multipart listing could not be read.`
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --by repository --region eu --json',
  ]
  static override flags = {
    region: regionFlag,
    by: Flags.option({
      options: ['namespace', 'repository'] as const,
      default: 'namespace' as const,
      summary: 'Group by namespace (first component of the repository name) or by repository.',
    })(),
    concurrency: Flags.integer({
      summary: 'Manifest reads in flight (default: the region’s concurrency).',
      min: 1,
      max: 1024,
    }),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<formatter.ReportUsageResult> {
    const {flags} = await this.parse(ReportUsageCommand)
    const config = this.configuration()
    const driver = await this.region(flags.region)
    const progress = this.progress('usage')
    return reportUsage({
      driver,
      by: flags.by,
      quarantinePrefix: resolveQuarantine(config.sweep.quarantine, driver.region),
      minAge: {ms: config.sweep.minAgeMs, text: formatDurationSpec(config.sweep.minAgeMs)},
      concurrency: flags.concurrency ?? Math.max(16, config.regions[driver.region].concurrency),
      logger: this.logger,
      signal: this.interruptible(),
      onProgress: (phase, objects) => progress.update(`${phase}: ${objects} objects listed`, {phase, objects}),
    })
  }
}
