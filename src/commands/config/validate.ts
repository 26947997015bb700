import {RegopsCommand} from '../../base-command.js'
import {configSearchPaths} from '../../lib/config/config.js'
import {UsageError} from '../../lib/errors.js'
import * as formatter from '../../formatters/config-validate.js'

export default class ConfigValidate extends RegopsCommand<formatter.ConfigValidateResult> {
  static override summary = 'Validate the configuration file; errors name the field and line (exit 2).'
  static override description =
    'With no file found at --config, $REGOPS_CONFIG or ./regops.yaml there is nothing to validate: exit 2, naming where it looked.'
  static override examples = ['<%= config.bin %> <%= command.id %> --config regops.yaml']
  protected readonly formatter = formatter

  protected async execute(): Promise<formatter.ConfigValidateResult> {
    const config = this.configuration()
    // "valid" for an absent file would pass a preflight that checks nothing.
    if (!config.file)
      throw new UsageError(`no configuration file found (looked for ${configSearchPaths()})`, {
        code: 'CONFIG_NOT_FOUND',
        hint: 'pass --config FILE or set REGOPS_CONFIG',
      })
    const regions = Object.keys(config.regions)
    return {kind: 'config-validate', valid: true, file: config.file, regions, primary: config.primary ?? null}
  }
}
