import {RegopsCommand} from '../../base-command.js'

export interface ConfigValidateResult {
  kind: 'config-validate'
  valid: true
  file: string | null
  regions: string[]
  primary: string | null
}

export default class ConfigValidate extends RegopsCommand<ConfigValidateResult> {
  static override summary = 'Validate the configuration; errors name the field and line (exit 2).'
  static override examples = ['<%= config.bin %> <%= command.id %> --config regops.yaml']

  public async run(): Promise<ConfigValidateResult> {
    await this.parse(ConfigValidate)
    const config = this.loadConfig()
    this.say(`valid: ${config.file ?? '(no file: environment only)'}; regions: ${Object.keys(config.regions).join(', ') || 'none'}`)
    return {kind: 'config-validate', valid: true, file: config.file ?? null, regions: Object.keys(config.regions), primary: config.primary ?? null}
  }
}
