import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {UsageError} from '../../lib/errors.js'
import {
  databaseUrlFlag,
  durationFlag,
  failOnFlag,
  jobControlFlags,
  metricsFlags,
  requestRateFlags,
  requestRatesOf,
  shardFlag,
} from '../../flags.js'
import {applyRequestRates, requestsToQueue} from '../../lib/storage/index.js'
import {auditRegions, type AuditRegionsResult} from '../../lib/audit/regions-audit.js'
import {auditedRegions, openInventories} from '../../lib/audit/open.js'
import type {AuditProblem} from '../../lib/audit/findings.js'
import * as formatter from '../../formatters/audit-regions.js'

export const sampleFlag = Flags.custom<number>({
  summary: 'Re-hash this fraction of blobs (0 < F <= 1) and state the corruption bound it supports.',
  helpValue: 'F',
  parse: async (input) => {
    const value = Number(input)
    if (!(value > 0 && value <= 1))
      throw new UsageError(`invalid --sample '${input}': a fraction 0 < F <= 1, e.g. 0.01`)
    return value
  },
})

export default class AuditRegions extends RegopsCommand<AuditRegionsResult> {
  static override summary =
    'Compare regions blob by blob, link by link and tag by tag; repair from a good region when asked.'
  static override description = `Per digest prefix, a k-way merge of every region's sorted blob listing (and the database's blobs when configured): memory is one prefix's worth at any bucket size.
Findings: missing, size_mismatch, extra (in some regions, referenced nowhere), corrupt (re-hashed at --level checksum or on a --sample), pending (newer than --in-flight), tag_mismatch, dangling_link (a link whose blob no region holds). They stream to --findings as JSON Lines.
Exit 1 on any drift; 3 when a listing, key or region could not be read (named in the report; the rest is audited).
--repair --from R copies missing and corrupt objects from R where they verify, re-hashes each copy and journals it. Dry-run otherwise.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --regions eu,us --findings drift.jsonl',
    '<%= config.bin %> <%= command.id %> --level checksum --shard 3/16 --json',
    '<%= config.bin %> <%= command.id %> --sample 0.01 --inventory eu=s3://inventory/registry-eu/all/2024-05-01T00-00Z/manifest.json',
    '<%= config.bin %> <%= command.id %> --repair --from eu',
  ]
  static override flags = {
    regions: Flags.string({summary: 'Comma-separated regions to compare (default: every configured region).'}),
    level: Flags.option({
      options: ['presence', 'size', 'checksum'] as const,
      default: 'size' as const,
      summary: 'presence, size, or checksum (re-hash every copy).',
    })(),
    sample: sampleFlag(),
    'in-flight': durationFlag({summary: 'Objects newer than this are pending, not missing (default 15m).'}),
    findings: Flags.string({
      summary:
        'Where the findings go as JSON Lines: a path, file://, s3://bucket/key (not with --resume: an object cannot be appended to) or - (stdout; the summary then goes to stderr). Default: ./regops-audit-<time>.jsonl, or in $REGOPS_REPORT_DIR or the temp directory when the current one is read-only.',
    }),
    inventory: Flags.string({
      summary: 'REGION=URL of an S3 Inventory manifest.json (CSV) to list that region from, instead of LIST.',
      multiple: true,
    }),
    shard: shardFlag(),
    resume: Flags.string({summary: 'Resume job ID from its checkpoint.'}),
    ...jobControlFlags,
    'fail-on': failOnFlag(),
    repair: Flags.boolean({
      summary: 'Copy missing and corrupt objects from --from (default: report only).',
      dependsOn: ['from'],
    }),
    from: Flags.string({summary: 'The region repairs copy from.', dependsOn: ['repair']}),
    'database-url': databaseUrlFlag,
    ...requestRateFlags('Re-hashes, copies and requests in flight, per region'),
    ...metricsFlags,
  }

  protected readonly formatter = formatter

  protected async execute(): Promise<AuditRegionsResult> {
    const {flags, metadata} = await this.parse(AuditRegions)
    const config = this.configuration()
    const regions = auditedRegions(config, flags.regions)
    const findings = this.reportTarget(
      flags.findings,
      `regops-audit-${new Date().toISOString().replace(/[:.]/g, '-')}.jsonl`,
    )
    // A resumed job appends its new findings to the ones written before: an object cannot be appended to.
    if (flags.resume && findings?.kind === 's3')
      throw new UsageError(
        '--resume appends to the findings report: an s3:// object cannot be appended to, give a file',
      )
    // The database's blobs join the comparison when configured, and it keeps the job (--resume, --repair's journal).
    const needsDb = flags.resume ? '--resume' : flags.repair ? '--repair' : undefined
    const db = needsDb || config.database ? await this.database({schema: 'current', neededFor: needsDb}) : undefined
    const drivers = []
    for (const name of regions) drivers.push(await this.region(name))
    const rates = requestRatesOf(flags)
    for (const driver of drivers) applyRequestRates(driver, rates)
    const progress = this.progress('auditing')
    const problems: AuditProblem[] = []
    const listings = await openInventories(config, flags.inventory ?? [], regions, flags.shard, problems)
    this.onRelease(() => Promise.all(Object.values(listings).map((listing) => listing.dispose())))
    return auditRegions({
      drivers,
      listings,
      db,
      problems,
      level: flags.resume && metadata.flags.level?.setFromDefault ? undefined : flags.level,
      sample: flags.sample,
      inFlightMs: flags['in-flight']?.ms ?? (flags.resume ? undefined : 15 * 60_000),
      findingsFile: findings,
      shard: flags.shard,
      resume: flags.resume,
      jobKey: flags['job-key'],
      repairFrom: flags.repair ? flags.from : undefined,
      concurrency: requestsToQueue(rates, ...regions.map((name) => config.regions[name])),
      logger: this.logger,
      signal: this.interruptible(),
      onProgress: (p) =>
        progress.update(`${p.prefixesDone}/${p.prefixes} prefixes, ${p.findings} findings`, {phase: 'audit', ...p}),
    })
  }
}
