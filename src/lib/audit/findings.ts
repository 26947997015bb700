import {ReportWriter, asReportTarget, type ReportTarget} from '../output/report-target.js'

export const FINDING_KINDS = [
  'missing',
  'size_mismatch',
  'extra',
  'corrupt',
  'pending',
  'tag_mismatch',
  'dangling_link',
] as const
export type FindingKind = (typeof FINDING_KINDS)[number]

export type ObjectKind = 'blob' | 'revision' | 'layer-link' | 'tag'

/**
 * One difference between regions, about one object in one region. `region` is where the object is
 * wrong: where it is missing, where its size or content differs, where an unreferenced or fresh copy
 * lies, where a tag or a link disagrees.
 */
export interface Finding {
  kind: FindingKind
  object: ObjectKind
  region: string
  key: string
  digest?: string
  repository?: string
  tag?: string
  /** what the other regions hold, for the operator */
  detail?: Record<string, unknown>
}

/** Input that could not be read or understood: named with where it was, never taken for an answer. */
export interface AuditProblem {
  region: string
  /** the key, or the listing prefix, at fault */
  where: string
  message: string
}

export type FindingCounts = Record<string, Partial<Record<FindingKind, number>>>

/**
 * Streams findings to a JSON Lines report (a file, stdout or an s3:// object) as they are found (memory holds none of them) and counts them
 * by region and kind for the summary. Keeps the first `keep` findings for --json.
 */
export class FindingsSink {
  readonly counts: FindingCounts = {}
  readonly sample: Finding[] = []
  total = 0
  private readonly writer?: ReportWriter

  /** `append` continues a resumed job's file; an s3:// object cannot be continued, and is refused (exit 2). */
  constructor(
    target: string | ReportTarget | undefined,
    private readonly keep = 1000,
    append = false,
    initial: FindingCounts = {},
  ) {
    if (target) this.writer = ReportWriter.open(asReportTarget(target), {append})
    for (const [region, kinds] of Object.entries(initial)) {
      for (const [kind, n] of Object.entries(kinds)) this.count(region, kind as FindingKind, n ?? 0)
    }
  }

  private count(region: string, kind: FindingKind, n = 1): void {
    const row = (this.counts[region] ??= {})
    row[kind] = (row[kind] ?? 0) + n
    this.total += n
  }

  async add(finding: Finding): Promise<void> {
    this.count(finding.region, finding.kind)
    if (this.sample.length < this.keep) this.sample.push(finding)
    await this.writer?.write(JSON.stringify(finding) + '\n')
  }

  async close(): Promise<void> {
    await this.writer?.close()
  }
}

/** Drift is every finding except `pending`, which is replication still under way. */
export function driftCount(counts: FindingCounts): number {
  let n = 0
  for (const kinds of Object.values(counts))
    for (const [kind, count] of Object.entries(kinds)) if (kind !== 'pending') n += count ?? 0
  return n
}
