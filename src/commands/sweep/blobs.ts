import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {ExitCode, RefusedError, UsageError} from '../../lib/errors.js'
import {parseDuration, parseSize} from '../../lib/config/duration.js'
import {openDatabase} from '../../lib/metadata/db.js'
import {assertSchemaCurrent} from '../../lib/metadata/migrations.js'
import {interruptOnSignals} from '../../lib/jobs/signals.js'
import {formatBytes, formatDuration, renderTable} from '../../lib/output/format.js'
import {databaseUrlFlag, regionFlag, shardFlag} from '../../lib/output/flags.js'
import {startProgress} from '../../lib/output/progress.js'
import {writeMetrics} from '../../lib/output/metrics.js'
import {openRegion} from '../../lib/storage/index.js'
import {sweepBlobs, type SweepBlobsResult, type SweepProgress} from '../../lib/sweep/sweep-blobs.js'
import {resolveQuarantine} from '../../lib/sweep/quarantine-prefix.js'
import {openDescriptorCache} from '../../lib/registry/descriptor-cache.js'

export default class SweepBlobs extends RegopsCommand<SweepBlobsResult> {
  static override summary = 'Find orphaned blobs; quarantine or delete them only when asked.'
  static override description = `Merges the sorted blob listing of each digest prefix against the sorted references (from a walk of every repository's manifests, or from the metadata database), so memory stays flat.
Dry-run by default: it reports candidates (count, bytes, reason) and writes them to a JSON Lines file, and exits 1 if it found any.
--delete or --quarantine act, after the grace cutoff (--min-age), a re-check of each batch just before it is touched, and a journal entry before and after.
A mark that could not read every manifest refuses to act (exit 4).`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --region eu',
    '<%= config.bin %> <%= command.id %> --quarantine --max-deletes 10000 --max-bytes 500GiB',
    '<%= config.bin %> <%= command.id %> --strategy metadata --delete --shard 3/16 --json',
    '<%= config.bin %> <%= command.id %> --resume 42',
  ]
  static override flags = {
    region: regionFlag,
    'database-url': databaseUrlFlag,
    strategy: Flags.option({options: ['storage', 'metadata'] as const, default: 'storage' as const, summary: 'Where references come from: a walk of the manifests in storage, or the metadata database.'})(),
    delete: Flags.boolean({summary: 'Delete the candidates (default: dry-run).', exclusive: ['quarantine']}),
    quarantine: Flags.boolean({summary: 'Move the candidates under the quarantine prefix instead of deleting them.', exclusive: ['delete']}),
    'min-age': Flags.string({summary: 'Grace period: blobs and links newer than this are never touched (default: sweep.minAge, 24h).'}),
    force: Flags.boolean({summary: 'Accept a --min-age below 1h.'}),
    'delete-untagged': Flags.boolean({summary: 'Also remove untagged manifests (never a child of a tagged index), then the blobs only they used.'}),
    'max-deletes': Flags.integer({summary: 'Refuse to act if there are more candidates than this.', min: 0}),
    'max-bytes': Flags.string({summary: 'Refuse to act if the candidates add up to more than this (e.g. 500GiB).'}),
    shard: shardFlag(),
    resume: Flags.string({summary: 'Resume job ID (see regops jobs list) from its checkpoint.'}),
    report: Flags.string({summary: 'JSON Lines file of the candidates (default: ./regops-sweep-<time>.jsonl).'}),
    concurrency: Flags.integer({summary: 'Storage requests in flight.', default: 32, min: 1, max: 1024}),
    'metadata-authoritative': Flags.boolean({summary: 'With --strategy metadata: the registry writes the database itself, so no storage re-walk is needed.'}),
    'metrics-file': Flags.string({summary: 'Write Prometheus metrics (textfile collector format) here.'}),
    'registry-read-only': Flags.boolean({summary: 'State that the registry is read-only or stopped: allows acting with registry.cache inmemory (restart it afterwards).'}),
    'max-clock-skew': Flags.string({summary: "Refuse to act when the storage's clock is further than this from this host's (default 5m)."}),
  }

  public async run(): Promise<SweepBlobsResult> {
    const {flags, metadata} = await this.parse(SweepBlobs)
    const config = this.loadConfig({databaseUrl: flags['database-url']})
    const mode = flags.delete ? 'delete' : flags.quarantine ? 'quarantine' : 'dry-run'
    const minAgeMs = flags['min-age'] ? parseDuration(flags['min-age'], '--min-age') : config.sweep.minAgeMs
    if (minAgeMs < 3_600_000 && !flags.force && (!flags.resume || flags['min-age'])) {
      throw new RefusedError(`--min-age below 1h is unsafe on a live registry (pushes in flight): pass --force to accept it`)
    }
    const driver = await openRegion(config, flags.region)
    const needsDb = mode !== 'dry-run' || flags.strategy === 'metadata' || flags.resume !== undefined
    if (needsDb && !config.database) throw new UsageError(`${flags.resume ? '--resume' : mode === 'dry-run' ? '--strategy metadata' : `--${mode}`} needs a database (database.url, DATABASE_URL or --database-url)`)
    const db = needsDb ? openDatabase(config.database!.url) : undefined
    const registryCache = openDescriptorCache(config.registryCache)
    const interrupt = interruptOnSignals()
    const progress = startProgress('sweeping', this.logger, {enabled: !this.jsonEnabled()})
    try {
      if (db) await assertSchemaCurrent(db)
      const common = {
        driver,
        region: config.regions[driver.region],
        shard: flags.shard,
        reportFile: flags.report ?? `regops-sweep-${new Date().toISOString().replace(/[:.]/g, '-')}.jsonl`,
        concurrency: flags.concurrency,
        registryCache,
        registryReadOnly: flags['registry-read-only'],
        maxClockSkewMs: flags['max-clock-skew'] ? parseDuration(flags['max-clock-skew'], '--max-clock-skew') : undefined,
        logger: this.logger,
        signal: interrupt.signal,
        onProgress: (p: SweepProgress) =>
          progress.update(
            `${p.phase}: ${p.shardsDone}/${p.shards} prefixes, ${p.scanned} blobs scanned (${Math.round(p.scanned / Math.max(0.001, p.elapsedMs / 1000))}/s), ${p.candidates} candidates${p.acted ? `, ${p.acted} acted` : ''}`,
          ),
      }
      // A resume states only what was given on the command line: the job keeps its own settings.
      const stated = {
        strategy: metadata.flags.strategy?.setFromDefault ? undefined : flags.strategy,
        minAgeMs: flags['min-age'] ? minAgeMs : undefined,
        deleteUntagged: flags['delete-untagged'] || undefined,
        maxDeletes: flags['max-deletes'],
        maxBytes: flags['max-bytes'] ? parseSize(flags['max-bytes'], '--max-bytes') : undefined,
        metadataAuthoritative: flags['metadata-authoritative'] || undefined,
      }
      const settings = {...stated, strategy: flags.strategy, minAgeMs, quarantinePrefix: resolveQuarantine(config.sweep.quarantine, driver.region)}
      const result = await sweepBlobs(
        flags.resume
          ? {...common, ...stated, mode: mode === 'dry-run' ? undefined : mode, db: db!, resume: flags.resume}
          : mode === 'dry-run'
            ? {...common, ...settings, mode, db}
            : {...common, ...settings, mode, db: db!},
      )
      progress.stop()
      if (flags['metrics-file']) await writeMetrics(flags['metrics-file'], 'sweep', {region: result.region, strategy: result.strategy, mode: result.mode}, {
        objects_scanned: result.scanned.blobs,
        bytes_scanned: result.scanned.bytes,
        candidates: result.candidates.count,
        candidate_bytes: result.candidates.bytes,
        deleted: result.acted.deleted,
        quarantined: result.acted.quarantined,
        acted_bytes: result.acted.bytes,
        errors: result.acted.failed + result.problemCount,
        duration_seconds: result.durationMs / 1000,
      })
      this.exitCode = sweepExitCode(result)
      this.say(renderSweep(result))
      return result
    } finally {
      progress.stop()
      interrupt.dispose()
      await db?.close()
      await registryCache.close()
      await driver.close()
    }
  }
}

export function sweepExitCode(result: SweepBlobsResult): number {
  if (result.acted.failed > 0 || result.postCheck.broken.length > 0) return ExitCode.Partial
  if (result.mode === 'dry-run') return result.candidates.count > 0 || result.candidates.manifests > 0 || result.problemCount > 0 ? ExitCode.Found : ExitCode.Ok
  return result.problemCount > 0 ? ExitCode.Found : ExitCode.Ok
}

function renderSweep(r: SweepBlobsResult): string {
  const verb = r.mode === 'dry-run' ? 'would remove' : r.mode === 'delete' ? 'deleted' : 'quarantined'
  const lines = [
    renderTable(
      ['sweep', r.jobId ? `job ${r.jobId}` : ''],
      [
        ['region / strategy / mode', `${r.region} / ${r.strategy} / ${r.mode}`],
        ['blobs scanned', `${r.scanned.blobs} (${formatBytes(r.scanned.bytes)})`],
        ['referenced', r.referenced],
        ['younger than the cutoff', `${r.tooYoung.count} (cutoff ${r.cutoff})`],
        ['candidates', `${r.candidates.count} (${formatBytes(r.candidates.bytes)})${r.candidates.manifests ? `, and ${r.candidates.manifests} untagged manifests` : ''}`],
        ['acted', r.acted.deleted + r.acted.quarantined + r.acted.manifestsDeleted],
        ['skipped at re-check', `${r.skipped.referencedAgain} referenced again, ${r.skipped.changed} changed, ${r.skipped.gone} gone`],
        ['re-check to action (p50 / p99)', r.window.batches ? `${formatDuration(r.window.p50Ms)} / ${formatDuration(r.window.p99Ms)} over ${r.window.batches} batches` : '-'],
        ['problems', r.problemCount],
        ['time', formatDuration(r.durationMs)],
      ],
    ),
  ]
  for (const p of r.problems.slice(0, 20)) lines.push(`problem: ${p.kind} at ${p.key}: ${p.message}`)
  if (r.problemCount > 20) lines.push(`... and ${r.problemCount - 20} more problems (see --json)`)
  if (r.postCheck.movedBack) lines.push(`moved back ${r.postCheck.movedBack} quarantined blobs that images pushed during the sweep reference`)
  for (const b of r.postCheck.broken) {
    lines.push(`broken: ${b.repository}${b.manifest ? `@${b.manifest}` : ' (a push in progress)'} needs blob ${b.digest}, deleted after its re-check`)
  }
  if (r.postCheck.broken.length > 0) {
    lines.push('restore each from a region that still holds it (regops audit regions --repair --from REGION), or push the image again')
  }
  if (r.restartRegistry) lines.push('the registry caches blob descriptors in memory: restart every registry process before it takes writes again')
  if (!r.markComplete) lines.push('the mark is incomplete: what the problem manifests reference is unknown, so acting is refused')
  lines.push(
    r.mode === 'dry-run'
      ? `dry-run: ${verb} ${r.candidates.count} blobs (${formatBytes(r.candidates.bytes)})${r.reportFile ? `; candidates in ${r.reportFile}` : ''}${r.candidates.count ? '; act with --quarantine or --delete' : ''}`
      : `${verb} ${r.acted.deleted + r.acted.quarantined} blobs (${formatBytes(r.acted.bytes)})${r.acted.manifestsDeleted ? ` and ${r.acted.manifestsDeleted} untagged manifests` : ''}; job ${r.jobId} journaled every action (regops journal --job ${r.jobId})`,
  )
  return lines.join('\n')
}
