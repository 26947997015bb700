import {Args, Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {databaseUrlFlag} from '../../flags.js'
import {inspectBlob, type BlobInspection} from '../../lib/inspect/inspect-blob.js'
import {assertDigest, assertRepositoryName} from '../../lib/storage/layout.js'
import * as formatter from '../../formatters/inspect-blob.js'

export default class InspectBlob extends RegopsCommand<BlobInspection> {
  static override summary =
    'One blob from every side: regions holding it, repositories linking it, manifests referencing it, quarantines, journal.'
  static override description =
    'References come from the database when one is configured, else from a walk of every repository (narrowed by --repository). Exits 0 when the blob is in at least one region, 1 when it is in none.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> sha256:…',
    '<%= config.bin %> <%= command.id %> sha256:… --verify --repository team/app --json',
  ]
  static override args = {digest: Args.string({required: true, description: 'sha256:<64 hex> or sha512:<128 hex>'})}
  static override flags = {
    'database-url': databaseUrlFlag,
    verify: Flags.boolean({summary: 'Re-hash the blob in every region that holds it.'}),
    repository: Flags.string({
      summary: 'Look for links and references only in this repository (a storage walk; repeatable).',
      multiple: true,
    }),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<BlobInspection> {
    const {args, flags} = await this.parse(InspectBlob)
    const digest = assertDigest(args.digest)
    for (const name of flags.repository ?? []) assertRepositoryName(name, '--repository')
    const config = this.configuration()
    const db = config.database ? await this.database({schema: 'current'}) : undefined
    const names = [config.primary, ...Object.keys(config.regions).filter((name) => name !== config.primary)].filter(
      (n): n is string => Boolean(n),
    )
    const drivers = await Promise.all(names.map((name) => this.region(name)))
    return inspectBlob({
      digest,
      drivers,
      db,
      quarantineSetting: config.sweep.quarantine,
      verify: flags.verify,
      repositories: flags.repository,
    })
  }
}
