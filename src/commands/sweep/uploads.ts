import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {
  databaseUrlFlag,
  dryRunFlag,
  durationFlag,
  failOnFlag,
  metricsFlags,
  regionFlag,
  requestRateFlags,
  requestRatesOf,
} from '../../flags.js'
import {applyRequestRates} from '../../lib/storage/index.js'
import {sweepUploads} from '../../lib/sweep/sweep-uploads.js'
import * as formatter from '../../formatters/sweep-uploads.js'

export default class SweepUploadsCommand extends RegopsCommand<formatter.SweepUploadsCommandResult> {
  static override summary =
    'Find abandoned _uploads (started and last written before --older-than); delete them only with --delete.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> --older-than 7d',
    '<%= config.bin %> <%= command.id %> --older-than 7d --delete',
  ]
  static override flags = {
    region: regionFlag,
    'database-url': databaseUrlFlag,
    'older-than': durationFlag({
      summary: 'Age of an abandoned upload. A unit is required: 7d, 36h.',
      default: '7d',
      unsafeBelow: '1h',
      unsafeBecause: 'it would cut off uploads in progress',
    }),
    'dry-run': dryRunFlag(['delete']),
    delete: Flags.boolean({summary: 'Delete them (journaled). Default: dry-run.', exclusive: ['dry-run']}),
    force: Flags.boolean({summary: 'Accept an --older-than below 1h.'}),
    ...requestRateFlags(),
    ...metricsFlags,
    'fail-on': failOnFlag(),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<formatter.SweepUploadsCommandResult> {
    const {flags} = await this.parse(SweepUploadsCommand)
    const olderThan = flags['older-than']
    // Deleting journals each upload, so only --delete needs the database.
    const db = flags.delete ? await this.database({schema: 'current', neededFor: '--delete'}) : undefined
    const driver = await this.region(flags.region)
    applyRequestRates(driver, requestRatesOf(flags))
    const result = await sweepUploads({
      driver,
      db,
      olderThanMs: olderThan.ms,
      delete: flags.delete,
      logger: this.logger,
    })
    return {...result, olderThan: olderThan.text}
  }
}
