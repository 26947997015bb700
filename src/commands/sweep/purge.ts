import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {ExitCode, RefusedError} from '../../lib/errors.js'
import {parseDuration} from '../../lib/config/duration.js'
import {openConfiguredDatabase} from '../../lib/metadata/connect.js'
import {assertSchemaCurrent} from '../../lib/metadata/migrations.js'
import {formatBytes, renderTable} from '../../lib/output/format.js'
import {databaseUrlFlag, regionFlag} from '../../lib/output/flags.js'
import {openRegion} from '../../lib/storage/index.js'
import {purgeQuarantine, type QuarantineOpResult} from '../../lib/sweep/restore-purge.js'
import {assertCacheAllowsActing} from '../../lib/registry/descriptor-cache.js'

export default class SweepPurge extends RegopsCommand<QuarantineOpResult> {
  static override summary = 'Finish quarantines whose hold time has passed: delete what is still unreferenced, rescue what is referenced again.'
  static override description = 'Dry-run unless --delete. The reference check is fresh (a new walk, or the database), so a blob pushed again while it sat in quarantine goes back to the blob store.'
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --delete --hold-for 7d']
  static override flags = {
    region: regionFlag,
    'database-url': databaseUrlFlag,
    'hold-for': Flags.string({summary: 'Hold time (default: sweep.holdFor, 7d).'}),
    strategy: Flags.option({options: ['storage', 'metadata'] as const, default: 'storage' as const, summary: 'Where the fresh reference check comes from.'})(),
    delete: Flags.boolean({summary: 'Delete (and rescue). Default: dry-run.'}),
    job: Flags.string({summary: 'Only the quarantine of this sweep job.'}),
    force: Flags.boolean({summary: 'Accept a --hold-for below 1h.'}),
    'registry-read-only': Flags.boolean({summary: 'State that the registry is read-only or stopped: allows --delete with registry.cache inmemory.'}),
  }

  public async run(): Promise<QuarantineOpResult> {
    const {flags} = await this.parse(SweepPurge)
    const config = this.loadConfig({databaseUrl: flags['database-url']})
    const holdForMs = flags['hold-for'] ? parseDuration(flags['hold-for'], '--hold-for') : config.sweep.holdForMs
    if (holdForMs < 3_600_000 && !flags.force) {
      throw new RefusedError('--hold-for below 1h leaves no time to notice a mistake: pass --force to accept it')
    }
    if (flags.delete) assertCacheAllowsActing(config.registryCache.mode, flags['registry-read-only'])
    const driver = await openRegion(config, flags.region)
    const db = openConfiguredDatabase(config)
    try {
      await assertSchemaCurrent(db)
      const result = await purgeQuarantine({db, driver, holdForMs, strategy: flags.strategy, dryRun: !flags.delete, jobId: flags.job, logger: this.logger})
      this.say(renderTable(['digest', 'action', 'size'], result.items.map((i) => [i.digest, result.dryRun ? `would ${i.action}` : i.action, formatBytes(i.size)])))
      this.say(
        result.dryRun
          ? `dry-run: ${result.items.filter((i) => i.action === 'purge').length} to purge, ${result.items.filter((i) => i.action === 'rescue').length} to rescue; act with --delete`
          : `purged ${result.purged} (${formatBytes(result.bytes)}), rescued ${result.rescued}${result.failed.length ? `, ${result.failed.length} failed` : ''}`,
      )
      this.exitCode = result.failed.length > 0 ? ExitCode.Partial : result.problems.length > 0 || (result.dryRun && result.entries > 0) ? ExitCode.Found : ExitCode.Ok
      return result
    } finally {
      await db.close()
      await driver.close()
    }
  }
}
