import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {databaseUrlFlag, durationFlag, regionFlag, requestRateFlags, requestRatesOf, shardFlag} from '../../flags.js'
import {applyRequestRates, requestsToQueue} from '../../lib/storage/index.js'
import {markShard, type SweepMarkResult} from '../../lib/sweep/shared-marks.js'
import * as formatter from '../../formatters/sweep-mark.js'

export default class SweepMark extends RegopsCommand<SweepMarkResult> {
  static override summary = 'Mark what the manifests of some repositories reference, for sharded sweeps to share.'
  static override description = `The storage strategy's mark, sharded by repository: shard i of n walks the manifests of its repositories and writes every digest they reference (and every blob a young _layers link protects) to the database under the mark run's id.
When every shard has finished, sweep blobs --marks ID --shard j/m reads those marks per digest prefix instead of walking every manifest itself: the manifests are read once however many sweep shards run.
A sweep refuses a run that has not finished, or that started before its cutoff (run the mark with the sweep's --min-age shortly before it).
A new run deletes the region's runs older than 7 days, with their marks: none of them can serve a sweep any more.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --mark-run nightly-2024-06-01 --shard 0/3',
    '<%= config.bin %> sweep blobs --marks nightly-2024-06-01 --shard 0/3',
  ]
  static override flags = {
    region: regionFlag,
    'database-url': databaseUrlFlag,
    'mark-run': Flags.string({
      summary: 'Id of the mark run: the same for every shard of it, new for each run.',
      required: true,
    }),
    shard: shardFlag(),
    'min-age': durationFlag({
      summary:
        'Grace period of the sweeps that will read this run: _layers links newer than this protect their blobs (default: sweep.minAge, 24h).',
      unsafeBelow: '1h',
      unsafeBecause: 'pushes in flight on a live registry upload blobs before the manifest that references them',
    }),
    force: Flags.boolean({summary: 'Accept a --min-age below 1h.'}),
    ...requestRateFlags(),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<SweepMarkResult> {
    const {flags} = await this.parse(SweepMark)
    const config = this.configuration()
    const db = await this.database({schema: 'current', neededFor: 'sweep mark'})
    const driver = await this.region(flags.region)
    const rates = requestRatesOf(flags)
    applyRequestRates(driver, rates)
    return markShard({
      db,
      driver,
      runId: flags['mark-run'],
      shard: flags.shard ?? {index: 0, count: 1},
      minAgeMs: flags['min-age']?.ms ?? config.sweep.minAgeMs,
      concurrency: requestsToQueue(rates, config.regions[driver.region]),
      signal: this.interruptible(),
      logger: this.logger,
    })
  }
}
