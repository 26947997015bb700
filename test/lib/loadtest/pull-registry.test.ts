// loadtest pull against Debian's docker-registry 2.8 on the filesystem: token authentication with a real
// JWT issuer, the open model's arrival rate, a stall that the open model shows and the closed one hides,
// and the command's verdicts (exit codes) and exact shard merge.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {startRegistry, type RegistryServer} from '../../helpers/registry.js'
import {startTokenIssuer, type TokenIssuer} from '../../helpers/token-issuer.js'
import {startHttpProxy} from '../../helpers/http-proxy.js'
import {pushImage, pushIndex} from '../../helpers/images.js'
import {makeTempDir, removeTempDir} from '../../helpers/tmp.js'
import {runCli} from '../../helpers/cli.js'
import type {runPullLoadtest as RunPullLoadtest} from '../../../src/lib/loadtest/run-pull.js'
import {parseThresholds} from '../../../src/lib/loadtest/thresholds.js'
import {StageStats} from '../../../src/lib/loadtest/stage-stats.js'
import {loadOptions, openModel} from './options.js'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

// Loading undici (npm) installs its dispatcher under Node's global fetch, which then refuses the image
// helpers' explicit Content-Length: the service is imported only after the images are pushed.
let runPullLoadtest: typeof RunPullLoadtest
let plain: RegistryServer
let authed: RegistryServer
let issuer: TokenIssuer
const images = [
  {repository: 'app/web', reference: 'v1', weight: 1},
  {repository: 'app/multi', reference: 'latest', weight: 1},
]

before(async () => {
  const storage = makeTempDir('lt-storage')
  cleanups.push(() => removeTempDir(storage))
  plain = await startRegistry({storage: {kind: 'filesystem', root: storage}})
  cleanups.push(() => plain.stop())
  await pushImage(plain.url, 'app/web', 'v1', {layers: 3, seed: 'web'})
  const amd = await pushImage(plain.url, 'app/multi', undefined, {layers: 2, seed: 'amd'})
  const arm = await pushImage(plain.url, 'app/multi', undefined, {
    layers: 2,
    seed: 'arm',
    platform: {os: 'linux', architecture: 'arm64'},
  })
  await pushIndex(plain.url, 'app/multi', 'latest', [amd, arm])
  ;({runPullLoadtest} = await import('../../../src/lib/loadtest/run-pull.js'))
  // The same storage behind a second registry that wants bearer tokens.
  issuer = await startTokenIssuer({lifetimeSeconds: 2})
  cleanups.push(() => issuer.stop())
  authed = await startRegistry({storage: {kind: 'filesystem', root: storage}, auth: issuer.registryAuth()})
  cleanups.push(() => authed.stop())
})

describe('loadtest pull on docker-registry', () => {
  test('with token auth, pulls succeed and the realm is asked once per token lifetime, not per request', async () => {
    const report = await runPullLoadtest(
      loadOptions({
        registry: {url: authed.url, username: 'ci', password: 'hunter2-secret'},
        images,
        model: openModel(15, 5000),
        verify: true,
      }),
    )
    assert.equal(report.pulls.failed, 0, JSON.stringify(report.errors))
    assert.ok(report.pulls.succeeded >= 70, `succeeded ${report.pulls.succeeded}`)
    // two scopes, a 2 s lifetime renewed 0.2 s early, a 5 s run: about 3 fetches per scope
    const perScope = new Map<string, number>()
    for (const r of issuer.requests) perScope.set(r.scope ?? '', (perScope.get(r.scope ?? '') ?? 0) + 1)
    assert.deepEqual([...perScope.keys()].sort(), ['repository:app/multi:pull', 'repository:app/web:pull'])
    for (const [scope, n] of perScope) assert.ok(n >= 2 && n <= 4, `${scope}: ${n} token fetches`)
    assert.equal(report.tokenFetches, issuer.requests.length)
    assert.ok(
      issuer.requests.every((r) => r.basic),
      'the configured credentials go to the realm',
    )
    // ping, manifest (index + child for multi), config, layers: all timed
    assert.equal(report.stages.ping!.count, report.pulls.started)
    assert.ok(report.stages.layer!.count >= report.pulls.succeeded * 2)
    assert.ok(report.stages.layer_first_byte!.count === report.stages.layer!.count)
    assert.equal(report.stages.token!.count, issuer.requests.length)
    assert.ok(!JSON.stringify(report).includes('hunter2-secret'))
  })

  test('at --rate 200 for 10 s, the pulls started are within 2% of 2,000 (manifests only)', async () => {
    // A slow answer on a loaded 2-core host is slow, not failed: this test is about starts, so the per-pull
    // timeout and the grace for pulls still running are long (the latency still shows in the histograms).
    const report = await runPullLoadtest(
      loadOptions({
        registry: {url: plain.url},
        images,
        model: openModel(200, 10_000, 10_000),
        manifestsOnly: true,
        timeoutMs: 30_000,
        graceMs: 30_000,
      }),
    )
    assert.ok(Math.abs(report.pulls.started - 2000) <= 40, `started ${report.pulls.started}`)
    // Started before the 10 s were over: on a quiet host all of them; this 2-core machine runs other
    // engineers' suites too (load average 18 measured), where the event loop was once starved 0.7 s and
    // 1,958 made it in time. The late ones still count their latency from their intended start.
    assert.ok(
      report.startedInSpan >= 1900,
      `started in the 10 s: ${report.startedInSpan}, late start up to ${report.maxStartLagMs} ms`,
    )
    assert.equal(report.pulls.dropped, 0)
    assert.equal(report.pulls.failed, 0, JSON.stringify(report.errors))
  })

  test('a 1 s stall shows in the open model p99 and hides in the closed model', async () => {
    const proxy = await startHttpProxy(plain.url, {record: false})
    cleanups.push(() => proxy.stop())
    const run = async (model: 'open' | 'closed') => {
      setTimeout(() => proxy.stall(1200, 1000), 1000).unref()
      return runPullLoadtest(
        loadOptions({
          registry: {url: proxy.url},
          images,
          manifestsOnly: true,
          pingEveryPull: false,
          model: model === 'open' ? openModel(100, 5000) : {kind: 'closed', vus: 2, durationMs: 5000},
        }),
      )
    }
    const open = await run('open')
    const closed = await run('closed')
    // Open: every pull meant to start in the 1.2 s window waits ~1 s (a quarter of the run): p95 and p99 show it.
    // Closed: each of 2 users is held at most twice, a few samples among hundreds: p95 looks healthy.
    assert.ok(open.stages.pull!.p99Ms >= 900, `open p99 ${open.stages.pull!.p99Ms} ms`)
    assert.ok(open.stages.pull!.p95Ms >= 900, `open p95 ${open.stages.pull!.p95Ms} ms`)
    assert.ok(
      closed.stages.pull!.p95Ms < 500,
      `closed p95 ${closed.stages.pull!.p95Ms} ms (${closed.stages.pull!.count} pulls)`,
    )
    assert.ok(closed.stages.pull!.maxMs >= 900, 'the closed model did see the stall, in a handful of samples')
  })

  test('thresholds decide the exit code and name themselves; shard reports merge exactly', async () => {
    const dir = makeTempDir('lt-cli')
    cleanups.push(() => removeTempDir(dir))
    const env = {REGOPS_LOADTEST_LOOPBACK_ONLY: '1'}
    const base = [
      'loadtest',
      'pull',
      '--registry',
      plain.url,
      '--image',
      'app/web:v1',
      '--image',
      'app/multi:latest=2',
      '--rate',
      '20',
      '--duration',
      '2s',
    ]
    const [breached, met] = await Promise.all([
      runCli(
        [
          ...base,
          '--threshold',
          'manifest.p99<1us',
          '--threshold',
          'errors.rate<1%',
          '--report',
          path.join(dir, 'a.json'),
        ],
        {env},
      ),
      runCli(
        [
          ...base,
          '--threshold',
          'manifest.p99<5s',
          '--threshold',
          'errors.rate<1%',
          '--report',
          path.join(dir, 'b.json'),
        ],
        {env},
      ),
    ])
    assert.equal(breached.code, 1, breached.stderr)
    assert.match(breached.stdout, /threshold manifest\.p99<1us: BREACHED/)
    assert.match(breached.stdout, /threshold errors\.rate<1%: ok/)
    assert.equal(met.code, 0, met.stderr + met.stdout)

    const json = await runCli([...base, '--threshold', 'manifest.p99<1us', '--json'], {env})
    assert.equal(json.code, 1)
    assert.equal(json.json.kind, 'loadtest-pull')
    assert.deepEqual(json.json.breached, ['manifest.p99<1us'])

    const malformed = await runCli([...base, '--threshold', 'manifest.p99<250'], {env})
    assert.equal(malformed.code, 2)
    assert.match(malformed.stderr, /malformed threshold 'manifest\.p99<250'/)

    // merge: percentiles of the merge = percentiles of one histogram holding both shards' samples
    const a = JSON.parse(readFileSync(path.join(dir, 'a.json'), 'utf8'))
    const b = JSON.parse(readFileSync(path.join(dir, 'b.json'), 'utf8'))
    const merged = await runCli([
      'loadtest',
      'merge',
      path.join(dir, 'a.json'),
      path.join(dir, 'b.json'),
      '--json',
      '--threshold',
      'manifest.p99<5s',
    ])
    assert.equal(merged.code, 0, merged.stderr)
    const oneHistogram = StageStats.fromReport(a.stages.manifest, 'a')
    oneHistogram.add(StageStats.fromReport(b.stages.manifest, 'b'))
    const whole = oneHistogram.percentiles()
    const m = merged.json.stages.manifest
    assert.deepEqual(
      [m.count, m.p50Ms, m.p95Ms, m.p99Ms, m.maxMs],
      [whole.count, whole.p50Ms, whole.p95Ms, whole.p99Ms, whole.maxMs],
    )
    assert.equal(m.count, a.stages.manifest.count + b.stages.manifest.count)
    assert.equal(merged.json.pulls.started, a.pulls.started + b.pulls.started)
    // without --threshold, the shards' own thresholds are judged once on the whole: the 1us one fails
    const mergedOwn = await runCli(['loadtest', 'merge', path.join(dir, 'a.json'), path.join(dir, 'b.json')])
    assert.equal(mergedOwn.code, 1)
    assert.match(mergedOwn.stdout, /threshold manifest\.p99<1us: BREACHED/)
    assert.ok(parseThresholds(['manifest.p99<5s']).length === 1)
  })
})
