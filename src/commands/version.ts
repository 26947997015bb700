import {RegopsCommand} from '../base-command.js'
import * as formatter from '../formatters/version.js'

export default class Version extends RegopsCommand<formatter.VersionResult> {
  static override summary =
    'The version of regops, and the Node.js and platform it runs on (also: regops -v, regops --version).'
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']
  protected readonly formatter = formatter

  protected async execute(): Promise<formatter.VersionResult> {
    return {
      kind: 'version',
      version: this.config.version,
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
    }
  }
}
