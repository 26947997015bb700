import {mkdir, readFile, rename, writeFile} from 'node:fs/promises'
import {dirname} from 'node:path'
import {redactUrl} from './redact.js'

/**
 * Metrics of a long-running command in the Prometheus text format, for node_exporter's textfile
 * collector (--metrics-file) and a Pushgateway (--pushgateway). One naming scheme for every job:
 *
 *   regops_<job>_runs_total{outcome}               one per run, by how it ended
 *   regops_<job>_duration_seconds                  wall time of the last run
 *   regops_<job>_last_success_timestamp_seconds    advanced only by a run that finished (exit 0 or 1)
 *   regops_<job>_objects_scanned_total, _candidates, _bytes_*, _deleted_total{type}, _errors_total, …
 *                                                  from the command's result (its formatter's metrics())
 *
 * with labels region, shard and mode on every sample.
 */

/** How a run ended, from its exit code. */
export type RunOutcome = 'success' | 'findings' | 'usage' | 'partial' | 'refused' | 'error' | 'interrupted'

const OUTCOMES: RunOutcome[] = ['success', 'findings', 'usage', 'partial', 'refused', 'error', 'interrupted']

export function outcomeOf(exitCode: number): RunOutcome {
  switch (exitCode) {
    case 0:
      return 'success'
    case 1:
      return 'findings'
    case 2:
      return 'usage'
    case 3:
      return 'partial'
    case 4:
      return 'refused'
    case 130:
    case 143:
      return 'interrupted'
    default:
      return 'error'
  }
}

/** One sample a formatter maps from its result; `name` without the `regops_<job>_` prefix. */
export interface MetricSample {
  name: string
  type: 'counter' | 'gauge'
  help: string
  value: number
  /** labels beyond region/shard/mode (e.g. {type: 'blob'}) */
  labels?: Record<string, string>
}

export function counter(name: string, help: string, value: number, labels?: Record<string, string>): MetricSample {
  return {name, type: 'counter', help, value, labels}
}

export function gauge(name: string, help: string, value: number, labels?: Record<string, string>): MetricSample {
  return {name, type: 'gauge', help, value, labels}
}

export interface RunMetrics {
  /** the job's name in metric names and the Pushgateway's job: `sweep` → `regops_sweep_…` */
  job: string
  /** region, shard, mode; an empty value is left out (Prometheus treats it as absent) */
  labels: Record<string, string>
  outcome: RunOutcome
  durationSeconds: number
  /** seconds since the epoch, when this run ended */
  endedAt: number
  /** from the result; none when the run ended on an error */
  samples: MetricSample[]
}

/** What a previous run left in the same file for the same labels: the counters this run adds to. */
export interface CarriedOver {
  runs: Partial<Record<RunOutcome, number>>
  lastSuccess?: number
}

/** Renders a run's metrics: HELP and TYPE once per family, families in a fixed order. */
export function renderMetrics(run: RunMetrics, carried: CarriedOver = {runs: {}}): string {
  const prefix = `regops_${run.job}`
  const families = new Map<string, {type: string; help: string; lines: string[]}>()
  const add = (sample: MetricSample) => {
    const name = `${prefix}_${sample.name}`
    let family = families.get(name)
    if (!family) {
      family = {type: sample.type, help: sample.help, lines: []}
      families.set(name, family)
    }
    family.lines.push(`${name}${labelText({...run.labels, ...sample.labels})} ${formatValue(sample.value)}`)
  }
  for (const outcome of OUTCOMES) {
    const runs = (carried.runs[outcome] ?? 0) + (outcome === run.outcome ? 1 : 0)
    add(counter('runs_total', 'Runs of this job, by how they ended (exit code).', runs, {outcome}))
  }
  add(gauge('duration_seconds', 'Wall time of the last run.', run.durationSeconds))
  const finished = run.outcome === 'success' || run.outcome === 'findings'
  const lastSuccess = finished ? run.endedAt : carried.lastSuccess
  if (lastSuccess !== undefined)
    add(
      gauge(
        'last_success_timestamp_seconds',
        'When a run last finished its work (exit 0 or 1), in seconds since the epoch.',
        lastSuccess,
      ),
    )
  for (const sample of run.samples) add(sample)
  const lines: string[] = []
  for (const [name, family] of families)
    lines.push(`# HELP ${name} ${escapeHelp(family.help)}`, `# TYPE ${name} ${family.type}`, ...family.lines)
  return lines.join('\n') + '\n'
}

function labelText(labels: Record<string, string>): string {
  const pairs = Object.entries(labels)
    .filter(([, value]) => value !== '')
    .map(([key, value]) => `${key}="${value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`)
  return pairs.length ? `{${pairs.join(',')}}` : ''
}

function escapeHelp(help: string): string {
  return help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN'
  if (value === Infinity) return '+Inf'
  if (value === -Infinity) return '-Inf'
  return String(value)
}

/**
 * The runs counters and last success of a previous run in `file` with the same labels, so that a
 * textfile counts runs across runs and a failed run keeps the last success. A file that is missing or
 * not ours carries nothing over.
 */
export async function readCarriedOver(file: string, run: Pick<RunMetrics, 'job' | 'labels'>): Promise<CarriedOver> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch {
    return {runs: {}}
  }
  const carried: CarriedOver = {runs: {}}
  const prefix = `regops_${run.job}`
  for (const outcome of OUTCOMES) {
    const value = sampleValue(text, `${prefix}_runs_total${labelText({...run.labels, outcome})}`)
    if (value !== undefined) carried.runs[outcome] = value
  }
  carried.lastSuccess = sampleValue(text, `${prefix}_last_success_timestamp_seconds${labelText(run.labels)}`)
  return carried
}

function sampleValue(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(series + ' ')) continue
    const value = Number(line.slice(series.length + 1).trim())
    return Number.isFinite(value) ? value : undefined
  }
  return undefined
}

/** Written to a temporary file beside it and renamed, so the collector never reads half a file. */
export async function writeMetricsFile(file: string, text: string): Promise<void> {
  await mkdir(dirname(file), {recursive: true})
  const temporary = `${file}.${process.pid}.tmp`
  await writeFile(temporary, text)
  await rename(temporary, file)
}

/**
 * POSTs the text to a Pushgateway under /metrics/job/regops_<job>/<label>/<value>…: region and shard
 * are the grouping key, so shards of one job do not replace each other's metrics. POST replaces only
 * the metric families it carries, so a failed run (which carries no last_success sample) leaves the
 * last success in place. Label values go base64url-encoded (`@base64`): a shard "2/8" holds a slash.
 */
export async function pushMetrics(
  gateway: string,
  run: Pick<RunMetrics, 'job' | 'labels'>,
  text: string,
  timeoutMs = 10_000,
): Promise<void> {
  const url = pushUrl(gateway, run)
  // undici costs tens of milliseconds to load: only a run that pushes pays for it
  const {request} = await import('undici')
  const response = await request(url, {
    method: 'POST',
    body: text,
    headers: {'content-type': 'text/plain; version=0.0.4'},
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    signal: AbortSignal.timeout(timeoutMs),
  })
  const answer = await response.body.text()
  if (response.statusCode >= 300)
    throw new Error(`${redactUrl(url)} answered ${response.statusCode}: ${answer.slice(0, 200).trim()}`)
}

export function pushUrl(gateway: string, run: Pick<RunMetrics, 'job' | 'labels'>): string {
  let path = `/metrics/job/regops_${run.job}`
  for (const key of ['region', 'shard']) {
    const value = run.labels[key]
    if (value) path += `/${key}@base64/${Buffer.from(value).toString('base64url')}`
  }
  return gateway.replace(/\/+$/, '') + path
}
