import {RegopsCommand} from '../../../base-command.js'
import {databaseUrlFlag} from '../../../flags.js'
import {migrationStatus, type MigrationStatus} from '../../../lib/metadata/migrations.js'
import * as formatter from '../../../formatters/db-migrate-status.js'

export default class MigrateStatus extends RegopsCommand<MigrationStatus> {
  static override summary =
    'Show applied, pending and drifted migrations (exit 1 unless the schema is current and clean).'
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']
  static override flags = {'database-url': databaseUrlFlag}
  protected readonly formatter = formatter

  protected async execute(): Promise<MigrationStatus> {
    return migrationStatus(await this.database({schema: 'any'}))
  }
}
