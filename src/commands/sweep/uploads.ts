import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {ExitCode, RefusedError} from '../../lib/errors.js'
import {parseDuration} from '../../lib/config/duration.js'
import {openConfiguredDatabase} from '../../lib/metadata/connect.js'
import {assertSchemaCurrent} from '../../lib/metadata/migrations.js'
import {formatBytes, renderTable} from '../../lib/output/format.js'
import {databaseUrlFlag, regionFlag} from '../../lib/output/flags.js'
import {openRegion} from '../../lib/storage/index.js'
import {sweepUploads, type SweepUploadsResult} from '../../lib/sweep/sweep-uploads.js'

export default class SweepUploadsCommand extends RegopsCommand<SweepUploadsResult> {
  static override summary = 'Find abandoned _uploads (started and last written before --older-than); delete them only with --delete.'
  static override examples = ['<%= config.bin %> <%= command.id %> --older-than 7d', '<%= config.bin %> <%= command.id %> --older-than 7d --delete']
  static override flags = {
    region: regionFlag,
    'database-url': databaseUrlFlag,
    'older-than': Flags.string({summary: 'Age of an abandoned upload.', default: '7d'}),
    delete: Flags.boolean({summary: 'Delete them (journaled). Default: dry-run.'}),
    force: Flags.boolean({summary: 'Accept an --older-than below 1h.'}),
  }

  public async run(): Promise<SweepUploadsResult> {
    const {flags} = await this.parse(SweepUploadsCommand)
    const config = this.loadConfig({databaseUrl: flags['database-url']})
    const olderThanMs = parseDuration(flags['older-than'], '--older-than')
    if (olderThanMs < 3_600_000 && !flags.force) {
      throw new RefusedError('--older-than below 1h would cut off uploads in progress: pass --force to accept it')
    }
    const driver = await openRegion(config, flags.region)
    const db = flags.delete ? openConfiguredDatabase(config) : undefined
    try {
      if (db) await assertSchemaCurrent(db)
      const result = await sweepUploads({driver, db, olderThanMs, delete: flags.delete, logger: this.logger})
      this.say(
        renderTable(
          ['repository', 'upload', 'started', 'last write', 'objects', 'size'],
          result.items.map((u) => [u.repository, u.uuid, u.startedAt, u.lastActivity, u.objects, formatBytes(u.bytes)]),
        ),
      )
      this.say(`${result.mode === 'dry-run' ? 'would delete' : 'deleted'} ${result.mode === 'dry-run' ? result.abandoned.count : result.deleted} of ${result.uploads} uploads in ${result.repositories} repositories (${formatBytes(result.abandoned.bytes)})`)
      this.exitCode = result.failed > 0 ? ExitCode.Partial : result.mode === 'dry-run' && result.abandoned.count > 0 ? ExitCode.Found : ExitCode.Ok
      return result
    } finally {
      await db?.close()
      await driver.close()
    }
  }
}
