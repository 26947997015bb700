// Pure parts of the load test: thresholds, the arrival schedule, image choice, the load plan, and the
// exactness of merged histograms.
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import path from 'node:path'
import {makeTempDir, removeTempDir} from '../../helpers/tmp.js'
import {ArrivalSchedule} from '../../../src/lib/loadtest/arrivals.js'
import {ImagePicker, parseImage, parseScenario} from '../../../src/lib/loadtest/image-mix.js'
import {planLoad} from '../../../src/lib/loadtest/plan.js'
import {mergeReports, emptyCounts, stagesToReport} from '../../../src/lib/loadtest/report.js'
import {newStageSet, StageStats} from '../../../src/lib/loadtest/stage-stats.js'
import {evaluateThresholds, parseThreshold} from '../../../src/lib/loadtest/thresholds.js'
import {UsageError} from '../../../src/lib/errors.js'

test('thresholds parse with units and are judged on the figures', () => {
  const stages = newStageSet()
  for (let i = 1; i <= 1000; i++) stages.manifest.recordLatency(i) // 1..1000 ms
  const pulls = {completed: 1000, failed: 2, started: 1000, dropped: 0}
  const verdict = (expr: string) => evaluateThresholds([parseThreshold(expr)], {stages, pulls})[0]!
  assert.equal(verdict('manifest.p99<1s').ok, true)
  assert.equal(verdict('manifest.p99<900ms').ok, false)
  assert.ok(Math.abs(verdict('manifest.p99<1s').actual - 990) <= 1)
  assert.equal(verdict('errors.rate<0.1%').ok, false) // 0.2%
  assert.equal(verdict('errors.rate<=0.2%').ok, true)
  assert.equal(verdict('errors.count<3').ok, true)
  assert.equal(verdict('dropped.count<=0').ok, true)
  assert.equal(verdict('layer.first_byte.p95<2s').ok, true)
  for (const bad of [
    'manifest.p99<250',
    'manifest.p99 250ms',
    'nosuch.p99<1s',
    'errors.rate<5',
    'errors.count<1.5',
    'manifest.rate<1%',
    'manifest.p101<1s',
  ]) {
    assert.throws(
      () => parseThreshold(bad),
      (e: unknown) => e instanceof UsageError && e.exitCode === 2 && e.message.includes(`'${bad}'`),
      bad,
    )
  }
})

test('the arrival schedule starts k pulls by the integral of the rate, ramps included', () => {
  const constant = ArrivalSchedule.constant(200, 10_000)
  assert.equal(constant.offsetOf(0), 0)
  assert.ok(Math.abs(constant.offsetOf(1)! - 5) < 1e-9)
  assert.ok(Math.abs(constant.offsetOf(1999)! - 9995) < 1e-6)
  assert.equal(constant.offsetOf(2001), undefined)
  // 0 → 100/s over 10 s (500 pulls), then 100/s for 5 s (500 more)
  const ramp = new ArrivalSchedule(0, [
    {durationMs: 10_000, target: 100},
    {durationMs: 5000, target: 100},
  ])
  assert.equal(ramp.expectedArrivals, 1000)
  assert.ok(Math.abs(ramp.offsetOf(125)! - 5000) < 1e-6, 'a quarter of the ramp arrivals by half its time')
  assert.ok(Math.abs(ramp.offsetOf(750)! - 12_500) < 1e-6)
  let count = 0
  while (ramp.offsetOf(count) !== undefined) count++
  assert.equal(count, 1001)
})

test('images parse with weights; the picker follows weights and a Zipf skew', () => {
  assert.deepEqual(parseImage('library/alpine:3.19=5'), {repository: 'library/alpine', reference: '3.19', weight: 5})
  assert.deepEqual(parseImage('a/b@sha256:' + 'a'.repeat(64)), {
    repository: 'a/b',
    reference: 'sha256:' + 'a'.repeat(64),
    weight: 1,
  })
  for (const bad of ['alpine', 'Alpine:1', 'a:b=0', 'a:b=x']) assert.throws(() => parseImage(bad), UsageError, bad)
  let seed = 1
  const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646
  const images = ['a:1', 'b:1', 'c:1', 'd:1'].map((t) => parseImage(t))
  const counts = (zipf: number, imgs = images) => {
    const picker = new ImagePicker(imgs, zipf, random)
    const n: Record<string, number> = {}
    for (let i = 0; i < 20_000; i++) {
      const repository = picker.pick().repository
      n[repository] = (n[repository] ?? 0) + 1
    }
    return n
  }
  const flat = counts(0)
  for (const r of ['a', 'b', 'c', 'd']) assert.ok(Math.abs(flat[r]! - 5000) < 400, `flat ${r}: ${flat[r]}`)
  const zipf = counts(1) // shares 1 : 1/2 : 1/3 : 1/4 of 25/12
  assert.ok(Math.abs(zipf.a! / 20_000 - 0.48) < 0.02 && Math.abs(zipf.d! / 20_000 - 0.12) < 0.02, JSON.stringify(zipf))
  const weighted = counts(0, [parseImage('a:1=3'), parseImage('b:1')])
  assert.ok(Math.abs(weighted.a! / 20_000 - 0.75) < 0.02, JSON.stringify(weighted))
  const scenario = parseScenario(
    {
      images: ['a:1', {ref: 'b:2', weight: 3}],
      zipf: 1.1,
      startRate: 5,
      stages: [{duration: '10s', target: 50}],
      thresholds: ['errors.rate<1%'],
    },
    's.yaml',
  )
  assert.equal(scenario.images[1]!.weight, 3)
  assert.deepEqual(scenario.stages, [{durationMs: 10_000, target: 50}])
  assert.throws(() => parseScenario({stages: [{duration: '10s'}]}, 's.yaml'), /stages\[0\]\.target/)
  assert.throws(() => parseScenario({imagez: []}, 's.yaml'), /imagez: unknown key/)
})

test('a run must end by itself; a shard takes its share of the load', () => {
  assert.throws(() => planLoad({rate: 10, maxInFlight: 10}), /--duration or --max-pulls/)
  assert.throws(() => planLoad({vus: 2, maxInFlight: 10}), /--duration or --max-pulls/)
  assert.throws(() => planLoad({rate: 10, vus: 2, durationMs: 1000, maxInFlight: 10}), /exclude each other/)
  assert.throws(() => planLoad({maxInFlight: 10, durationMs: 1000}), /arrival rate/)
  const capped = planLoad({rate: 100, maxPulls: 50, maxInFlight: 10})
  assert.equal(capped.maxPulls, 50)
  assert.ok(capped.model.kind === 'open' && capped.model.schedule.durationMs <= 501)
  const shard = planLoad({rate: 100, durationMs: 1000, maxPulls: 7, maxInFlight: 10, shard: {index: 2, count: 4}})
  assert.ok(shard.model.kind === 'open' && shard.model.rate === 25)
  assert.equal(shard.maxPulls, 2) // 7 = 2 + 2 + 2 + 1
})

test('merging shard reports gives exactly the percentiles of one histogram of all samples', async () => {
  const dir = makeTempDir('lt-merge')
  try {
    let seed = 7
    const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646
    const all = new StageStats()
    const files: string[] = []
    for (const shard of [0, 1]) {
      const stages = newStageSet()
      // different shapes per shard: a fast one and one with a slow tail
      for (let i = 0; i < 5000; i++) {
        const ms = shard === 0 ? 1 + random() * 20 : random() < 0.05 ? 500 + random() * 2000 : 5 + random() * 50
        stages.manifest.recordLatency(ms)
        all.recordLatency(ms)
      }
      const file = path.join(dir, `s${shard}.json`)
      const pulls = {...emptyCounts(), started: 5000, completed: 5000, succeeded: 5000}
      writeFileSync(
        file,
        JSON.stringify({
          kind: 'loadtest-pull',
          version: 1,
          registry: 'x',
          startedAt: '',
          pulls,
          errors: {},
          tokenFetches: 0,
          stages: stagesToReport(stages),
          thresholds: [{expr: 'manifest.p99<1s', actual: 0, ok: true}],
        }),
      )
      files.push(file)
    }
    const merged = mergeReports(files, undefined)
    const whole = all.percentiles()
    const m = merged.stages.manifest!
    assert.deepEqual(
      [m.count, m.minMs, m.p50Ms, m.p90Ms, m.p95Ms, m.p99Ms, m.p999Ms, m.maxMs],
      [whole.count, whole.minMs, whole.p50Ms, whole.p90Ms, whole.p95Ms, whole.p99Ms, whole.p999Ms, whole.maxMs],
    )
    // each shard met manifest.p99<1s on its own; the whole does not (2.5% of samples over 500 ms)
    assert.deepEqual(merged.breached, ['manifest.p99<1s'])
    assert.throws(() => mergeReports([path.join(dir, 'nope.json')], undefined), UsageError)
  } finally {
    await removeTempDir(dir)
  }
})
