import {setMaxListeners} from 'node:events'
import {Command, Errors, Flags, Interfaces} from '@oclif/core'
import {ExitCode, InternalError, RefusedError, RegopsError, UsageError, errorMessage} from './lib/errors.js'
import {Logger, routeProcessWarnings, type LogFormat, type LogLevel} from './lib/output/logger.js'
import {redact, redactValue} from './lib/output/redact.js'
import {defaultReportTarget, parseReportTarget, type ReportTarget} from './lib/output/report-target.js'
import {startProgress, type Progress} from './lib/output/progress.js'
import {configSearchPaths, loadConfig, locateConfigFile, type RegopsConfig} from './lib/config/config.js'
import {openConfiguredDatabase} from './lib/metadata/connect.js'
import {assertSchemaCurrent} from './lib/metadata/migrations.js'
import {REQUEST_LISTENERS_PER_SIGNAL, interruptOnSignals} from './lib/jobs/signals.js'
import {resolveTimeBox, type DailyWindow, type TimeBox} from './lib/jobs/time-box.js'
import {openDescriptorCache, type DescriptorCache} from './lib/registry/descriptor-cache.js'
import type {Db} from './lib/metadata/db.js'
import {openRegion, type StorageDriver} from './lib/storage/index.js'
import type {Duration, UnsafeBelow} from './flags.js'
import type {Formatter} from './formatters/formatter.js'
import {
  outcomeOf,
  pushMetrics,
  readCarriedOver,
  renderMetrics,
  writeMetricsFile,
  type MetricSample,
} from './lib/output/metrics.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<
  (typeof RegopsCommand)['baseFlags'] & T['flags']
>

/** Every result has a `kind`; the base command sets it to the command id (`db-migrate-up`), so --json consumers can dispatch on it. */
export interface CommandResult {
  kind: string
}

type ErrorWithExit = Error & {exitCode?: number; oclif?: {exit?: number}; code?: string}

/**
 * The base of every regops command: global flags, configuration, logging, the resources a command
 * opens (each registered with its cleanup the moment it exists, so an error anywhere still closes it),
 * and the one place where results are rendered and errors become exit codes (secrets masked).
 *
 * A command implements `execute()` (flags in, one service call, result out) and names its formatter.
 */
export abstract class RegopsCommand<T extends CommandResult> extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    config: Flags.string({
      summary: 'Configuration file (default: $REGOPS_CONFIG, then ./regops.yaml).',
      helpGroup: 'GLOBAL',
      helpValue: '<file>',
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
  /** Renders the result for a person and picks the exit code from it. */
  protected abstract readonly formatter: Formatter<T>
  private exitCodeOnSuccess: number = ExitCode.Ok
  /** the human summary's stream: stderr when a report (--report -) takes stdout */
  private summaryStream: NodeJS.WritableStream = process.stdout
  private readonly warnings: string[] = []
  private readonly cleanups: Array<() => unknown> = []
  private parsedFlags: Record<string, unknown> = {'log-level': 'info'}
  private loadedConfig?: RegopsConfig
  /** the end of this run's --max-duration or --window, when it has one */
  private timeBox?: TimeBox

  /** Flags in, one service call, result out. Resources come from region(), database(), interruptible(). */
  protected abstract execute(): Promise<T>

  public override async run(): Promise<T> {
    const result = await this.execute()
    await this.release()
    const exitCode = this.formatter.exitCode(result)
    this.exitCodeOnSuccess = this.failOn(exitCode)
    // The metrics say what was found (outcome findings) even when --fail-on never turns the exit code to 0.
    await this.recordRunMetrics(exitCode, this.formatter.metrics?.(result) ?? [])
    if (!this.jsonEnabled()) {
      const text = this.formatter.render(result)
      if (text) this.summaryStream.write(redact(text) + '\n')
    }
    return result
  }

  public override async init(): Promise<void> {
    await super.init()
    // Parse once here with the command's own flags, so resources (config, --database-url) need no help from run().
    const {flags} = await this.parse(this.constructor as typeof RegopsCommand)
    this.parsedFlags = flags
    const level = flags['log-level'] as LogLevel
    this.logger = new Logger(level, flags['log-format'] as LogFormat | undefined, undefined, {}, (message) =>
      this.warnings.push(message),
    )
    routeProcessWarnings(this.logger)
    // A long job's every log line says which job, region and shard it is from, as fields a log query can select on.
    if (this.formatter.metricsJob) {
      const labels = Object.entries(this.runLabels()).filter(([, value]) => value !== '')
      this.logger = this.logger.child({job: this.formatter.metricsJob, ...Object.fromEntries(labels)})
    }
    this.refuseUnsafeDurations(flags)
    // Before anything is opened: outside its window a run is refused, and the time box counts from here.
    this.timeBox = resolveTimeBox({
      maxDuration: flags['max-duration'] as Duration | undefined,
      window: flags.window as DailyWindow | undefined,
    })
  }

  /** --fail-on never turns "found something" (1) into 0 for a scheduled dry-run; no other code changes. */
  private failOn(exitCode: number): number {
    return this.parsedFlags['fail-on'] === 'never' && exitCode === ExitCode.Found ? ExitCode.Ok : exitCode
  }

  /** The configuration: file (--config, $REGOPS_CONFIG, ./regops.yaml), environment, then --database-url. */
  protected configuration(): RegopsConfig {
    this.loadedConfig ??= loadConfig({
      file: locateConfigFile(this.parsedFlags.config as string | undefined),
      overrides: {databaseUrl: this.parsedFlags['database-url'] as string | undefined},
    })
    return this.loadedConfig
  }

  /**
   * Where a report goes: `spec` as given (-, a path, file:// or s3://, written with the credentials of the
   * configured region of that bucket), else `defaultName` in the current directory or, when that cannot be
   * written, in $REGOPS_REPORT_DIR or the temp directory. A report on stdout moves the summary to stderr.
   */
  protected reportTarget(spec: string | undefined, defaultName?: string): ReportTarget | undefined {
    const target =
      spec !== undefined
        ? // Only an s3:// report needs the configuration (loadtest pull runs without one).
          parseReportTarget(spec, spec.startsWith('s3://') ? Object.values(this.configuration().regions) : [])
        : defaultName !== undefined
          ? defaultReportTarget(defaultName)
          : undefined
    if (target?.kind === 'stdout') {
      if (this.jsonEnabled())
        throw new UsageError('--json and a report on stdout (-) both want stdout: write the report to a file or s3://')
      this.summaryStream = process.stderr
    }
    return target
  }

  /** The storage driver of a region (default: primary), closed when the command ends however it ends. */
  protected async region(name?: string): Promise<StorageDriver> {
    const driver = await this.withConfigFileHint(() => openRegion(this.configuration(), name))
    this.onRelease(() => driver.close())
    return driver
  }

  /**
   * The configured database, closed when the command ends. `schema: 'current'` refuses (exit 4) when
   * migrations are pending or drifted, before the command reads or writes a row.
   */
  protected async database(options: {
    schema: 'current' | 'any'
    /** What needs it, for the error when none is configured: '--delete', 'import without --dry-run'. */
    neededFor?: string
    hint?: string
    applicationName?: string
    max?: number
  }): Promise<Db> {
    const config = this.configuration()
    if (!config.database && options.neededFor) {
      throw new UsageError(
        `${options.neededFor} needs a database (database.url in the config, DATABASE_URL or --database-url)`,
        {hint: options.hint},
      )
    }
    const db = await this.withConfigFileHint(async () =>
      openConfiguredDatabase(config, options.applicationName ?? `regops-${this.kind()}`, options.max),
    )
    this.onRelease(() => db.close())
    if (options.schema === 'current') await assertSchemaCurrent(db)
    return db
  }

  /** "No regions are configured" is a puzzle when the real cause is that no file was found: say where it looked. */
  private async withConfigFileHint<R>(open: () => Promise<R>): Promise<R> {
    try {
      return await open()
    } catch (error) {
      if (!(error instanceof UsageError) || this.configuration().file || error.hint) throw error
      throw new UsageError(error.message, {
        code: error.code,
        hint: `no config file found (looked for ${configSearchPaths()})`,
        cause: error,
      })
    }
  }

  /** The registry's blob-descriptor cache as configured (registry.cache), closed when the command ends. */
  protected registryCache(): DescriptorCache {
    const cache = openDescriptorCache(this.configuration().registryCache)
    this.onRelease(() => cache.close())
    return cache
  }

  /**
   * An AbortSignal that SIGINT/SIGTERM abort (a second signal kills), so a job can checkpoint and exit
   * 130/143; and that the end of the time box (--max-duration, --window) aborts, so it stops with exit 3.
   */
  protected interruptible(): AbortSignal {
    const interrupt = interruptOnSignals(this.timeBox)
    this.onRelease(() => interrupt.dispose())
    // Every request in flight listens on this one signal: a metadata sweep's mark and listing at
    // --concurrency 32 would pass Node's leak-warning threshold without any leak.
    setMaxListeners(REQUEST_LISTENERS_PER_SIGNAL, interrupt.signal)
    return interrupt.signal
  }

  /** A spinner on a TTY (a periodic log line elsewhere), stopped before the result is rendered. */
  protected progress(label: string): Progress {
    const progress = startProgress(label, this.logger, {enabled: !this.jsonEnabled()})
    this.onRelease(() => progress.stop())
    return progress
  }

  /** The command id as a result kind: `db:migrate:up` → `db-migrate-up`. */
  protected kind(): string {
    return (this.id ?? this.constructor.name.toLowerCase()).replaceAll(':', '-')
  }

  protected onRelease(cleanup: () => unknown): void {
    this.cleanups.push(cleanup)
  }

  /** Closes what the command opened, newest first; a failing close is logged, never hides the result. */
  private async release(): Promise<void> {
    while (this.cleanups.length > 0) {
      const cleanup = this.cleanups.pop()!
      try {
        await cleanup()
      } catch (error) {
        this.logger.warn(`cleanup failed: ${errorMessage(error)}`)
      }
    }
  }

  /**
   * Every duration flag declared with `unsafeBelow` is checked here, against `--force`: the guard and
   * its message exist once, whichever command and flag carry it.
   */
  private refuseUnsafeDurations(flags: Record<string, unknown>): void {
    const definitions = (this.constructor as typeof RegopsCommand).flags ?? {}
    for (const [name, definition] of Object.entries(definitions)) {
      const guard = (definition as {unsafeBelow?: UnsafeBelow}).unsafeBelow
      const value = flags[name] as Duration | undefined
      if (!guard || !value || value.ms >= guard.ms || flags.force) continue
      throw new RefusedError(`--${name} ${value.text} is below ${guard.text}: ${guard.because}`, {
        hint: `pass --force to accept ${value.text}; a bare number is not accepted, so this is the value you typed`,
      })
    }
  }

  // Metrics of a long-running command: written on every exit that got past parsing (result, refusal,
  // failure, interrupt), from the result through the formatter's metrics() or from the error's exit code.
  private readonly startedAt = performance.now()

  /** region, shard and mode as the flags state them, so that a run that fails early has the same series. */
  private runLabels(): Record<string, string> {
    const flags = this.parsedFlags
    const defined = (this.constructor as typeof RegopsCommand).flags ?? {}
    let region = (flags.region ?? flags.to ?? flags.regions) as string | undefined
    if (!region && 'region' in defined) {
      try {
        region = this.configuration().primary
      } catch {
        // a configuration error is the command's to report; the metrics go without the label
      }
    }
    if (!region && 'regions' in defined) region = 'all'
    const shard = flags.shard as {index: number; count: number} | undefined
    const acting = ['delete', 'quarantine', 'apply', 'repair'].find((name) => flags[name] === true)
    const mode =
      acting ??
      (flags.resume !== undefined
        ? 'resume'
        : flags['dry-run'] || ['delete', 'quarantine', 'apply', 'repair'].some((name) => name in defined)
          ? 'dry-run'
          : 'run')
    return {region: region ?? '', shard: shard ? `${shard.index}/${shard.count}` : '', mode}
  }

  private async recordRunMetrics(exitCode: number, samples: MetricSample[]): Promise<void> {
    const job = this.formatter.metricsJob
    const file = this.parsedFlags['metrics-file'] as string | undefined
    const gateway = this.parsedFlags.pushgateway as string | undefined
    if (!job || (!file && !gateway)) return
    const run = {
      job,
      labels: this.runLabels(),
      outcome: outcomeOf(exitCode),
      durationSeconds: Math.round(performance.now() - this.startedAt) / 1000,
      endedAt: Math.floor(Date.now() / 1000),
      samples,
    }
    const text = renderMetrics(run, file ? await readCarriedOver(file, run) : undefined)
    // Neither a metrics file nor a push decides the exit code: the job's work is done either way.
    if (file)
      await writeMetricsFile(file, text).catch((error) =>
        this.logger.warn(`metrics file ${file}: ${errorMessage(error)}`),
      )
    if (gateway)
      await pushMetrics(gateway, run, text).catch((error) =>
        this.logger.warn(`pushgateway: metrics not pushed: ${errorMessage(error)}`),
      )
  }

  protected override toSuccessJson(result: unknown): unknown {
    const {kind: _serviceKind, ...rest} = result as CommandResult
    return redactValue({kind: this.kind(), ...rest, warnings: this.warnings})
  }

  protected override toErrorJson(error: unknown): unknown {
    const regops = asRegopsError(error as ErrorWithExit)
    return redactValue({
      kind: 'error',
      error: {
        code: regops.code,
        message: regops.message,
        exitCode: regops.exitCode,
        hint: regops.hint,
        details: regops.details,
      },
      warnings: this.warnings,
    })
  }

  protected override async finally(error: Error | undefined): Promise<unknown> {
    await this.release()
    if (!error && this.exitCodeOnSuccess !== ExitCode.Ok) process.exitCode = this.exitCodeOnSuccess
    return super.finally(error)
  }

  protected override async catch(error: ErrorWithExit): Promise<unknown> {
    // oclif uses exceptions for --help, --version and this.exit(): let those through untouched.
    if (error instanceof Errors.ExitError || error.code === 'EEXIT') throw error
    await this.release()
    const regops = asRegopsError(error)
    await this.recordRunMetrics(regops.exitCode, [])
    if (this.jsonEnabled()) {
      this.logJson(this.toErrorJson(error))
    } else {
      process.stderr.write(`error: ${redact(regops.message)}\n`)
      if (regops.hint) process.stderr.write(`hint: ${redact(regops.hint)}\n`)
    }
    if (regops.exitCode === ExitCode.Internal) this.logger.error('stack', {stack: redact(error.stack ?? '')})
    process.exitCode = regops.exitCode
    // Message already written (masked); exit quietly with the code.
    throw new Errors.ExitError(regops.exitCode)
  }
}

/**
 * What kind of failure an error is. regops' own errors carry their code; oclif's parse errors are
 * usage errors (exit 2, nothing done); anything else is a bug (exit 70), never "nothing was done",
 * which may be false in the middle of a --delete.
 */
export function asRegopsError(error: ErrorWithExit): RegopsError {
  if (error instanceof RegopsError) return withoutParsePrefix(error)
  if (error.oclif?.exit !== undefined && error.oclif.exit !== ExitCode.Internal) {
    return new RegopsError(cleanParseMessage(error.message), error.oclif.exit, {
      code: 'USAGE',
      hint: 'see --help for the flags and their values',
    })
  }
  return new InternalError(error)
}

/** oclif wraps a flag's parse error as "Parsing --flag \n\t<message>\nSee more help with --help"; keep the message. */
function cleanParseMessage(message: string): string {
  const match = /^Parsing (--\S+) \n\t([\s\S]*?)\nSee more help with --help$/.exec(message)
  return match ? match[2] : message
}

function withoutParsePrefix(error: RegopsError): RegopsError {
  const cleaned = cleanParseMessage(error.message)
  if (cleaned !== error.message) error.message = cleaned
  return error
}
