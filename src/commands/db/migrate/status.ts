import {RegopsCommand} from '../../../base-command.js'
import {ExitCode} from '../../../lib/errors.js'
import {openConfiguredDatabase} from '../../../lib/metadata/connect.js'
import {migrationStatus, type MigrationStatus} from '../../../lib/metadata/migrations.js'
import {renderTable} from '../../../lib/output/format.js'
import {databaseUrlFlag} from '../../../lib/output/flags.js'

export default class MigrateStatus extends RegopsCommand<MigrationStatus> {
  static override summary = 'Show applied, pending and drifted migrations (exit 1 unless the schema is current and clean).'
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']
  static override flags = {'database-url': databaseUrlFlag}

  public async run(): Promise<MigrationStatus> {
    const {flags} = await this.parse(MigrateStatus)
    const db = openConfiguredDatabase(this.loadConfig({databaseUrl: flags['database-url']}))
    try {
      const status = await migrationStatus(db)
      this.say(
        renderTable(
          ['version', 'name', 'state', 'applied at', 'ms'],
          status.migrations.map((m) => [m.version, m.name, m.state, m.appliedAt ?? '', m.executionMs ?? '']),
        ),
      )
      this.say(`current v${status.current}, latest v${status.latest}`)
      if (status.migrations.some((m) => m.state !== 'applied')) this.exitCode = ExitCode.Found
      return status
    } finally {
      await db.close()
    }
  }
}
