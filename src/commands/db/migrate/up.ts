import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../../base-command.js'
import {databaseUrlFlag, durationFlag} from '../../../flags.js'
import {migrateUp, type MigrateUpResult} from '../../../lib/metadata/migrations.js'
import * as formatter from '../../../formatters/db-migrate-up.js'

export default class MigrateUp extends RegopsCommand<MigrateUpResult> {
  static override summary = 'Apply pending schema migrations, each in its own transaction, under an advisory lock.'
  static override description =
    'Refuses (exit 4) when an applied migration file was edited afterwards (drift) or another migration run holds the lock past --lock-timeout.'
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --dry-run',
    '<%= config.bin %> <%= command.id %> --to 2',
  ]
  static override flags = {
    'database-url': databaseUrlFlag,
    to: Flags.integer({summary: 'Apply up to and including this version.', min: 1}),
    'dry-run': Flags.boolean({summary: 'Print the SQL that would run; apply nothing.'}),
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

  protected async execute(): Promise<MigrateUpResult> {
    const {flags} = await this.parse(MigrateUp)
    return migrateUp(await this.database({schema: 'any'}), {
      to: flags.to,
      dryRun: flags['dry-run'],
      lockTimeoutMs: flags['lock-timeout'] * 1000,
      statementLockTimeoutMs: flags['statement-lock-timeout'].ms,
      onApplied: (run) => this.logger.info(`applied ${run.file}`, {ms: run.ms}),
    })
  }
}
