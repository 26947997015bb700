import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {
  databaseUrlFlag,
  dryRunFlag,
  durationFlag,
  jobIdFlag,
  metricsFlags,
  regionFlag,
  requestRateFlags,
  requestRatesOf,
} from '../../flags.js'
import {applyRequestRates, requestsToQueue} from '../../lib/storage/index.js'
import {formatDurationSpec} from '../../lib/config/duration.js'
import {purgeQuarantine} from '../../lib/sweep/restore-purge.js'
import * as formatter from '../../formatters/sweep-purge.js'
import {assertCacheAllowsActing} from '../../lib/registry/descriptor-cache.js'

export default class SweepPurge extends RegopsCommand<formatter.SweepPurgeResult> {
  static override summary =
    'Finish quarantines whose hold time has passed: delete what is still unreferenced, rescue what is referenced again.'
  static override description =
    'Dry-run unless --delete. The reference check is fresh (a new walk, or the database), so a blob pushed again while it sat in quarantine goes back to the blob store.'
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --delete --hold-for 7d',
  ]
  static override flags = {
    region: regionFlag,
    'database-url': databaseUrlFlag,
    'hold-for': durationFlag({
      summary: 'Hold time (default: sweep.holdFor, 7d). A unit is required: 7d, 36h.',
      unsafeBelow: '1h',
      unsafeBecause: 'it leaves no time to notice a mistake and restore',
    }),
    strategy: Flags.option({
      options: ['storage', 'metadata'] as const,
      default: 'storage' as const,
      summary: 'Where the fresh reference check comes from.',
    })(),
    'dry-run': dryRunFlag(['delete']),
    delete: Flags.boolean({summary: 'Delete (and rescue). Default: dry-run.', exclusive: ['dry-run']}),
    job: jobIdFlag({summary: 'Only the quarantine of this sweep job.'}),
    force: Flags.boolean({summary: 'Accept a --hold-for below 1h.'}),
    'registry-read-only': Flags.boolean({
      summary: 'State that the registry is read-only or stopped: allows --delete with registry.cache inmemory.',
    }),
    ...requestRateFlags(),
    ...metricsFlags,
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<formatter.SweepPurgeResult> {
    const {flags} = await this.parse(SweepPurge)
    const holdForMs = flags['hold-for']?.ms ?? this.configuration().sweep.holdForMs
    if (flags.delete) assertCacheAllowsActing(this.configuration().registryCache.mode, flags['registry-read-only'])
    const db = await this.database({schema: 'current', neededFor: 'sweep purge'})
    const driver = await this.region(flags.region)
    const rates = requestRatesOf(flags)
    applyRequestRates(driver, rates)
    const result = await purgeQuarantine({
      db,
      driver,
      holdForMs,
      strategy: flags.strategy,
      dryRun: !flags.delete,
      jobId: flags.job,
      concurrency: requestsToQueue(rates, this.configuration().regions[driver.region]),
      logger: this.logger,
    })
    return {...result, holdFor: formatDurationSpec(holdForMs)}
  }
}
