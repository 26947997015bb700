import {Flags} from '@oclif/core'
import {RegopsCommand} from '../base-command.js'
import {databaseUrlFlag, jobControlFlags, metricsFlags, requestRateFlags, requestRatesOf, shardFlag} from '../flags.js'
import {applyRequestRates, requestsToQueue} from '../lib/storage/index.js'
import {replicate, type ReplicateResult} from '../lib/audit/replicate.js'
import * as formatter from '../formatters/replicate.js'

export default class Replicate extends RegopsCommand<ReplicateResult> {
  static override summary = 'Copy every blob, manifest revision, link and tag a region lacks from another, verified.'
  static override description = `New-region backfill and storage migration. Blobs first (each re-hashed where it lands), then the repositories' revision links, _layers links and tags (each read back), so no tag ever names content the target lacks.
Objects the target holds with other content are reported as conflicts and left alone (audit regions and --repair decide those).
Dry-run unless --apply; every copy is journaled; resumable (--resume) and sharded (--shard).`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --from eu --to ap',
    '<%= config.bin %> <%= command.id %> --from eu --to ap --apply --shard 0/8',
    '<%= config.bin %> <%= command.id %> --from eu --to ap --resume 17',
  ]
  static override flags = {
    from: Flags.string({summary: 'The region copied from.', required: true}),
    to: Flags.string({summary: 'The region copied to.', required: true}),
    apply: Flags.boolean({summary: 'Copy (default: report what would be copied).'}),
    shard: shardFlag(),
    resume: Flags.string({summary: 'Resume job ID from its checkpoint.'}),
    ...jobControlFlags,
    'database-url': databaseUrlFlag,
    ...requestRateFlags('Copies in flight (and requests in flight per region)'),
    ...metricsFlags,
  }

  protected readonly formatter = formatter

  protected async execute(): Promise<ReplicateResult> {
    const {flags} = await this.parse(Replicate)
    const acting = flags.apply || flags.resume !== undefined
    // Every copy is journaled, so acting needs the database.
    const db = acting
      ? await this.database({schema: 'current', neededFor: flags.resume ? '--resume' : '--apply'})
      : undefined
    const from = await this.region(flags.from)
    const to = await this.region(flags.to)
    const rates = requestRatesOf(flags)
    for (const driver of [from, to]) applyRequestRates(driver, rates)
    const regions = this.configuration().regions
    const progress = this.progress('replicating')
    const common = {
      from,
      to,
      shard: flags.shard,
      resume: flags.resume,
      jobKey: flags['job-key'],
      concurrency: requestsToQueue(rates, regions[from.region], regions[to.region]),
      logger: this.logger,
      signal: this.interruptible(),
      onProgress: (p: {phase: string; copied: number; planned: number}) =>
        progress.update(`${p.phase}: ${p.copied} copied of ${p.planned} found so far`, {...p}),
    }
    return replicate(db ? {...common, mode: 'apply', db} : {...common, mode: 'dry-run'})
  }
}
