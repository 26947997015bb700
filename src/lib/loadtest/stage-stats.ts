import {build, decodeFromCompressedBase64, encodeIntoCompressedBase64, type Histogram} from 'hdr-histogram-js'

/**
 * The stages of a pull, each with its own latency histogram. `pull` is the whole pull, measured from
 * its intended start, so a stalled server shows up in it even when the start itself was late.
 */
export const STAGES = ['pull', 'ping', 'token', 'manifest', 'config', 'layer_first_byte', 'layer', 'redirect'] as const
export type StageName = (typeof STAGES)[number]

/** Thresholds and tables write `layer.first_byte`-style names too; both spellings name one stage. */
export function stageByName(name: string): StageName | undefined {
  const normalized = name.replace(/[.-]/g, '_')
  return (STAGES as readonly string[]).includes(normalized) ? (normalized as StageName) : undefined
}

/**
 * Latencies are recorded in microseconds: 3 significant digits keeps every percentile within 0.1%
 * of the true sample, and a histogram of a whole run is a few tens of KiB however many pulls it saw.
 * 32-bit buckets rather than packed ones: packed recording cost ~9 µs a sample and a p99 lookup ~40 ms
 * (the once-a-second progress stalled the arrival clock for that long); 32-bit costs ~1 µs and ~2 ms,
 * in about the same memory. A bucket overflows at 2^31 samples, far beyond any run.
 */
const BUCKET_SIZE = 32

function newHistogram(): Histogram {
  return build({
    bitBucketSize: BUCKET_SIZE,
    numberOfSignificantValueDigits: 3,
    lowestDiscernibleValue: 1,
    autoResize: true,
  })
}

export interface Percentiles {
  count: number
  minMs: number
  meanMs: number
  p50Ms: number
  p90Ms: number
  p95Ms: number
  p99Ms: number
  p999Ms: number
  maxMs: number
}

/** What one stage saw: latencies, HTTP status codes, error kinds and bytes received. */
export class StageStats {
  readonly histogram: Histogram
  readonly statuses: Record<string, number> = {}
  readonly errors: Record<string, number> = {}
  bytes = 0

  constructor(histogram: Histogram = newHistogram()) {
    this.histogram = histogram
  }

  recordLatency(ms: number): void {
    this.histogram.recordValue(Math.max(1, Math.round(ms * 1000)))
  }

  recordStatus(status: number): void {
    this.statuses[status] = (this.statuses[status] ?? 0) + 1
  }

  recordError(kind: string): void {
    this.errors[kind] = (this.errors[kind] ?? 0) + 1
  }

  get errorCount(): number {
    return Object.values(this.errors).reduce((a, b) => a + b, 0)
  }

  /** Adds another stage's counts: histogram buckets add exactly, so merged percentiles are those of all samples. */
  add(other: StageStats): void {
    this.histogram.add(other.histogram)
    for (const [code, n] of Object.entries(other.statuses)) this.statuses[code] = (this.statuses[code] ?? 0) + n
    for (const [kind, n] of Object.entries(other.errors)) this.errors[kind] = (this.errors[kind] ?? 0) + n
    this.bytes += other.bytes
  }

  /** Latency in ms at a percentile (0..100); 0 when nothing was recorded. */
  percentileMs(percentile: number): number {
    if (this.histogram.totalCount === 0) return 0
    return this.histogram.getValueAtPercentile(percentile) / 1000
  }

  percentiles(): Percentiles {
    const h = this.histogram
    const empty = h.totalCount === 0
    return {
      count: h.totalCount,
      minMs: empty ? 0 : h.minNonZeroValue / 1000,
      meanMs: empty ? 0 : round3(h.mean / 1000),
      p50Ms: this.percentileMs(50),
      p90Ms: this.percentileMs(90),
      p95Ms: this.percentileMs(95),
      p99Ms: this.percentileMs(99),
      p999Ms: this.percentileMs(99.9),
      // From the buckets like every percentile (not the exact maximum seen), so a merged report says the same.
      maxMs: this.percentileMs(100),
    }
  }

  toJSON(): StageReport {
    return {
      ...this.percentiles(),
      bytes: this.bytes,
      statuses: {...this.statuses},
      errors: {...this.errors},
      histogram: encodeIntoCompressedBase64(this.histogram),
    }
  }

  static fromReport(report: StageReport, where: string): StageStats {
    let histogram: Histogram
    try {
      histogram = decodeFromCompressedBase64(report.histogram, BUCKET_SIZE)
    } catch (error) {
      throw new Error(`${where}: histogram does not decode (${(error as Error).message})`)
    }
    histogram.autoResize = true
    const stats = new StageStats(histogram)
    Object.assign(stats.statuses, report.statuses ?? {})
    Object.assign(stats.errors, report.errors ?? {})
    stats.bytes = Number(report.bytes ?? 0)
    return stats
  }
}

/** A stage in the JSON report: summary figures for people, the encoded histogram for an exact merge. */
export interface StageReport extends Percentiles {
  bytes: number
  statuses: Record<string, number>
  errors: Record<string, number>
  /** HdrHistogram V2 compressed, base64; values in microseconds */
  histogram: string
}

export type StageSet = Record<StageName, StageStats>

export function newStageSet(): StageSet {
  return Object.fromEntries(STAGES.map((s) => [s, new StageStats()])) as StageSet
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000
}
