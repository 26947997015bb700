import {RegopsCommand} from '../../base-command.js'
import {redactedConfig} from '../../lib/config/config.js'
import {renderPairs} from '../../lib/output/format.js'

export interface ConfigShowResult {
  kind: 'config'
  config: Record<string, unknown>
}

export default class ConfigShow extends RegopsCommand<ConfigShowResult> {
  static override summary = 'Show the effective configuration (file, then environment, then flags), secrets as ***.'
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --config prod.yaml --json']

  public async run(): Promise<ConfigShowResult> {
    await this.parse(ConfigShow)
    const config = redactedConfig(this.loadConfig())
    const regions = config.regions as Record<string, {kind: string; url: string; endpoint?: string; credentials?: string}>
    this.say(
      renderPairs([
        ['file', config.file as string],
        ['database', (config.database as {url: string} | null)?.url],
        ['primary', config.primary as string],
        ['registry', (config.registry as {url: string} | null)?.url],
        ...Object.entries(regions).map(([name, r]): [string, string] => [
          `region ${name}`,
          `${r.url}${r.endpoint ? ` (endpoint ${r.endpoint})` : ''}${r.credentials ? ` [credentials: ${r.credentials}]` : ''}`,
        ]),
      ]),
    )
    return {kind: 'config', config}
  }
}
