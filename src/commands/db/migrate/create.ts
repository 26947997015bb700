import {Args, Flags} from '@oclif/core'
import {RegopsCommand} from '../../../base-command.js'
import {createMigration, DEFAULT_MIGRATIONS_DIR} from '../../../lib/metadata/migrations.js'

export interface MigrateCreateResult {
  kind: 'migrate-create'
  version: number
  name: string
  upPath: string
  downPath: string
}

export default class MigrateCreate extends RegopsCommand<MigrateCreateResult> {
  static override summary = 'Create the next numbered pair of empty migration files (NNNN_name.up.sql / .down.sql).'
  static override examples = ['<%= config.bin %> <%= command.id %> add_blob_placements']
  static override args = {name: Args.string({required: true, description: 'lower-case words joined by _'})}
  static override flags = {dir: Flags.string({summary: 'Migrations directory.', default: DEFAULT_MIGRATIONS_DIR})}

  public async run(): Promise<MigrateCreateResult> {
    const {args, flags} = await this.parse(MigrateCreate)
    const created = await createMigration(flags.dir, args.name)
    this.say(`created ${created.upPath}\ncreated ${created.downPath}`)
    return {kind: 'migrate-create', ...created}
  }
}
