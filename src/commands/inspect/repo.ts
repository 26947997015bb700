import {Args} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {regionFlag} from '../../flags.js'
import {inspectRepository, type RepositoryInspection} from '../../lib/inspect/inspect-repo.js'
import {assertRepositoryName} from '../../lib/storage/layout.js'
import * as formatter from '../../formatters/inspect-repo.js'

export default class InspectRepo extends RegopsCommand<RepositoryInspection> {
  static override summary = 'One repository: tags, manifests, total and unique size, last push.'
  static override description =
    'Read from storage in --region (default: primary). Exits 0 when the repository exists, 1 when it does not.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> team/app',
    '<%= config.bin %> <%= command.id %> team/app --region us --json',
  ]
  static override args = {name: Args.string({required: true, description: 'repository name'})}
  static override flags = {region: regionFlag}
  protected readonly formatter = formatter

  protected async execute(): Promise<RepositoryInspection> {
    const {args, flags} = await this.parse(InspectRepo)
    const name = assertRepositoryName(args.name)
    return inspectRepository(await this.region(flags.region), name)
  }
}
