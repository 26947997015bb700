import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {ExitCode, UsageError} from '../../lib/errors.js'
import {openConfiguredDatabase} from '../../lib/metadata/connect.js'
import {assertSchemaCurrent} from '../../lib/metadata/migrations.js'
import {formatBytes, renderTable} from '../../lib/output/format.js'
import {databaseUrlFlag, regionFlag} from '../../lib/output/flags.js'
import {assertDigest} from '../../lib/storage/layout.js'
import {openRegion} from '../../lib/storage/index.js'
import {restoreQuarantine, type QuarantineOpResult} from '../../lib/sweep/restore-purge.js'

export default class SweepRestore extends RegopsCommand<QuarantineOpResult> {
  static override summary = 'Undo a quarantine: move the blobs of a sweep job, or one digest, back into the blob store.'
  static override examples = ['<%= config.bin %> <%= command.id %> --job 42', '<%= config.bin %> <%= command.id %> --digest sha256:…']
  static override flags = {
    region: regionFlag,
    'database-url': databaseUrlFlag,
    job: Flags.string({summary: 'Sweep job whose quarantined blobs to restore.'}),
    digest: Flags.string({summary: 'One quarantined blob to restore.'}),
    'dry-run': Flags.boolean({summary: 'List what would be restored.'}),
  }

  public async run(): Promise<QuarantineOpResult> {
    const {flags} = await this.parse(SweepRestore)
    if (!flags.job && !flags.digest) throw new UsageError('name what to restore: --job ID or --digest sha256:…')
    if (flags.digest) assertDigest(flags.digest, '--digest')
    const config = this.loadConfig({databaseUrl: flags['database-url']})
    const driver = await openRegion(config, flags.region)
    const db = openConfiguredDatabase(config)
    try {
      await assertSchemaCurrent(db)
      const result = await restoreQuarantine({db, driver, jobId: flags.job, digest: flags.digest, dryRun: flags['dry-run'], logger: this.logger})
      this.say(renderTable(['digest', 'action', 'size'], result.items.map((i) => [i.digest, flags['dry-run'] ? 'would restore' : i.action, formatBytes(i.size)])))
      this.say(`${flags['dry-run'] ? 'would restore' : 'restored'} ${flags['dry-run'] ? result.entries : result.restored} of ${result.entries} quarantined blobs${result.failed.length ? `; ${result.failed.length} failed` : ''}`)
      this.exitCode = result.failed.length > 0 ? ExitCode.Partial : ExitCode.Ok
      return result
    } finally {
      await db.close()
      await driver.close()
    }
  }
}
