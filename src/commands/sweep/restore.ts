import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {databaseUrlFlag, jobIdFlag, regionFlag, requestRateFlags, requestRatesOf} from '../../flags.js'
import {applyRequestRates} from '../../lib/storage/index.js'
import {assertDigest} from '../../lib/storage/layout.js'
import {restoreQuarantine, type QuarantineOpResult} from '../../lib/sweep/restore-purge.js'
import * as formatter from '../../formatters/sweep-restore.js'

export default class SweepRestore extends RegopsCommand<QuarantineOpResult> {
  static override summary = 'Undo a quarantine: move the blobs of a sweep job, or one digest, back into the blob store.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> --job 42',
    '<%= config.bin %> <%= command.id %> --digest sha256:…',
  ]
  static override flags = {
    region: regionFlag,
    'database-url': databaseUrlFlag,
    job: jobIdFlag({summary: 'Sweep job whose quarantined blobs to restore.', exactlyOne: ['job', 'digest']}),
    digest: Flags.string({summary: 'One quarantined blob to restore.', exactlyOne: ['job', 'digest']}),
    'dry-run': Flags.boolean({summary: 'List what would be restored.'}),
    ...requestRateFlags(),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<QuarantineOpResult> {
    const {flags} = await this.parse(SweepRestore)
    if (flags.digest) assertDigest(flags.digest, '--digest')
    const db = await this.database({schema: 'current', neededFor: 'sweep restore'})
    const driver = await this.region(flags.region)
    applyRequestRates(driver, requestRatesOf(flags))
    return restoreQuarantine({
      db,
      driver,
      jobId: flags.job,
      digest: flags.digest,
      dryRun: flags['dry-run'],
      logger: this.logger,
    })
  }
}
