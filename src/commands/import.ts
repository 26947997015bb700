import {Flags} from '@oclif/core'
import {RegopsCommand} from '../base-command.js'
import {
  databaseUrlFlag,
  jobControlFlags,
  metricsFlags,
  regionFlag,
  requestRateFlags,
  requestRatesOf,
  shardFlag,
} from '../flags.js'
import {applyRequestRates, requestsToQueue} from '../lib/storage/index.js'
import {importStorage, type ImportResult} from '../lib/metadata/import.js'
import * as formatter from '../formatters/import.js'

export default class Import extends RegopsCommand<ImportResult> {
  static override summary = "Import a registry's storage into the metadata database."
  static override description = `Walks repositories/ of one region (distribution v2 layout): every repository, manifest revision (Docker schema 2 and schema 1, manifest lists, OCI manifests and indexes), config, layer, index child, _layers link and tag, and writes them to the metadata database in batches.
Idempotent: a second run over an unchanged store changes no row; a re-run removes rows whose links storage no longer has, and a full import (no --repository) removes the repositories of its shard that storage no longer has, journaled as delete-repository.
Repositories are read ahead of the writes; small ones are written many to a transaction, a large one alone, so each repository is imported whole or not at all; the job checkpoints after each repository and resumes with --resume JOB. --shard i/n splits by repository (stable hash); give every shard the same --group.
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
      summary:
        'Import group shared by all shards of one import (default: a new UUID). The metadata sweep trusts the latest complete group.',
      env: 'REGOPS_IMPORT_GROUP',
    }),
    // A resumed job runs with the shard, repositories and group it was started with.
    resume: Flags.string({
      summary: 'Resume import job ID (see regops jobs list) after its checkpoint.',
      exclusive: ['shard', 'repository', 'group'],
    }),
    ...requestRateFlags('Storage reads in flight per repository'),
    ...jobControlFlags,
    'repository-concurrency': Flags.integer({
      summary: 'Repositories read from storage at once, ahead of the writes.',
      default: 8,
      min: 1,
      max: 64,
    }),
    'batch-size': Flags.integer({
      summary:
        'Manifests per write transaction: small repositories are written together up to this many; a larger one alone, streaming.',
      default: 1000,
      min: 1,
      max: 10_000,
    }),
    'blob-listing': Flags.boolean({
      summary:
        'List blobs/ once first instead of a stat per new blob (default: on for S3 when importing every repository, off for a filesystem or --repository).',
      allowNo: true,
    }),
    ...metricsFlags,
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<ImportResult> {
    const {flags} = await this.parse(Import)
    const dryRun = flags['dry-run']
    if (flags.shard && flags.shard.count > 1 && !flags.group && !flags.resume && !dryRun) {
      this.logger.warn(
        'sharded import without --group: each shard is its own import group, so the metadata sweep will not count them as one complete import; pass the same --group to every shard',
      )
    }
    const repositoryConcurrency = flags['repository-concurrency']
    // Two writers, each holding a transaction and borrowing a connection for the shared rows, plus the
    // job's heartbeat and checkpoint writes.
    const db = dryRun
      ? undefined
      : await this.database({
          schema: 'current',
          neededFor: 'import',
          hint: '--dry-run walks storage without one',
          applicationName: 'regops-import',
          max: 7,
        })
    const driver = await this.region(flags.region)
    // --concurrency keeps its meaning (per repository): the region's requests are pinned to all of them.
    const rates = requestRatesOf(flags)
    applyRequestRates(driver, {...rates, concurrency: rates.concurrency && rates.concurrency * repositoryConcurrency})
    const progress = this.progress('importing')
    return importStorage({
      driver,
      db,
      dryRun,
      shard: flags.shard,
      repositories: flags.repository,
      group: flags.group,
      resumeJobId: flags.resume,
      jobKey: flags['job-key'],
      concurrency: requestsToQueue(rates, this.configuration().regions[driver.region]),
      repositoryConcurrency,
      batchSize: flags['batch-size'],
      blobListing: flags['blob-listing'],
      logger: this.logger,
      signal: this.interruptible(),
      onProgress: (p) =>
        progress.update(
          `${dryRun ? 'walking' : 'importing'}: ${p.repositories} repositories, ${p.manifests} manifests (${Math.round(p.manifests / Math.max(0.001, p.elapsedMs / 1000))}/s), ${p.blobs} blobs, ${p.problems} problems${p.failed ? `, ${p.failed} failed` : ''}${p.current ? ` — ${p.current}` : ''}`,
          {phase: dryRun ? 'walk' : 'import', ...p},
        ),
    })
  }
}
