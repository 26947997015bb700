import {Command, Help} from '@oclif/core'
import {EXIT_CODE_TABLE} from './lib/errors.js'

function exitCodeSection(): string {
  const rows = EXIT_CODE_TABLE.map(([code, meaning]) => `  ${String(code).padEnd(6)}${meaning}`)
  return ['EXIT CODES', ...rows].join('\n')
}

/** oclif's help, plus the exit-code table on the root help and on every command's help. */
export default class RegopsHelp extends Help {
  protected override async showRootHelp(): Promise<void> {
    await super.showRootHelp()
    this.log(`\n${exitCodeSection()}`)
  }

  override formatCommand(command: Command.Loadable): string {
    return `${super.formatCommand(command)}\n${exitCodeSection()}\n`
  }
}
