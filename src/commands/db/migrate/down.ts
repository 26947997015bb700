import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../../base-command.js'
import {openConfiguredDatabase} from '../../../lib/metadata/connect.js'
import {migrateDown, type MigrateDownResult} from '../../../lib/metadata/migrations.js'
import {databaseUrlFlag} from '../../../lib/output/flags.js'

export default class MigrateDown extends RegopsCommand<MigrateDownResult> {
  static override summary = 'Revert the latest applied migrations (default one), each in its own transaction.'
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --steps 2 --dry-run']
  static override flags = {
    'database-url': databaseUrlFlag,
    steps: Flags.integer({summary: 'How many migrations to revert.', default: 1, min: 1}),
    'dry-run': Flags.boolean({summary: 'Print the SQL that would run; revert nothing.'}),
    'lock-timeout': Flags.integer({summary: 'Seconds to wait for another migration run to finish.', default: 30, min: 0}),
  }

  public async run(): Promise<MigrateDownResult> {
    const {flags} = await this.parse(MigrateDown)
    const db = openConfiguredDatabase(this.loadConfig({databaseUrl: flags['database-url']}))
    try {
      const result = await migrateDown(db, {
        steps: flags.steps,
        dryRun: flags['dry-run'],
        lockTimeoutMs: flags['lock-timeout'] * 1000,
        onReverted: (run) => this.logger.info(`reverted ${run.file}`, {ms: run.ms}),
      })
      if (result.dryRun) this.say([...(result.sql ?? []), `-- dry-run: would revert ${result.planned.length} migration(s), v${result.from} → v${result.to}`].join('\n'))
      else this.say(`reverted ${result.reverted.length} migration(s): v${result.from} → v${result.to}`)
      return result
    } finally {
      await db.close()
    }
  }
}
