import {Args, Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {databaseUrlFlag, regionFlag} from '../../flags.js'
import {repairLinks, type RepairLinksResult} from '../../lib/repair/repair-links.js'
import {assertRepositoryName} from '../../lib/storage/layout.js'
import * as formatter from '../../formatters/repair-links.js'

export default class RepairLinks extends RegopsCommand<RepairLinksResult> {
  static override summary =
    'Recreate a repository\'s missing _layers links (the "blob unknown" pull failure) and missing revision links of its tags.'
  static override description =
    'Dry-run unless --apply: lists the links it would write (exit 1 when there are any). With --apply each link is journaled and can be removed again with regops journal undo ENTRY. A link to a blob the region does not hold is reported, never written. A repository that does not exist is refused (exit 4).'
  static override examples = [
    '<%= config.bin %> <%= command.id %> team/app',
    '<%= config.bin %> <%= command.id %> team/app --apply --json',
  ]
  static override args = {repository: Args.string({required: true, description: 'repository name'})}
  static override flags = {
    region: regionFlag,
    'database-url': databaseUrlFlag,
    apply: Flags.boolean({summary: 'Write the missing links (default: dry-run).'}),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<RepairLinksResult> {
    const {args, flags} = await this.parse(RepairLinks)
    const repository = assertRepositoryName(args.repository)
    const db = flags.apply
      ? await this.database({schema: 'current', neededFor: 'repair links --apply (its journal)'})
      : undefined
    return repairLinks(await this.region(flags.region), repository, db ? {mode: 'apply', db} : {mode: 'dry-run'})
  }
}
