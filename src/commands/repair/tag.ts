import {Args, Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {databaseUrlFlag, regionFlag} from '../../flags.js'
import {parseManifestReference} from '../../lib/inspect/inspect-manifest.js'
import {repairTag, type RepairTagResult} from '../../lib/repair/repair-tag.js'
import {assertDigest} from '../../lib/storage/layout.js'
import {UsageError} from '../../lib/errors.js'
import * as formatter from '../../formatters/repair-tag.js'

export default class RepairTag extends RegopsCommand<RepairTagResult> {
  static override summary =
    'Point a tag back at a digest from its index history (and its database row, when configured).'
  static override description =
    "Dry-run unless --apply. Refused (exit 4) when the digest is not in the tag's history or the repository no longer serves that manifest. With --apply the move is journaled and regops journal undo ENTRY moves it back."
  static override examples = [
    '<%= config.bin %> <%= command.id %> team/app:latest --to sha256:…',
    '<%= config.bin %> <%= command.id %> team/app:latest --to sha256:… --apply',
  ]
  static override args = {reference: Args.string({required: true, description: 'REPO:TAG'})}
  static override flags = {
    region: regionFlag,
    'database-url': databaseUrlFlag,
    to: Flags.string({summary: "Digest to point the tag at (one from the tag's index history).", required: true}),
    apply: Flags.boolean({summary: 'Move the tag (default: dry-run).'}),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<RepairTagResult> {
    const {args, flags} = await this.parse(RepairTag)
    const reference = parseManifestReference(args.reference)
    if (!reference.tag) throw new UsageError(`repair tag takes REPO:TAG, not a digest reference ('${args.reference}')`)
    const to = assertDigest(flags.to, '--to')
    const config = this.configuration()
    const db = flags.apply
      ? await this.database({schema: 'current', neededFor: 'repair tag --apply (its journal)'})
      : config.database
        ? await this.database({schema: 'current'})
        : undefined
    return repairTag({
      driver: await this.region(flags.region),
      repository: reference.repository,
      tag: reference.tag,
      to,
      apply: flags.apply,
      db,
    })
  }
}
