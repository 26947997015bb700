import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {UsageError} from '../../lib/errors.js'
import {openDatabase} from '../../lib/metadata/db.js'
import {assertSchemaCurrent} from '../../lib/metadata/migrations.js'
import {interruptOnSignals} from '../../lib/jobs/signals.js'
import {databaseUrlFlag, regionFlag, shardFlag} from '../../lib/output/flags.js'
import {openRegion} from '../../lib/storage/index.js'
import {auditIntegrity, type AuditIntegrityResult} from '../../lib/audit/integrity.js'
import {exitCode, render} from '../../formatters/audit-integrity.js'
import {sampleFlag} from './regions.js'

export default class AuditIntegrity extends RegopsCommand<AuditIntegrityResult> {
  static override summary = "Re-hash a region's blobs against their digests (the scrub)."
  static override description = `Every blob's name is its hash: this reads blobs back and hashes them. --sample F re-hashes a fraction and states the bound it supports ("no corruption above X% at 95% confidence").
Exit 1 when a blob does not hash to its digest; 3 when some could not be read.`
  static override examples = ['<%= config.bin %> <%= command.id %> --region eu', '<%= config.bin %> <%= command.id %> --region us --sample 0.01 --json']
  static override flags = {
    region: regionFlag,
    sample: sampleFlag({default: 1}),
    findings: Flags.string({summary: 'JSON Lines file of the corrupt blobs.'}),
    shard: shardFlag(),
    resume: Flags.string({summary: 'Resume job ID from its checkpoint.'}),
    'database-url': databaseUrlFlag,
    concurrency: Flags.integer({summary: 'Re-hashes in flight.', default: 16, min: 1, max: 1024}),
  }

  public async run(): Promise<AuditIntegrityResult> {
    const {flags} = await this.parse(AuditIntegrity)
    const config = this.loadConfig({databaseUrl: flags['database-url']})
    const driver = await openRegion(config, flags.region)
    const db = config.database ? openDatabase(config.database.url) : undefined
    if (flags.resume && !db) throw new UsageError('--resume needs the database that holds the job')
    const interrupt = interruptOnSignals()
    try {
      if (db) await assertSchemaCurrent(db)
      const result = await auditIntegrity({driver, db, sample: flags.sample, findingsFile: flags.findings, shard: flags.shard, resume: flags.resume, concurrency: flags.concurrency, logger: this.logger, signal: interrupt.signal})
      this.exitCode = exitCode(result)
      this.say(render(result))
      return result
    } finally {
      interrupt.dispose()
      await db?.close()
      await driver.close()
    }
  }
}
