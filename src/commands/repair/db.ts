import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {databaseUrlFlag, regionFlag} from '../../flags.js'
import {repairDb, type RepairDbResult} from '../../lib/repair/repair-db.js'
import {assertRepositoryName} from '../../lib/storage/layout.js'
import * as formatter from '../../formatters/repair-db.js'

export default class RepairDb extends RegopsCommand<RepairDbResult> {
  static override summary =
    "Re-import one repository's metadata from storage where the two disagree, showing the difference first."
  static override description =
    'Dry-run unless --apply: shows manifests, _layers links and tags that differ (exit 1 when any do). --apply re-imports the repository in one transaction and journals it; a re-import cannot be undone. A repository in neither storage nor the database is refused (exit 4).'
  static override examples = [
    '<%= config.bin %> <%= command.id %> --repository team/app',
    '<%= config.bin %> <%= command.id %> --repository team/app --apply --json',
  ]
  static override flags = {
    region: regionFlag,
    'database-url': databaseUrlFlag,
    repository: Flags.string({summary: 'The repository to compare and re-import.', required: true}),
    apply: Flags.boolean({summary: 'Re-import it (default: dry-run).'}),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<RepairDbResult> {
    const {flags} = await this.parse(RepairDb)
    const repository = assertRepositoryName(flags.repository, '--repository')
    const db = await this.database({schema: 'current', neededFor: 'repair db'})
    return repairDb({driver: await this.region(flags.region), db, repository, apply: flags.apply, logger: this.logger})
  }
}
