import {Args, Flags} from '@oclif/core'
import {RegopsCommand} from '../../../base-command.js'
import {createMigration, DEFAULT_MIGRATIONS_DIR} from '../../../lib/metadata/migrations.js'
import * as formatter from '../../../formatters/db-migrate-create.js'

export default class MigrateCreate extends RegopsCommand<formatter.MigrateCreateResult> {
  static override summary = 'Create the next numbered pair of empty migration files (NNNN_name.up.sql / .down.sql).'
  static override examples = ['<%= config.bin %> <%= command.id %> add_blob_placements']
  static override args = {name: Args.string({required: true, description: 'lower-case words joined by _'})}
  // No flag default: it would be this machine's absolute path, in --help and in the README.
  static override flags = {
    dir: Flags.string({
      summary: 'Migrations directory (default: the migrations/ shipped with regops).',
      helpValue: '<dir>',
    }),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<formatter.MigrateCreateResult> {
    const {args, flags} = await this.parse(MigrateCreate)
    return {kind: 'db-migrate-create', ...(await createMigration(flags.dir ?? DEFAULT_MIGRATIONS_DIR, args.name))}
  }
}
