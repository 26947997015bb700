// A registry that stops answering must not make the open model queue pulls without bound: arrivals over
// --max-in-flight are dropped and counted, so however long the stall, the client holds at most that many pulls
// (and their requests, sockets and buffers) and its memory stays bounded.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import {listenOnLoopback} from '../../helpers/ports.js'
import {runPullLoadtest, type LoadProgress} from '../../../src/lib/loadtest/run-pull.js'
import {loadOptions, openModel} from './options.js'

let server: http.Server
let url: string
let close: () => Promise<void>
let held = 0
let mostHeld = 0
before(async () => {
  // Answers the ping and then holds every manifest request until the connection is closed.
  server = http.createServer((req, res) => {
    if (req.url === '/v2/') return res.writeHead(200).end('{}')
    held++
    mostHeld = Math.max(mostHeld, held)
    res.on('close', () => held--)
  })
  ;({url, close} = await listenOnLoopback(server))
})
after(() => close())

test('a registry that stalls: arrivals over --max-in-flight are dropped and counted, never queued', async () => {
  const MAX_IN_FLIGHT = 20
  const progress: LoadProgress[] = []
  const started = performance.now()
  const report = await runPullLoadtest(
    loadOptions({
      registry: {url},
      images: [{repository: 'app/stalled', reference: 'v1', weight: 1}],
      // 400 pulls/s for 1.5 s: 600 arrivals, of which only the first 20 can ever be in flight
      model: openModel(400, 1500, MAX_IN_FLIGHT),
      manifestsOnly: true,
      pingEveryPull: false,
      graceMs: 100,
      onProgress: (p) => progress.push(p),
    }),
  )
  const elapsedMs = performance.now() - started
  const p = report.pulls
  assert.equal(p.started, MAX_IN_FLIGHT, JSON.stringify(p))
  assert.ok(Math.abs(p.scheduled - 600) <= 1, `${p.scheduled} scheduled`)
  assert.equal(p.dropped, p.scheduled - MAX_IN_FLIGHT)
  assert.equal(p.cutOff, MAX_IN_FLIGHT, 'the held pulls are cut off at the end, not counted as errors')
  assert.equal(p.failed, 0, JSON.stringify(report.errors))
  assert.ok(mostHeld <= MAX_IN_FLIGHT, `the registry held ${mostHeld} requests at once`)
  assert.ok(progress.length > 0 && progress.every((x) => x.inFlight <= MAX_IN_FLIGHT), JSON.stringify(progress))
  // The stall does not stretch the run: it ends after its span and the grace period (held requests time out at 5 s).
  assert.ok(elapsedMs < 4000, `the run took ${Math.round(elapsedMs)} ms`)
})
