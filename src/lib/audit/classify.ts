import type {Finding} from './findings.js'

export type AuditLevel = 'presence' | 'size' | 'checksum'

/** One region's copy of a blob, or absent (undefined), or 'unknown' (its listing failed). */
export type BlobCopy = {size: number; lastModified: Date} | undefined | 'unknown'

export interface BlobRow {
  digest: string
  key: string
  /** one entry per audited region, in the order of `regions` */
  copies: BlobCopy[]
  /** the database's size for this digest; undefined when the database has no row or is not used */
  databaseSize?: number
  /** a _layers or revision link in any region, or a database row, names this blob */
  referenced: boolean
  /** the _layers and revision links naming this blob, by region */
  links: Array<{region: string; key: string}>
}

export interface BlobVerdict {
  findings: Finding[]
  /** indices of the regions whose copy has the expected size: the ones worth re-hashing */
  sizeAgrees: number[]
}

/**
 * What one blob's row across regions means. Pure, so the rules are tested by a table:
 * - absent somewhere while a present copy is newer than the in-flight cutoff: `pending` (where it lies);
 * - absent somewhere and referenced (a link anywhere, or the database): `missing` where it is absent;
 * - absent somewhere, or not in the configured database, and referenced nowhere: `extra` where it lies;
 * - held by no region at all: every link to it is a `dangling_link` (nothing to repair from);
 * - at level size or above, a copy whose size differs from the expected one: `size_mismatch`. The expected
 *   size is the database's, else the size most regions hold, ties broken by region order (primary first).
 */
export function classifyBlob(
  row: BlobRow,
  regions: string[],
  opts: {level: AuditLevel; cutoff: Date; databaseUsed: boolean},
): BlobVerdict {
  if (allAgree(row, opts.databaseUsed)) return {findings: [], sizeAgrees: row.copies.map((_, i) => i)}
  const findings: Finding[] = []
  const present: number[] = []
  const absent: number[] = []
  row.copies.forEach((copy, i) => {
    if (copy === 'unknown') return
    if (copy === undefined) absent.push(i)
    else present.push(i)
  })
  const base = {object: 'blob' as const, key: row.key, digest: row.digest}
  if (present.length === 0) {
    for (const link of row.links) {
      findings.push({
        kind: 'dangling_link',
        object: link.key.includes('/_layers/') ? 'layer-link' : 'revision',
        region: link.region,
        key: link.key,
        digest: row.digest,
        detail: {blob: row.key, heldBy: []},
      })
    }
    if (row.links.length === 0 && row.databaseSize !== undefined) {
      for (const i of absent)
        findings.push({...base, kind: 'missing', region: regions[i], detail: {heldBy: ['database']}})
    }
    return {findings, sizeAgrees: []}
  }
  const copyOf = (i: number) => row.copies[i] as {size: number; lastModified: Date}
  const heldBy = present.map((i) => regions[i])
  if (absent.length > 0 || (opts.databaseUsed && row.databaseSize === undefined)) {
    const fresh = present.filter((i) => copyOf(i).lastModified > opts.cutoff)
    if (absent.length > 0 && fresh.length > 0) {
      for (const i of fresh)
        findings.push({
          ...base,
          kind: 'pending',
          region: regions[i],
          detail: {absentIn: absent.map((a) => regions[a]), lastModified: copyOf(i).lastModified.toISOString()},
        })
    } else if (!row.referenced) {
      if (fresh.length === 0)
        for (const i of present) findings.push({...base, kind: 'extra', region: regions[i], detail: {heldBy}})
    } else {
      for (const i of absent) findings.push({...base, kind: 'missing', region: regions[i], detail: {heldBy}})
    }
  }
  const expected = row.databaseSize ?? mostCommonSize(present.map((i) => copyOf(i).size))
  const sizeAgrees = present.filter((i) => copyOf(i).size === expected)
  if (opts.level !== 'presence') {
    for (const i of present) {
      if (copyOf(i).size !== expected)
        findings.push({...base, kind: 'size_mismatch', region: regions[i], detail: {size: copyOf(i).size, expected}})
    }
  }
  return {findings, sizeAgrees: opts.level === 'presence' ? present : sizeAgrees}
}

/**
 * Every region holds the blob at one size, the database's when it has one: nothing to report, and the
 * rule every other row goes through need not run (nearly every row of a healthy bucket is one of these).
 */
function allAgree(row: BlobRow, databaseUsed: boolean): boolean {
  const first = row.copies[0]
  if (first === undefined || first === 'unknown') return false
  for (let i = 1; i < row.copies.length; i++) {
    const copy = row.copies[i]
    if (copy === undefined || copy === 'unknown' || copy.size !== first.size) return false
  }
  return row.databaseSize === undefined ? !databaseUsed : row.databaseSize === first.size
}

/** The value most entries hold; on a tie, the one that comes first (the primary region is listed first). */
export function mostCommon<T>(values: T[]): T {
  const tally = new Map<T, number>()
  for (const value of values) tally.set(value, (tally.get(value) ?? 0) + 1)
  let best = values[0]
  for (const value of values) if (tally.get(value)! > tally.get(best)!) best = value
  return best
}

function mostCommonSize(sizes: number[]): number {
  return mostCommon(sizes)
}

/**
 * The one-sided upper bound of the corruption rate at 95% confidence, from `corrupt` found among `checked`
 * re-hashed blobs: the Clopper-Pearson bound, p such that P(X <= corrupt | checked, p) = 0.05. With none
 * found it is 1 - 0.05^(1/checked), about 3/checked (the "rule of three").
 */
export function corruptionBound(checked: number, corrupt: number, confidence = 0.95): number {
  if (checked === 0) return 1
  if (corrupt >= checked) return 1
  const alpha = 1 - confidence
  if (corrupt === 0) return 1 - Math.pow(alpha, 1 / checked)
  let low = corrupt / checked
  let high = 1
  for (let step = 0; step < 60; step++) {
    const mid = (low + high) / 2
    if (binomialCdf(corrupt, checked, mid) > alpha) low = mid
    else high = mid
  }
  return high
}

/** P(X <= k) for X ~ Binomial(n, p), summed in log space (n may be millions). */
function binomialCdf(k: number, n: number, p: number): number {
  const logP = Math.log(p)
  const logQ = Math.log1p(-p)
  let logTerm = n * logQ // i = 0
  let sum = Math.exp(logTerm)
  for (let i = 1; i <= k; i++) {
    logTerm += Math.log(n - i + 1) - Math.log(i) + logP - logQ
    sum += Math.exp(logTerm)
  }
  return Math.min(1, sum)
}
