import {Args, Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {databaseUrlFlag, dryRunFlag, durationFlag, requestRateFlags, requestRatesOf} from '../../flags.js'
import {applyRequestRates, requestsToQueue} from '../../lib/storage/index.js'
import {applyPlan, type SweepApplyResult} from '../../lib/sweep/plan-apply.js'
import * as formatter from '../../formatters/sweep-apply.js'

export default class SweepApply extends RegopsCommand<SweepApplyResult> {
  static override summary = 'Act on exactly the candidates of a reviewed plan (sweep blobs --plan-out).'
  static override description = `Dry-run by default: verifies the plan and lists what it would do. --quarantine or --delete act.
Refused (exit 4) before anything is touched: a plan whose bytes are not the ones it was sealed with (one byte changed), one older than --max-age, one made on another store, or one whose store changed since (a push, a tag move, a delete in repositories/, or a candidate no longer as listed).
Each candidate is still re-checked just before it is touched: one referenced again is skipped and reported, never removed. Every action is journaled, as a sweep job; a stopped apply resumes with regops sweep blobs --resume JOB.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> plan.jsonl',
    '<%= config.bin %> <%= command.id %> plan.jsonl --quarantine --max-age 12h --json',
  ]
  static override args = {
    plan: Args.string({description: 'The plan file written by sweep blobs --plan-out.', required: true}),
  }
  static override flags = {
    'database-url': databaseUrlFlag,
    'dry-run': dryRunFlag(['delete', 'quarantine']),
    delete: Flags.boolean({summary: "Delete the plan's candidates (default: dry-run).", exclusive: ['quarantine']}),
    quarantine: Flags.boolean({
      summary: "Move the plan's candidates under the quarantine prefix instead of deleting them.",
      exclusive: ['delete'],
    }),
    'max-age': durationFlag({summary: 'Refuse a plan older than this. A unit is required: 24h, 90m.', default: '24h'}),
    ...requestRateFlags(),
    'registry-read-only': Flags.boolean({
      summary:
        'State that the registry is read-only or stopped: allows acting with registry.cache inmemory (restart it afterwards), and batches are not re-walked (one walk after the last checks it).',
    }),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<SweepApplyResult> {
    const {args, flags} = await this.parse(SweepApply)
    const mode = flags.delete ? 'delete' : flags.quarantine ? 'quarantine' : 'dry-run'
    const rates = requestRatesOf(flags)
    const common = {
      file: args.plan,
      maxAgeMs: flags['max-age'].ms,
      // The plan names its region: the same request rates as the sweep that made it apply once it is opened.
      region: async (name: string) => {
        const driver = await this.region(name)
        applyRequestRates(driver, rates)
        return driver
      },
      concurrency: requestsToQueue(rates),
      registryCache: this.registryCache(),
      registryReadOnly: flags['registry-read-only'],
      logger: this.logger,
      signal: this.interruptible(),
    }
    if (mode === 'dry-run') {
      // A dry-run asks the database, when there is one, whether this would be the region's first acting sweep.
      const db = this.configuration().database ? await this.database({schema: 'current'}) : undefined
      return applyPlan({...common, mode, db})
    }
    return applyPlan({...common, mode, db: await this.database({schema: 'current', neededFor: `--${mode}`})})
  }
}
