import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../../base-command.js'
import {openConfiguredDatabase} from '../../../lib/metadata/connect.js'
import {migrateUp, type MigrateUpResult} from '../../../lib/metadata/migrations.js'
import {databaseUrlFlag} from '../../../lib/output/flags.js'

export default class MigrateUp extends RegopsCommand<MigrateUpResult> {
  static override summary = 'Apply pending schema migrations, each in its own transaction, under an advisory lock.'
  static override description = 'Refuses (exit 4) when an applied migration file was edited afterwards (drift) or another migration run holds the lock past --lock-timeout.'
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --dry-run', '<%= config.bin %> <%= command.id %> --to 2']
  static override flags = {
    'database-url': databaseUrlFlag,
    to: Flags.integer({summary: 'Apply up to and including this version.', min: 1}),
    'dry-run': Flags.boolean({summary: 'Print the SQL that would run; apply nothing.'}),
    'lock-timeout': Flags.integer({summary: 'Seconds to wait for another migration run to finish.', default: 30, min: 0}),
  }

  public async run(): Promise<MigrateUpResult> {
    const {flags} = await this.parse(MigrateUp)
    const db = openConfiguredDatabase(this.loadConfig({databaseUrl: flags['database-url']}))
    try {
      const result = await migrateUp(db, {
        to: flags.to,
        dryRun: flags['dry-run'],
        lockTimeoutMs: flags['lock-timeout'] * 1000,
        onApplied: (run) => this.logger.info(`applied ${run.file}`, {ms: run.ms}),
      })
      if (result.dryRun) {
        this.say(result.sql?.join('\n') ?? '')
        this.say(`-- dry-run: would apply ${result.planned.length} migration(s), v${result.from} → v${result.to}`)
      } else {
        this.say(result.applied.length === 0 ? `schema is current at v${result.to}` : `applied ${result.applied.length} migration(s): v${result.from} → v${result.to}`)
      }
      return result
    } finally {
      await db.close()
    }
  }
}
