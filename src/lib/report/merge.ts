import {readFileSync} from 'node:fs'
import {ExitCode, UsageError, errorMessage} from '../errors.js'
import {KIND_RULES, MERGEABLE_KINDS, type KindRules, type MergeableKind} from './merge-kinds.js'

type Json = Record<string, unknown>

/** One shard's report as it was read, with what is kept of it per shard. */
export interface MergedShard {
  file: string
  index: number
  count: number
  exitCode: number
  /** the fields that describe this shard's run (job id, timing, its own files) */
  run: Json
}

export interface ReportMergeResult {
  kind: 'report-merge'
  /** the command whose reports were merged (its --json kind) */
  of: MergeableKind
  shardCount: number
  shards: MergedShard[]
  /** the worst of the shards' exit codes: 0 < 1 < 3 */
  exitCode: number
  /** the shards' reports added up: the command's own report shape, covering the whole (shard 0/1) */
  merged: Json
}

/** Exit codes a shard report can carry, least to most severe: the merge exits with the worst. */
export const EXIT_SEVERITY: readonly number[] = [ExitCode.Ok, ExitCode.Found, ExitCode.Partial]

/**
 * Merges the --json reports of the shards of one run (`--shard i/n`, i = 0..n-1) into one report of the
 * same shape and one exit code. Refused (exit 2, nothing merged) when the files are not reports of one
 * mergeable command, when shards are missing or overlap, or when they ran with different settings.
 */
export function mergeShardReports(
  files: string[],
  exitCodeOf: (kind: MergeableKind, report: Json) => number,
): ReportMergeResult {
  const reports = files.map((file) => ({file, report: readReport(file)}))
  const kinds = new Map<string, string[]>()
  for (const {file, report} of reports)
    kinds.set(String(report.kind), [...(kinds.get(String(report.kind)) ?? []), file])
  if (kinds.size > 1)
    throw new UsageError(
      `the reports are of different commands: ${[...kinds].map(([kind, of]) => `${kind} (${of.join(', ')})`).join('; ')}`,
    )
  const kind = String(reports[0].report.kind)
  if (!(MERGEABLE_KINDS as readonly string[]).includes(kind))
    throw new UsageError(`report merge does not merge ${kind} reports (it merges ${MERGEABLE_KINDS.join(', ')})`, {
      hint: kind === 'loadtest-pull' ? 'load test reports merge with regops loadtest merge' : undefined,
    })
  const of = kind as MergeableKind
  const rules = KIND_RULES[of]
  const shards = reports.map(({file, report}) => {
    const shard = valueAt(report, rules.shardField) as {index?: unknown; count?: unknown} | undefined
    if (!shard || !Number.isInteger(shard.index) || !Number.isInteger(shard.count))
      throw new UsageError(`${file}: a ${of} report without its shard (${rules.shardField}.index and .count)`)
    return {
      file,
      index: shard.index as number,
      count: shard.count as number,
      exitCode: exitCodeOf(of, report),
      run: Object.fromEntries(rules.perShard.map((path) => [path, valueAt(report, path) ?? null])),
    }
  })
  checkShardSet(shards)
  const merged = mergeValues(
    reports.map(({file, report}) => ({file, value: withoutRunFields(report, rules)})),
    '',
    rules,
  ) as Json
  const shardInfo = merged[rules.shardField] as Json
  Object.assign(shardInfo, {index: 0, count: 1})
  merged.jobId = null
  for (const [path, combine] of Object.entries(rules.combine ?? {}))
    setAt(merged, path, combine(shards.map((s) => s.run[path])))
  rules.derive?.(merged)
  return {
    kind: 'report-merge',
    of,
    shardCount: shards[0].count,
    shards: shards.sort((a, b) => a.index - b.index),
    exitCode: shards.reduce((worst, s) => (severity(s.exitCode) > severity(worst) ? s.exitCode : worst), 0),
    merged,
  }
}

function severity(code: number): number {
  const rank = EXIT_SEVERITY.indexOf(code)
  return rank === -1 ? EXIT_SEVERITY.length : rank
}

function readReport(file: string): Json {
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'))
  } catch (error) {
    throw new UsageError(`cannot read the report ${file}: ${errorMessage(error)}`)
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed) || typeof (parsed as Json).kind !== 'string')
    throw new UsageError(`${file} is not a regops --json report (no kind)`)
  const report = parsed as Json
  if (report.kind === 'error') {
    const error = (report.error ?? {}) as {exitCode?: unknown; message?: unknown}
    throw new UsageError(
      `${file} is the report of a run that failed (exit ${String(error.exitCode)}: ${String(error.message)}): it has no totals to merge`,
      {hint: 'resume or re-run that shard, then merge its report'},
    )
  }
  return report
}

/** Every shard of one run, once: the same count everywhere, no index twice, none missing. */
function checkShardSet(shards: Array<{file: string; index: number; count: number}>): void {
  const counts = new Set(shards.map((s) => s.count))
  if (counts.size > 1)
    throw new UsageError(
      `the reports come from runs split differently: ${shards.map((s) => `${s.file} is shard ${s.index}/${s.count}`).join(', ')}`,
    )
  const count = shards[0].count
  const byIndex = new Map<number, string[]>()
  for (const s of shards) byIndex.set(s.index, [...(byIndex.get(s.index) ?? []), s.file])
  const overlapping = [...byIndex].filter(([, files]) => files.length > 1)
  const missing = Array.from({length: count}, (_, i) => i).filter((i) => !byIndex.has(i))
  const problems = [
    ...overlapping.map(([index, files]) => `shard ${index}/${count} is in ${files.join(' and ')}`),
    ...(missing.length > 0 ? [`missing shards ${missing.map((i) => `${i}/${count}`).join(', ')}`] : []),
  ]
  if (problems.length > 0) throw new UsageError(`cannot merge: ${problems.join('; ')}`)
}

function valueAt(object: Json, path: string): unknown {
  let value: unknown = object
  for (const part of path.split('.')) value = value && typeof value === 'object' ? (value as Json)[part] : undefined
  return value
}

function setAt(object: Json, path: string, value: unknown): void {
  const parts = path.split('.')
  let holder = object
  for (const part of parts.slice(0, -1)) holder = (holder[part] ??= {}) as Json
  holder[parts.at(-1)!] = value
}

/** The report without the per-shard fields and the shard's own index (kept in `shards`). */
function withoutRunFields(report: Json, rules: KindRules): Json {
  const copy = structuredClone(report)
  for (const path of [...rules.perShard, `${rules.shardField}.index`]) {
    const parts = path.split('.')
    const parent = valueAt(copy, parts.slice(0, -1).join('.') || '') as Json | undefined
    const holder = parts.length === 1 ? copy : parent
    if (holder && typeof holder === 'object') delete holder[parts.at(-1)!]
  }
  return copy
}

function mergeValues(values: Array<{file: string; value: unknown}>, path: string, rules: KindRules): unknown {
  const present = values.filter((v) => v.value !== undefined)
  if (present.length === 0) return undefined
  const first = present[0].value
  const name = path || '(report)'
  if (rules.whole?.includes(path) || rules.same?.includes(path)) return sameEverywhere(present, name)
  if (rules.all?.includes(path)) return present.every((v) => v.value === true)
  if (rules.any?.includes(path)) return present.some((v) => v.value === true)
  if (rules.union?.includes(path)) return [...new Set(present.flatMap((v) => v.value as unknown[]))]
  if (typeof first === 'number' && present.every((v) => typeof v.value === 'number'))
    return present.reduce((sum, v) => sum + (v.value as number), 0)
  if (Array.isArray(first) && present.every((v) => Array.isArray(v.value)))
    return present.flatMap((v) => v.value as unknown[])
  if (first && typeof first === 'object' && present.every((v) => v.value && typeof v.value === 'object')) {
    const keys = new Set(present.flatMap((v) => Object.keys(v.value as Json)))
    const out: Json = {}
    for (const key of keys) {
      const merged = mergeValues(
        present.map((v) => ({file: v.file, value: (v.value as Json)[key]})),
        path ? `${path}.${key}` : key,
        rules,
      )
      if (merged !== undefined) out[key] = merged
    }
    return out
  }
  return sameEverywhere(values, name)
}

/** A setting: the same in every shard, or the shards are not of one run. */
function sameEverywhere(values: Array<{file: string; value: unknown}>, name: string): unknown {
  const distinct = new Map<string, string[]>()
  for (const v of values) {
    const text = JSON.stringify(v.value ?? null)
    distinct.set(text, [...(distinct.get(text) ?? []), v.file])
  }
  if (distinct.size > 1)
    throw new UsageError(
      `the shards ran with different ${name}: ${[...distinct].map(([text, files]) => `${text} in ${files.join(', ')}`).join('; ')}`,
      {hint: 'merge only the shards of one run (one command line, --shard 0/n … n-1/n)'},
    )
  return values[0].value
}
