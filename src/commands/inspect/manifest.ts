import {Args} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {regionFlag} from '../../flags.js'
import {inspectManifest, parseManifestReference, type ManifestInspection} from '../../lib/inspect/inspect-manifest.js'
import * as formatter from '../../formatters/inspect-manifest.js'

export default class InspectManifest extends RegopsCommand<ManifestInspection> {
  static override summary =
    'One manifest: media type, children or layers with sizes, tags now and in their history, referrers, blobs present in every region.'
  static override description =
    'Read from storage in --region (default: primary); blob presence is checked in every configured region. Exits 0 when the manifest exists, 1 when it does not.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> team/app:latest',
    '<%= config.bin %> <%= command.id %> team/app@sha256:… --json',
  ]
  static override args = {reference: Args.string({required: true, description: 'REPO@DIGEST or REPO:TAG'})}
  static override flags = {region: regionFlag}
  protected readonly formatter = formatter

  protected async execute(): Promise<ManifestInspection> {
    const {args, flags} = await this.parse(InspectManifest)
    const reference = parseManifestReference(args.reference)
    const config = this.configuration()
    const first = await this.region(flags.region)
    const others = await Promise.all(
      Object.keys(config.regions)
        .filter((name) => name !== first.region)
        .map((name) => this.region(name)),
    )
    return inspectManifest([first, ...others], reference)
  }
}
