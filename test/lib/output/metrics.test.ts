// Metrics of long-running commands (--metrics-file, --pushgateway) on every exit, and the JSON log lines'
// fields, through the CLI on filesystem stores: a sweep, an audit, a refused sweep, a usage error after
// parsing, a push to a loopback Pushgateway stand-in and to a dead port. Real PostgreSQL where acting needs it.
import {after, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {createServer, type IncomingMessage} from 'node:http'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {runCli} from '../../helpers/cli.js'
import {freePort} from '../../helpers/ports.js'
import {sharedPostgres} from '../../helpers/postgres.js'
import {parsePrometheus, valueOf, type Sample} from '../../helpers/prometheus.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {LayoutWriter} from '../../../src/lib/sample/layout-writer.js'
import {ageTree} from '../../../src/lib/quickstart/sample.js'
import {openDatabase} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {renderMetrics, readCarriedOver, writeMetricsFile} from '../../../src/lib/output/metrics.js'

const DAY = 86_400_000
const cleanups: Array<() => Promise<unknown>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

async function tempDir(label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `regops-metrics-${label}-`))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  return dir
}

/** One image (four referenced blobs) and `orphans` unreferenced blobs, three days old, in region `local`. */
async function store(orphans: number, extra = ''): Promise<{dir: string; root: string; config: string}> {
  const dir = await tempDir('store')
  const root = join(dir, 'registry')
  const writer = new LayoutWriter(new FilesystemDriver('local', root))
  await writer.writeImage({repository: 'team/app', tag: 'v1', seed: 'metrics-app', layers: 2, layerSize: 300})
  for (let i = 0; i < orphans; i++) await writer.writeOrphan(undefined, `metrics-orphan-${i}`, 1000 + i)
  await ageTree(root, new Date(Date.now() - 3 * DAY))
  const config = join(dir, 'regops.yaml')
  await writeFile(config, `regions:\n  local: {url: "file://${root}"}\n${extra}`)
  return {dir, root, config}
}

/** A Pushgateway stand-in on loopback: records each request's method, path and body, answers 200. */
async function pushgateway(): Promise<{url: string; pushes: Array<{method: string; path: string; body: string}>}> {
  const pushes: Array<{method: string; path: string; body: string}> = []
  const server = createServer((req: IncomingMessage, res) => {
    let body = ''
    req.on('data', (d) => (body += d))
    req.on('end', () => {
      pushes.push({method: req.method!, path: req.url!, body})
      res.writeHead(200).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(() => new Promise((resolve) => server.close(resolve)))
  const address = server.address() as {port: number}
  return {url: `http://127.0.0.1:${address.port}`, pushes}
}

async function metricsOf(file: string): Promise<Sample[]> {
  return parsePrometheus(await readFile(file, 'utf8'))
}

describe('metrics files', () => {
  test('a dry-run sweep: the file parses, equals --json, and the Pushgateway stand-in gets the same body', async () => {
    const s = await store(3)
    const file = join(s.dir, 'sweep.prom')
    const gateway = await pushgateway()
    const run = await runCli(
      ['sweep', 'blobs', '--config', s.config, '--shard', '0/1', '--report', join(s.dir, 'r.jsonl')].concat([
        '--metrics-file',
        file,
        '--pushgateway',
        gateway.url,
        '--json',
        '--log-format',
        'json',
      ]),
    )
    assert.equal(run.code, 1, run.stdout + run.stderr)
    const r = run.json
    const samples = await metricsOf(file)
    const labels = {region: 'local', shard: '0/1', mode: 'dry-run'}
    for (const sample of samples)
      assert.deepEqual({region: sample.labels.region, shard: sample.labels.shard, mode: sample.labels.mode}, labels)
    assert.equal(valueOf(samples, 'regops_sweep_runs_total', {outcome: 'findings'}), 1)
    assert.equal(valueOf(samples, 'regops_sweep_runs_total', {outcome: 'success'}), 0)
    assert.equal(valueOf(samples, 'regops_sweep_objects_scanned_total'), r.scanned.blobs)
    assert.equal(valueOf(samples, 'regops_sweep_bytes_scanned_total'), r.scanned.bytes)
    assert.equal(valueOf(samples, 'regops_sweep_candidates'), r.candidates.count)
    assert.equal(r.candidates.count, 3)
    assert.equal(valueOf(samples, 'regops_sweep_candidate_bytes'), r.candidates.bytes)
    assert.equal(valueOf(samples, 'regops_sweep_deleted_total', {type: 'blob'}), r.acted.deleted)
    assert.equal(valueOf(samples, 'regops_sweep_errors_total'), r.acted.failed + r.problemCount)
    const lastSuccess = valueOf(samples, 'regops_sweep_last_success_timestamp_seconds')
    assert.ok(Math.abs(lastSuccess - Date.now() / 1000) < 120, `last success ${lastSuccess} is now`)
    assert.ok(valueOf(samples, 'regops_sweep_duration_seconds') >= r.durationMs / 1000)
    assert.equal(samples.find((x) => x.name === 'regops_sweep_runs_total')?.type, 'COUNTER')

    assert.equal(gateway.pushes.length, 1)
    assert.equal(gateway.pushes[0].method, 'POST')
    const b64 = (v: string) => Buffer.from(v).toString('base64url')
    assert.equal(
      gateway.pushes[0].path,
      `/metrics/job/regops_sweep/region@base64/${b64('local')}/shard@base64/${b64('0/1')}`,
    )
    assert.equal(gateway.pushes[0].body, await readFile(file, 'utf8'))

    // JSON log lines carry job, region, shard and phase as fields, and the progress counters as numbers.
    const lines = run.stderr
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
    const progress = lines.filter((l) => l.progress)
    assert.ok(progress.length > 0, run.stderr)
    for (const line of progress) {
      assert.equal(line.job, 'sweep')
      assert.equal(line.region, 'local')
      assert.equal(line.shard, '0/1')
      assert.match(line.phase, /^(mark|plan|act)$/)
      assert.equal(typeof line.scanned, 'number')
      assert.equal(line.msg, 'sweeping', 'the counters are fields, not text in msg')
    }

    // A second run counts on: runs_total adds up across runs in the same file.
    const again = await runCli(
      ['sweep', 'blobs', '--config', s.config, '--shard', '0/1', '--report', join(s.dir, 'r2.jsonl')].concat([
        '--metrics-file',
        file,
        '--json',
      ]),
    )
    assert.equal(again.code, 1)
    assert.equal(valueOf(await metricsOf(file), 'regops_sweep_runs_total', {outcome: 'findings'}), 2)
  })

  test('an audit of two regions: the file equals --json', async () => {
    const a = await store(2)
    const dir = await tempDir('audit')
    const rootB = join(dir, 'b')
    const writer = new LayoutWriter(new FilesystemDriver('b', rootB))
    await writer.writeImage({repository: 'team/app', tag: 'v1', seed: 'metrics-app', layers: 2, layerSize: 300})
    await ageTree(rootB, new Date(Date.now() - 3 * DAY))
    const config = join(dir, 'regops.yaml')
    await writeFile(config, `regions:\n  a: {url: "file://${a.root}"}\n  b: {url: "file://${rootB}"}\nprimary: a\n`)
    const file = join(dir, 'audit.prom')
    const run = await runCli([
      'audit',
      'regions',
      '--config',
      config,
      '--findings',
      join(dir, 'f.jsonl'),
      '--metrics-file',
      file,
      '--json',
    ])
    assert.equal(run.code, 1, run.stdout + run.stderr)
    const samples = await metricsOf(file)
    const r = run.json
    assert.equal(valueOf(samples, 'regops_audit_regions_runs_total', {outcome: 'findings'}), 1)
    assert.equal(
      valueOf(samples, 'regops_audit_regions_objects_scanned_total'),
      Object.values(r.scanned as Record<string, number>).reduce((x, y) => x + y, 0),
    )
    assert.equal(valueOf(samples, 'regops_audit_regions_candidates'), r.findings.drift)
    assert.ok(r.findings.drift > 0)
    let findings = 0
    for (const kinds of Object.values(r.findings.byRegion as Record<string, Record<string, number>>))
      for (const n of Object.values(kinds)) findings += n
    const perKind = samples.filter((x) => x.name === 'regops_audit_regions_findings')
    assert.equal(
      perKind.reduce((sum, x) => sum + x.value, 0),
      findings,
    )
    assert.equal(valueOf(samples, 'regops_audit_regions_errors_total'), r.problemCount)
    for (const x of samples) assert.equal(x.labels.region, 'all')
  })

  test('a refused sweep (mass-delete guard, exit 4) still writes its metrics, outcome refused, last success kept', async () => {
    const url = await (await sharedPostgres()).createDatabase()
    const db = openDatabase(url, {max: 2})
    await migrateUp(db)
    await db.close()
    const s = await store(6, `database:\n  url: ${url}\n`)
    const file = join(s.dir, 'refused.prom')
    const earlier = renderMetrics({
      job: 'sweep',
      labels: {region: 'local', shard: '', mode: 'delete'},
      outcome: 'success',
      durationSeconds: 1,
      endedAt: 1_700_000_000,
      samples: [],
    })
    await writeMetricsFile(file, earlier)
    const run = await runCli(['sweep', 'blobs', '--config', s.config, '--delete', '--metrics-file', file, '--json'])
    assert.equal(run.code, 4, run.stdout + run.stderr)
    assert.match(run.json.error.message, /scanned blobs/)
    const samples = await metricsOf(file)
    assert.equal(valueOf(samples, 'regops_sweep_runs_total', {outcome: 'refused', mode: 'delete'}), 1)
    assert.equal(valueOf(samples, 'regops_sweep_runs_total', {outcome: 'success', mode: 'delete'}), 1, 'carried over')
    assert.equal(valueOf(samples, 'regops_sweep_last_success_timestamp_seconds'), 1_700_000_000)
    assert.ok(valueOf(samples, 'regops_sweep_duration_seconds') > 0)
  })

  test('a usage error after parsing writes outcome usage; a push to a dead port warns and keeps the exit code', async () => {
    const s = await store(0)
    const file = join(s.dir, 'usage.prom')
    const dead = `http://127.0.0.1:${await freePort()}`
    const run = await runCli([
      'sweep',
      'blobs',
      '--config',
      s.config,
      '--region',
      'nowhere',
      '--metrics-file',
      file,
      '--pushgateway',
      dead,
    ])
    assert.equal(run.code, 2, run.stderr)
    assert.equal(valueOf(await metricsOf(file), 'regops_sweep_runs_total', {outcome: 'usage', region: 'nowhere'}), 1)

    const clean = await runCli([
      'sweep',
      'blobs',
      '--config',
      s.config,
      '--report',
      join(s.dir, 'r.jsonl'),
      '--pushgateway',
      dead,
      '--json',
    ])
    assert.equal(clean.code, 0, clean.stdout + clean.stderr)
    assert.ok(
      clean.json.warnings.some((w: string) => /pushgateway: metrics not pushed/.test(w)),
      JSON.stringify(clean.json.warnings),
    )
  })
})

describe('carrying counters over', () => {
  test('only the series with the same labels; a file that is not ours carries nothing', async () => {
    const dir = await tempDir('carry')
    const file = join(dir, 'm.prom')
    const labels = {region: 'eu', shard: '', mode: 'delete'}
    const first = renderMetrics({
      job: 'sweep',
      labels,
      outcome: 'partial',
      durationSeconds: 2,
      endedAt: 10,
      samples: [],
    })
    await writeMetricsFile(file, first)
    assert.deepEqual(await readCarriedOver(file, {job: 'sweep', labels}), {
      runs: {success: 0, findings: 0, usage: 0, partial: 1, refused: 0, error: 0, interrupted: 0},
      lastSuccess: undefined,
    })
    const other = await readCarriedOver(file, {job: 'sweep', labels: {...labels, region: 'us'}})
    assert.deepEqual(other, {runs: {}, lastSuccess: undefined})
    await writeFile(file, 'garbage\n')
    assert.deepEqual(await readCarriedOver(file, {job: 'sweep', labels}), {runs: {}, lastSuccess: undefined})
    // label values are escaped so that they parse back
    const odd = renderMetrics({
      job: 'x',
      labels: {region: 'a"b\\c'},
      outcome: 'success',
      durationSeconds: 0,
      endedAt: 5,
      samples: [],
    })
    assert.equal(parsePrometheus(odd).find((x) => x.name === 'regops_x_duration_seconds')?.labels.region, 'a"b\\c')
  })
})
