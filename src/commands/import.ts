import {Flags} from '@oclif/core'
import {RegopsCommand} from '../base-command.js'
import {ExitCode, UsageError} from '../lib/errors.js'
import {openDatabase} from '../lib/metadata/db.js'
import {assertSchemaCurrent} from '../lib/metadata/migrations.js'
import {interruptOnSignals} from '../lib/jobs/signals.js'
import {importStorage, type ImportResult} from '../lib/metadata/import.js'
import {formatDuration, renderTable} from '../lib/output/format.js'
import {databaseUrlFlag, regionFlag, shardFlag} from '../lib/output/flags.js'
import {startProgress} from '../lib/output/progress.js'
import {openRegion} from '../lib/storage/index.js'

export default class Import extends RegopsCommand<ImportResult> {
  static override summary = "Import a registry's storage into the metadata database."
  static override description = `Walks repositories/ of one region (distribution v2 layout): every repository, manifest revision (Docker schema 2 and schema 1, manifest lists, OCI manifests and indexes), config, layer, index child, _layers link and tag, and writes them to the metadata database in batches.
Idempotent: a second run over an unchanged store changes no row; a re-run removes rows whose links storage no longer has.
Each repository is imported in one transaction; the job checkpoints after each repository and resumes with --resume JOB. --shard i/n splits by repository (stable hash); give every shard the same --group.
Unreadable input (corrupt link, garbage manifest, missing manifest blob, unknown media type) is reported with its key and the rest is imported: exit 1. Repositories that failed (database or storage errors): exit 3, resumable.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --region eu',
    '<%= config.bin %> <%= command.id %> --dry-run --repository team/app',
    "<%= config.bin %> <%= command.id %> --repository 'team/*' --json",
    '<%= config.bin %> <%= command.id %> --shard 2/8 --group nightly-2026-05-01',
    '<%= config.bin %> <%= command.id %> --resume 42',
  ]
  static override flags = {
    region: regionFlag,
    'database-url': databaseUrlFlag,
    'dry-run': Flags.boolean({summary: 'Walk and count only; write nothing (no database needed).'}),
    repository: Flags.string({
      summary: "Import only this repository, or those starting with a prefix ending in '*' (repeatable).",
      multiple: true,
    }),
    shard: shardFlag(),
    group: Flags.string({
      summary: 'Import group shared by all shards of one import (default: a new UUID). The metadata sweep trusts the latest complete group.',
      env: 'REGOPS_IMPORT_GROUP',
    }),
    resume: Flags.string({summary: 'Resume import job ID (see regops jobs list) after its checkpoint.'}),
    concurrency: Flags.integer({summary: 'Storage reads in flight per repository.', default: 16, min: 1, max: 1024}),
    'repository-concurrency': Flags.integer({summary: 'Repositories imported at once.', default: 4, min: 1, max: 64}),
    'batch-size': Flags.integer({summary: 'Manifests per write batch.', default: 200, min: 1, max: 10_000}),
  }

  public async run(): Promise<ImportResult> {
    const {flags} = await this.parse(Import)
    const config = this.loadConfig({databaseUrl: flags['database-url']})
    if (flags.resume && (flags.shard || flags.repository || flags.group)) {
      throw new UsageError('--resume takes the shard, repositories and group of the job it resumes: leave out --shard, --repository and --group')
    }
    const dryRun = flags['dry-run']
    if (!dryRun && !config.database) throw new UsageError('import needs a database (database.url, DATABASE_URL or --database-url); --dry-run walks storage without one')
    if (flags.shard && flags.shard.count > 1 && !flags.group && !flags.resume && !dryRun) {
      this.logger.warn('sharded import without --group: each shard is its own import group, so the metadata sweep will not count them as one complete import; pass the same --group to every shard')
    }
    const driver = await openRegion(config, flags.region)
    const repoConcurrency = flags['repository-concurrency']
    const db = dryRun ? undefined : openDatabase(config.database!.url, {applicationName: 'regops-import', max: repoConcurrency * 2 + 3})
    const interrupt = interruptOnSignals()
    const progress = startProgress('importing', this.logger, {enabled: !this.jsonEnabled()})
    try {
      if (db) await assertSchemaCurrent(db)
      const result = await importStorage({
        driver,
        db,
        dryRun,
        shard: flags.shard,
        repositories: flags.repository,
        group: flags.group,
        resumeJobId: flags.resume,
        concurrency: flags.concurrency,
        repositoryConcurrency: repoConcurrency,
        batchSize: flags['batch-size'],
        logger: this.logger,
        signal: interrupt.signal,
        onProgress: (p) =>
          progress.update(
            `${dryRun ? 'walking' : 'importing'}: ${p.repositories} repositories, ${p.manifests} manifests (${Math.round(p.manifests / Math.max(0.001, p.elapsedMs / 1000))}/s), ${p.blobs} blobs, ${p.problems} problems${p.failed ? `, ${p.failed} failed` : ''}${p.current ? ` — ${p.current}` : ''}`,
          ),
      })
      progress.stop()
      this.exitCode = importExitCode(result)
      this.say(renderImport(result))
      return result
    } finally {
      progress.stop()
      interrupt.dispose()
      await db?.close()
      await driver.close()
    }
  }
}

export function importExitCode(result: ImportResult): number {
  if (result.failed.length > 0) return ExitCode.Partial
  return result.problemCount > 0 ? ExitCode.Found : ExitCode.Ok
}

function renderImport(r: ImportResult): string {
  const lines = [
    renderTable(
      ['region', 'shard', 'repositories', 'manifests', 'tags', 'layers', 'references', 'layer links', r.dryRun ? 'blobs seen' : 'new blobs', 'problems', 'failed', 'time'],
      [[
        r.region,
        `${r.shard.index}/${r.shard.count}`,
        r.repositories,
        r.manifests,
        r.tags,
        r.layers,
        r.references,
        r.repositoryBlobs,
        r.blobs,
        r.problemCount,
        r.failed.length,
        formatDuration(r.durationMs),
      ]],
    ),
  ]
  for (const p of r.problems.slice(0, 20)) lines.push(`problem: ${p.kind} at ${p.key}: ${p.message.replace(` (at ${p.key})`, '')}`)
  if (r.problemCount > 20) lines.push(`... and ${r.problemCount - 20} more problems (see --json)`)
  for (const f of r.failed.slice(0, 20)) lines.push(`failed: ${f.repository}: ${f.message}`)
  if (r.dryRun) {
    lines.push('dry-run: nothing was written')
  } else {
    const w = r.written
    const deleted = w.deleted.manifests + w.deleted.tags + w.deleted.repositoryBlobs
    lines.push(
      `job ${r.jobId} (group ${r.group}): wrote ${w.manifests} manifests, ${w.blobs} blobs, ${w.layers} layers, ${w.references} references, ${w.tagsInserted + w.tagsUpdated} tags, ${w.repositoryBlobs} layer links${deleted ? `; removed ${w.deleted.manifests} manifests, ${w.deleted.tags} tags, ${w.deleted.repositoryBlobs} layer links storage no longer has` : ''}`,
    )
    if (r.failed.length > 0) lines.push(`partial: ${r.failed.length} repositories failed; resume with --resume ${r.jobId}`)
  }
  return lines.join('\n')
}
