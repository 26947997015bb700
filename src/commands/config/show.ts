import {RegopsCommand} from '../../base-command.js'
import {redactedConfig} from '../../lib/config/config.js'
import * as formatter from '../../formatters/config-show.js'

export default class ConfigShow extends RegopsCommand<formatter.ConfigShowResult> {
  static override summary = 'Show the effective configuration (file, then environment, then flags), secrets as ***.'
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --config prod.yaml --json',
  ]
  protected readonly formatter = formatter

  protected async execute(): Promise<formatter.ConfigShowResult> {
    return {kind: 'config-show', config: redactedConfig(this.configuration())}
  }
}
