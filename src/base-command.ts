import {Command, Flags, Interfaces, Errors} from '@oclif/core'
import {ExitCode, RegopsError, errorMessage} from './lib/errors.js'
import {Logger, type LogFormat, type LogLevel} from './lib/output/logger.js'
import {redact, redactValue} from './lib/output/redact.js'
import {loadConfig, locateConfigFile, type ConfigOverrides, type RegopsConfig} from './lib/config/config.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof RegopsCommand)['baseFlags'] & T['flags']>

/** Every result has a `kind`, so a consumer of --json can dispatch on it. */
export interface CommandResult {
  kind: string
}

/**
 * The base of every regops command: global flags, configuration, logging, and the one place where
 * errors become exit codes and messages (secrets masked). Commands stay thin: parse, build context,
 * call one service, return its plain result, and set `this.exitCode` from what the service found.
 */
export abstract class RegopsCommand<T extends CommandResult> extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    config: Flags.string({
      summary: 'Configuration file (default: $REGOPS_CONFIG, then ./regops.yaml).',
      helpGroup: 'GLOBAL',
    }),
    'log-level': Flags.option({
      options: ['debug', 'info', 'warn', 'error', 'silent'] as const,
      default: 'info' as const,
      summary: 'Lowest level of log lines written to stderr.',
      helpGroup: 'GLOBAL',
      env: 'REGOPS_LOG_LEVEL',
    })(),
    'log-format': Flags.option({
      options: ['text', 'json'] as const,
      summary: 'Log line format on stderr (default: text on a TTY, json otherwise).',
      helpGroup: 'GLOBAL',
      env: 'REGOPS_LOG_FORMAT',
    })(),
  }

  protected logger: Logger = new Logger('info')
  /** The exit code the command ends with when it returns normally (0 clean, 1 found something, 3 partial). */
  protected exitCode: number = ExitCode.Ok
  private globalFlags: {config?: string; 'log-level': LogLevel; 'log-format'?: LogFormat} = {'log-level': 'info'}

  public abstract override run(): Promise<T>

  public override async init(): Promise<void> {
    await super.init()
    const {flags} = await this.parse(this.constructor as typeof RegopsCommand)
    this.globalFlags = flags as unknown as typeof this.globalFlags
    this.logger = new Logger(this.globalFlags['log-level'], this.globalFlags['log-format'])
  }

  /** Loads configuration: file (--config, REGOPS_CONFIG, ./regops.yaml), environment, then these flag overrides. */
  protected loadConfig(overrides: ConfigOverrides = {}): RegopsConfig {
    return loadConfig({file: locateConfigFile(this.globalFlags.config), overrides})
  }

  /** Human output: only when not --json; the result itself is what --json prints. */
  protected say(text: string): void {
    if (!this.jsonEnabled()) process.stdout.write(redact(text) + '\n')
  }

  protected override toSuccessJson(result: unknown): unknown {
    return redactValue(result)
  }

  protected override async finally(error: Error | undefined): Promise<unknown> {
    if (!error && this.exitCode !== ExitCode.Ok) process.exitCode = this.exitCode
    return super.finally(error)
  }

  protected override async catch(error: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    // oclif uses exceptions for --help, --version and this.exit(): let those through untouched.
    if (error instanceof Errors.ExitError || (error as {code?: string}).code === 'EEXIT') throw error
    const regops = error instanceof RegopsError ? error : undefined
    const exit = regops?.exitCode ?? error.oclif?.exit ?? ExitCode.Usage
    const message = redact(errorMessage(error))
    if (this.jsonEnabled()) {
      this.logJson({
        kind: 'error',
        error: {
          code: regops?.code ?? (error.oclif ? 'USAGE' : 'INTERNAL'),
          message,
          exitCode: exit,
          hint: regops?.hint ? redact(regops.hint) : undefined,
          details: regops?.details ? redactValue(regops.details) : undefined,
        },
      })
    } else {
      process.stderr.write(`error: ${message}\n`)
      if (regops?.hint) process.stderr.write(`hint: ${redact(regops.hint)}\n`)
    }
    if (!regops && !error.oclif) this.logger.debug('stack', {stack: redact(error.stack ?? '')})
    process.exitCode = exit
    // Message already written (masked); exit quietly with the code.
    throw new Errors.ExitError(exit)
  }
}
