import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {
  databaseUrlFlag,
  failOnFlag,
  jobControlFlags,
  metricsFlags,
  regionFlag,
  requestRateFlags,
  requestRatesOf,
  shardFlag,
} from '../../flags.js'
import {applyRequestRates, requestsToQueue} from '../../lib/storage/index.js'
import {auditIntegrity, type AuditIntegrityResult} from '../../lib/audit/integrity.js'
import * as formatter from '../../formatters/audit-integrity.js'
import {sampleFlag} from './regions.js'

export default class AuditIntegrity extends RegopsCommand<AuditIntegrityResult> {
  static override summary = "Re-hash a region's blobs against their digests (the scrub)."
  static override description = `Every blob's name is its hash: this reads blobs back and hashes them. --sample F re-hashes a fraction and states the bound it supports ("no corruption above X% at 95% confidence").
Exit 1 when a blob does not hash to its digest; 3 when some could not be read.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --region eu',
    '<%= config.bin %> <%= command.id %> --region us --sample 0.01 --json',
  ]
  static override flags = {
    region: regionFlag,
    sample: sampleFlag({default: 1}),
    findings: Flags.string({summary: 'JSON Lines file of the corrupt blobs.'}),
    shard: shardFlag(),
    resume: Flags.string({summary: 'Resume job ID from its checkpoint.'}),
    ...jobControlFlags,
    'fail-on': failOnFlag(),
    'database-url': databaseUrlFlag,
    ...requestRateFlags('Re-hashes in flight'),
    ...metricsFlags,
  }

  protected readonly formatter = formatter

  protected async execute(): Promise<AuditIntegrityResult> {
    const {flags} = await this.parse(AuditIntegrity)
    // The database keeps the job (checkpoints, --resume); without one the scrub still runs, unresumable.
    const db =
      flags.resume || this.configuration().database
        ? await this.database({schema: 'current', neededFor: '--resume'})
        : undefined
    const driver = await this.region(flags.region)
    const rates = requestRatesOf(flags)
    applyRequestRates(driver, rates)
    return auditIntegrity({
      driver,
      db,
      sample: flags.sample,
      findingsFile: flags.findings,
      shard: flags.shard,
      resume: flags.resume,
      jobKey: flags['job-key'],
      concurrency: requestsToQueue(rates, this.configuration().regions[driver.region]),
      logger: this.logger,
      signal: this.interruptible(),
    })
  }
}
