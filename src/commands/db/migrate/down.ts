import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../../base-command.js'
import {databaseUrlFlag, durationFlag} from '../../../flags.js'
import {migrateDown, type MigrateDownResult} from '../../../lib/metadata/migrations.js'
import * as formatter from '../../../formatters/db-migrate-down.js'

export default class MigrateDown extends RegopsCommand<MigrateDownResult> {
  static override summary = 'Revert the latest applied migrations (default one), each in its own transaction.'
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --steps 2 --dry-run',
  ]
  static override flags = {
    'database-url': databaseUrlFlag,
    steps: Flags.integer({summary: 'How many migrations to revert.', default: 1, min: 1}),
    'dry-run': Flags.boolean({summary: 'Print the SQL that would run; revert nothing.'}),
    'lock-timeout': Flags.integer({
      summary: 'Seconds to wait for another migration run to finish.',
      default: 30,
      min: 0,
    }),
    'statement-lock-timeout': durationFlag({
      summary:
        'How long a migration statement waits for a table lock another session holds before the migration fails (PostgreSQL lock_timeout; 0 waits as long as it takes).',
      default: '10s',
    }),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<MigrateDownResult> {
    const {flags} = await this.parse(MigrateDown)
    return migrateDown(await this.database({schema: 'any'}), {
      steps: flags.steps,
      dryRun: flags['dry-run'],
      lockTimeoutMs: flags['lock-timeout'] * 1000,
      statementLockTimeoutMs: flags['statement-lock-timeout'].ms,
      onReverted: (run) => this.logger.info(`reverted ${run.file}`, {ms: run.ms}),
    })
  }
}
