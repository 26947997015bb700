import {printableExcerpt, UsageError} from '../errors.js'

const UNIT_MS: Record<string, number> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000}

/**
 * No duration regops takes (grace periods, hold times, timeouts) is meant to exceed a century, and a cutoff
 * of now minus 10^12 hours is no date at all: a sweep given one stopped with an internal error.
 */
const MAX_DURATION_MS = 36_500 * 86_400_000

/**
 * Parses '90s', '15m', '24h', '7d', '1h30m' into milliseconds. A unit is required: a bare '48' was read
 * as 48 seconds, and an operator who meant 48 hours then passed --force to get past the one-hour guard.
 * '0' alone is accepted (no grace at all is unambiguous in any unit).
 */
export function parseDuration(text: string, what = 'duration'): number {
  const trimmed = String(text).trim()
  if (trimmed === '0') return 0
  if (/^\d+(\.\d+)?$/.test(trimmed)) {
    throw new UsageError(
      `invalid ${what} '${printableExcerpt(text)}': a duration needs a unit: say ${printableExcerpt(trimmed)}h or ${printableExcerpt(trimmed)}s`,
    )
  }
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy
  let total = 0
  let consumed = 0
  let match: RegExpExecArray | null
  while ((match = re.exec(trimmed)) !== null) {
    total += Number(match[1]) * UNIT_MS[match[2]]
    consumed = re.lastIndex
  }
  if (consumed !== trimmed.length || trimmed.length === 0) {
    throw new UsageError(
      `invalid ${what} '${printableExcerpt(text)}': use a number with a unit, e.g. 30s, 15m, 24h, 7d, 1h30m`,
    )
  }
  if (!(total <= MAX_DURATION_MS))
    throw new UsageError(
      `invalid ${what} '${printableExcerpt(text)}': longer than the 36500d (100 years) any setting needs`,
    )
  return Math.round(total)
}

/** The shortest exact spelling of a duration in the units parseDuration reads: 172800000 → '2d', 5400000 → '1h30m'. */
export function formatDurationSpec(ms: number): string {
  if (ms === 0) return '0s'
  let rest = Math.round(ms)
  const parts: string[] = []
  for (const unit of ['d', 'h', 'm', 's', 'ms']) {
    const size = UNIT_MS[unit]
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`)
      rest %= size
    }
  }
  return parts.join('')
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  p: 1e15,
  pb: 1e15,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
  pib: 2 ** 50,
}

/** Parses '500MiB', '2TB', '1048576' into bytes. */
export function parseSize(text: string, what = 'size'): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(String(text))
  const unit = match?.[2]?.toLowerCase() || 'b'
  if (!match || SIZE_UNITS[unit] === undefined) {
    throw new UsageError(
      `invalid ${what} '${printableExcerpt(String(text))}': use a number with an optional unit, e.g. 500MiB, 2TB`,
    )
  }
  const bytes = Math.round(Number(match[1]) * SIZE_UNITS[unit])
  if (!Number.isSafeInteger(bytes))
    throw new UsageError(`invalid ${what} '${printableExcerpt(String(text))}': more bytes than can be counted exactly`)
  return bytes
}
