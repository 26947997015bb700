import {Flags} from '@oclif/core'
import {RegopsCommand} from '../base-command.js'
import {UsageError} from '../lib/errors.js'
import {openDatabase} from '../lib/metadata/db.js'
import {assertSchemaCurrent} from '../lib/metadata/migrations.js'
import {interruptOnSignals} from '../lib/jobs/signals.js'
import {databaseUrlFlag, shardFlag} from '../lib/output/flags.js'
import {startProgress} from '../lib/output/progress.js'
import {openRegion} from '../lib/storage/index.js'
import {replicate, type ReplicateResult} from '../lib/audit/replicate.js'
import {exitCode, render} from '../formatters/replicate.js'

export default class Replicate extends RegopsCommand<ReplicateResult> {
  static override summary = 'Copy every blob, manifest revision, link and tag a region lacks from another, verified.'
  static override description = `New-region backfill and storage migration. Blobs first (each re-hashed where it lands), then the repositories' revision links, _layers links and tags (each read back), so no tag ever names content the target lacks.
Objects the target holds with other content are reported as conflicts and left alone (audit regions and --repair decide those).
Dry-run unless --apply; every copy is journaled; resumable (--resume) and sharded (--shard).`
  static override examples = ['<%= config.bin %> <%= command.id %> --from eu --to ap', '<%= config.bin %> <%= command.id %> --from eu --to ap --apply --shard 0/8', '<%= config.bin %> <%= command.id %> --from eu --to ap --resume 17']
  static override flags = {
    from: Flags.string({summary: 'The region copied from.', required: true}),
    to: Flags.string({summary: 'The region copied to.', required: true}),
    apply: Flags.boolean({summary: 'Copy (default: report what would be copied).'}),
    shard: shardFlag(),
    resume: Flags.string({summary: 'Resume job ID from its checkpoint.'}),
    'database-url': databaseUrlFlag,
    concurrency: Flags.integer({summary: 'Copies in flight.', default: 16, min: 1, max: 1024}),
  }

  public async run(): Promise<ReplicateResult> {
    const {flags} = await this.parse(Replicate)
    const config = this.loadConfig({databaseUrl: flags['database-url']})
    const acting = flags.apply || flags.resume !== undefined
    if (acting && !config.database) throw new UsageError(`${flags.resume ? '--resume' : '--apply'} journals every copy: it needs the database (database.url, DATABASE_URL or --database-url)`)
    const from = await openRegion(config, flags.from)
    const to = await openRegion(config, flags.to).catch(async (error: unknown) => {
      await from.close()
      throw error
    })
    const db = acting ? openDatabase(config.database!.url) : undefined
    const interrupt = interruptOnSignals()
    const progress = startProgress('replicating', this.logger, {enabled: !this.jsonEnabled()})
    try {
      if (db) await assertSchemaCurrent(db)
      const common = {from, to, shard: flags.shard, resume: flags.resume, concurrency: flags.concurrency, logger: this.logger, signal: interrupt.signal, onProgress: (p: {phase: string; copied: number; planned: number}) => progress.update(`${p.phase}: ${p.copied} copied of ${p.planned} found so far`)}
      const result = await replicate(db ? {...common, mode: 'apply', db} : {...common, mode: 'dry-run'})
      progress.stop()
      this.exitCode = exitCode(result)
      this.say(render(result))
      return result
    } finally {
      progress.stop()
      interrupt.dispose()
      await db?.close()
      await Promise.all([from.close(), to.close()])
    }
  }
}
