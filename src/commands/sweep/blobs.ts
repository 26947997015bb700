import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {
  databaseUrlFlag,
  dryRunFlag,
  durationFlag,
  failOnFlag,
  jobControlFlags,
  metricsFlags,
  regionFlag,
  requestRateFlags,
  requestRatesOf,
  shardFlag,
  sizeFlag,
} from '../../flags.js'
import {applyRequestRates, requestsToQueue} from '../../lib/storage/index.js'
import {UsageError} from '../../lib/errors.js'
import {formatDurationSpec} from '../../lib/config/duration.js'
import {sweepBlobs, type SweepProgress} from '../../lib/sweep/sweep-blobs.js'
import {resolveQuarantine} from '../../lib/sweep/quarantine-prefix.js'
import * as formatter from '../../formatters/sweep-blobs.js'

export default class SweepBlobs extends RegopsCommand<formatter.SweepBlobsCommandResult> {
  static override summary = 'Find orphaned blobs; quarantine or delete them only when asked.'
  static override description = `Merges the sorted blob listing of each digest prefix against the sorted references (from a walk of every repository's manifests, or from the metadata database), so memory stays flat.
Dry-run by default: it reports candidates (count, bytes, reason) and writes them to a JSON Lines file, and exits 1 if it found any.
--delete or --quarantine act, after the grace period (--min-age), a re-check of each batch just before it is touched, and a journal entry before and after.
A mark that could not read every manifest, or that found no repository or manifest while blobs exist, refuses to act (exit 4).
So does a plan that would act on more than 50% of the scanned blobs (10% on a region's first acting sweep), unless --max-deletes or --max-bytes is stated or --allow-mass-delete is passed.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --region eu',
    '<%= config.bin %> <%= command.id %> --quarantine --max-deletes 10000 --max-bytes 500GiB',
    '<%= config.bin %> <%= command.id %> --strategy metadata --delete --shard 3/16 --json',
    '<%= config.bin %> <%= command.id %> --resume 42',
    '<%= config.bin %> <%= command.id %> --plan-out plan.jsonl && <%= config.bin %> sweep apply plan.jsonl --quarantine',
  ]
  static override flags = {
    region: regionFlag,
    'database-url': databaseUrlFlag,
    strategy: Flags.option({
      options: ['storage', 'metadata'] as const,
      default: 'storage' as const,
      summary: 'Where references come from: a walk of the manifests in storage, or the metadata database.',
    })(),
    'dry-run': dryRunFlag(['delete', 'quarantine']),
    delete: Flags.boolean({summary: 'Delete the candidates (default: dry-run).', exclusive: ['quarantine', 'dry-run']}),
    quarantine: Flags.boolean({
      summary: 'Move the candidates under the quarantine prefix instead of deleting them.',
      exclusive: ['delete', 'dry-run'],
    }),
    'min-age': durationFlag({
      summary:
        'Grace period: blobs and links newer than this are never touched (default: sweep.minAge, 24h). A unit is required: 48h, 2d.',
      unsafeBelow: '1h',
      unsafeBecause: 'pushes in flight on a live registry upload blobs before the manifest that references them',
    }),
    force: Flags.boolean({summary: 'Accept a --min-age below 1h.'}),
    'delete-untagged': Flags.boolean({
      summary: 'Also remove untagged manifests (never a child of a tagged index), then the blobs only they used.',
    }),
    'delete-referrers': Flags.boolean({
      summary: 'With --delete-untagged: also remove referrers (signatures, SBOMs, attestations) of kept manifests.',
      dependsOn: ['delete-untagged'],
    }),
    'max-deletes': Flags.integer({summary: 'Refuse to act if there are more candidates than this.', min: 0}),
    'max-bytes': sizeFlag({summary: 'Refuse to act if the candidates add up to more than this (e.g. 500GiB).'}),
    'allow-mass-delete': Flags.boolean({
      summary:
        "Act even on more than 50% of the scanned blobs (10% on a region's first acting sweep) with no --max-deletes or --max-bytes.",
    }),
    shard: shardFlag(),
    resume: Flags.string({summary: 'Resume job ID (see regops jobs list) from its checkpoint.'}),
    ...jobControlFlags,
    'fail-on': failOnFlag(),
    report: Flags.string({
      summary:
        'Where the candidates go as JSON Lines: a path, file://, s3://bucket/key or - (stdout; the summary then goes to stderr). Default: ./regops-sweep-<time>.jsonl, or in $REGOPS_REPORT_DIR or the temp directory when the current one is read-only.',
    }),
    ...requestRateFlags(),
    'plan-out': Flags.string({
      summary: 'Also write a sealed plan here (a dry-run only): review it, then act on exactly it with sweep apply.',
      exclusive: ['delete', 'quarantine', 'resume'],
    }),
    'metadata-authoritative': Flags.boolean({
      summary: 'With --strategy metadata: the registry writes the database itself, so no storage re-walk is needed.',
    }),
    marks: Flags.string({
      summary:
        'Read the references from this finished mark run (sweep mark) instead of walking every manifest (storage strategy).',
      exclusive: ['delete-untagged'],
    }),
    'registry-read-only': Flags.boolean({
      summary:
        'State that the registry is read-only or stopped: allows acting with registry.cache inmemory (restart it afterwards), and batches are not re-walked (one walk after the last checks it).',
    }),
    'max-clock-skew': durationFlag({
      summary: "Refuse to act when the storage's clock is further than this from this host's (default 5m).",
    }),
    ...metricsFlags,
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<formatter.SweepBlobsCommandResult> {
    const {flags, metadata} = await this.parse(SweepBlobs)
    const config = this.configuration()
    // Checked here, not as an oclif relationship: that one's message named no flag ("One of the following
    // must be provided when using --metadata-authoritative: ").
    if (flags['metadata-authoritative'] && flags.strategy !== 'metadata')
      throw new UsageError('--metadata-authoritative goes with --strategy metadata (add --strategy metadata)')
    const mode = flags.delete ? 'delete' : flags.quarantine ? 'quarantine' : 'dry-run'
    const minAgeMs = flags['min-age']?.ms ?? config.sweep.minAgeMs
    // Acting journals every action; the metadata strategy reads references; a resumed job lives in the database.
    const neededFor = flags.resume
      ? '--resume'
      : mode !== 'dry-run'
        ? `--${mode}`
        : flags.strategy === 'metadata'
          ? '--strategy metadata'
          : flags.marks
            ? '--marks'
            : undefined
    const db = neededFor ? await this.database({schema: 'current', neededFor}) : undefined
    const driver = await this.region(flags.region)
    const rates = requestRatesOf(flags)
    applyRequestRates(driver, rates)
    const progress = this.progress('sweeping')
    const registryCache = this.registryCache()
    const common = {
      driver,
      region: config.regions[driver.region],
      shard: flags.shard,
      reportFile: this.reportTarget(
        flags.report,
        `regops-sweep-${new Date().toISOString().replace(/[:.]/g, '-')}.jsonl`,
      ),
      // Work queued for storage: enough to fill the request limit, which decides what is in flight.
      concurrency: requestsToQueue(rates, config.regions[driver.region]),
      registryCache,
      registryReadOnly: flags['registry-read-only'],
      maxClockSkewMs: flags['max-clock-skew']?.ms,
      planOut: flags['plan-out'],
      logger: this.logger,
      signal: this.interruptible(),
      jobKey: flags['job-key'],
      onProgress: (p: SweepProgress) => progress.update(progressLine(p), {...p}),
    }
    // A resume states only what was given on the command line: the job keeps its own settings.
    const stated = {
      strategy: metadata.flags.strategy?.setFromDefault ? undefined : flags.strategy,
      minAgeMs: flags['min-age'] ? minAgeMs : undefined,
      deleteUntagged: flags['delete-untagged'] || undefined,
      deleteReferrers: flags['delete-referrers'] || undefined,
      maxDeletes: flags['max-deletes'],
      maxBytes: flags['max-bytes'],
      metadataAuthoritative: flags['metadata-authoritative'] || undefined,
      allowMassDelete: flags['allow-mass-delete'] || undefined,
      marks: flags.marks,
    }
    // A resumed job keeps its own quarantine prefix: the configured one is resolved only for a new job, so a
    // resume on the wrong region is refused for the region, not for the quarantine setting.
    const settings = () => ({
      ...stated,
      strategy: flags.strategy,
      minAgeMs,
      quarantinePrefix: resolveQuarantine(config.sweep.quarantine, driver.region),
    })
    const result = await sweepBlobs(
      flags.resume
        ? {...common, ...stated, mode: mode === 'dry-run' ? undefined : mode, db: db!, resume: flags.resume}
        : mode === 'dry-run'
          ? {...common, ...settings(), mode, db}
          : {...common, ...settings(), mode, db: db!},
    )
    return {...result, gracePeriod: formatDurationSpec(minAgeMs)}
  }
}

/** The mark and the listing run first, for seconds on a large store: their own figures move until the merge starts. */
function progressLine(p: SweepProgress): string {
  const perSecond = (n: number) => Math.round(n / Math.max(0.001, p.elapsedMs / 1000))
  if (p.phase === 'mark')
    return `mark: ${p.listed} blobs listed (${perSecond(p.listed)}/s), ${p.marks} references marked`
  const acted = p.acted ? `, ${p.acted} acted` : ''
  return `${p.phase}: ${p.shardsDone}/${p.shards} prefixes, ${p.scanned} blobs scanned (${perSecond(p.scanned)}/s), ${p.candidates} candidates${acted}`
}
