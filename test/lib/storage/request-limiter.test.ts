// The request limiter against a real loopback HTTP server behind the throttling proxy: it backs off to
// what a server that answers 503 SlowDown above N in flight accepts, holds down when latency grows with
// the requests in flight, grows when the server keeps up, and honours a fixed limit and a rate cap.
// Retries back off and stop where they should.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import type {AddressInfo} from 'node:net'
import {request} from 'undici'
import {startFaultProxy, type FaultProxy} from '../../helpers/fault-proxy.js'
import {RequestLimiter, classifyStorageError, type RequestRates} from '../../../src/lib/storage/request-limiter.js'
import {S3HttpError} from '../../../src/lib/storage/s3-read.js'

let origin: http.Server
let proxy: FaultProxy
let originHits = 0

before(async () => {
  origin = http.createServer((req, res) => {
    originHits++
    if (req.url?.startsWith('/missing')) {
      res.writeHead(404)
      res.end()
      return
    }
    res.writeHead(200, {'content-type': 'text/plain'})
    res.end('ok')
  })
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve))
  proxy = await startFaultProxy({target: `http://127.0.0.1:${(origin.address() as AddressInfo).port}`, seed: 3})
})
after(async () => {
  await proxy?.close()
  origin?.closeAllConnections()
  await new Promise<void>((resolve) => origin?.close(() => resolve()))
})

async function get(path = '/object'): Promise<string> {
  const response = await request(`${proxy.endpoint}${path}`)
  const text = await response.body.text()
  if (response.statusCode !== 200)
    throw new S3HttpError(
      response.statusCode,
      response.statusCode === 503 ? 'SlowDown' : '',
      `HTTP ${response.statusCode}`,
    )
  return text
}

/** `total` requests from `workers` callers at once, through one limiter. */
async function drive(limiter: RequestLimiter, total: number, workers = 64): Promise<{ok: number; ms: number}> {
  let next = 0
  let ok = 0
  const started = performance.now()
  await Promise.all(
    Array.from({length: workers}, async () => {
      while (next++ < total) {
        await limiter.run('read', () => get(), {classify: classifyStorageError})
        ok++
      }
    }),
  )
  return {ok, ms: performance.now() - started}
}

function limiter(rates: Partial<RequestRates> = {}, attempts = 8): RequestLimiter {
  return new RequestLimiter({max: 64, ...rates}, attempts)
}

test('503 SlowDown above 12 in flight: the limit settles under 12 and every request succeeds', async () => {
  proxy.setThrottle({maxInFlight: 12, baseLatencyMs: 40, latencyPerInFlightMs: 1})
  const requests = limiter()
  const {ok} = await drive(requests, 1000)
  const server = proxy.throttleStats()
  proxy.setThrottle(undefined)
  assert.equal(ok, 1000)
  // Slow start runs into the ceiling a few times; past that the limit stays under it. A limiter that
  // ignored 503s sits at 64 and has most requests refused.
  assert.ok(
    server.throttled < 150,
    `${server.throttled} requests answered 503 (of ${server.passed + server.throttled})`,
  )
  assert.ok(requests.stats().limit <= 13, `limit ${requests.stats().limit}`)
  assert.ok(requests.stats().limit >= 4, `limit ${requests.stats().limit} stays useful`)
})

test('latency that grows with requests in flight stops the limit well below the ceiling, without any 503', async () => {
  proxy.setThrottle({baseLatencyMs: 20, latencyPerInFlightMs: 10})
  const requests = limiter()
  await drive(requests, 800)
  const server = proxy.throttleStats()
  proxy.setThrottle(undefined)
  assert.equal(server.throttled, 0)
  // 20 ms + 10 ms per request in flight: round trips double from one window's best at about twice its
  // limit. A limiter blind to latency climbs to the ceiling (64) and stays there.
  assert.ok(requests.stats().highest < 64, `highest ${requests.stats().highest}`)
  assert.ok(requests.stats().limit <= 48, `limit ${requests.stats().limit}`)
})

test('a server that keeps up lets the limit grow to the ceiling', async () => {
  proxy.setThrottle({baseLatencyMs: 100})
  const requests = limiter({max: 32})
  await drive(requests, 600)
  proxy.setThrottle(undefined)
  assert.ok(requests.stats().limit >= 24, `limit ${requests.stats().limit}`)
  assert.ok(requests.stats().highest <= 32, `highest ${requests.stats().highest}: never above --max-concurrency`)
})

test('a fixed limit pins the requests in flight', async () => {
  proxy.setThrottle({baseLatencyMs: 3, latencyPerInFlightMs: 1})
  const requests = limiter({fixed: 5})
  await drive(requests, 200)
  const server = proxy.throttleStats()
  proxy.setThrottle(undefined)
  assert.equal(server.peakInFlight, 5)
  assert.equal(requests.stats().limit, 5)
})

test('--tps-limit: no more requests start in a second than the rate', async () => {
  proxy.setThrottle({maxPerSecond: 1000})
  const requests = limiter({tps: 40})
  const {ms} = await drive(requests, 100, 16)
  proxy.setThrottle(undefined)
  // A full bucket of 40 at once, then 40 a second: the other 60 take at least 1.5 s.
  assert.ok(ms >= 1400, `100 requests at 40/s took ${Math.round(ms)} ms`)
  assert.ok(ms < 4000, `and not much longer: ${Math.round(ms)} ms`)
})

test('retries: a lasting 500 stops after the attempts, a 404 is the answer at once', async () => {
  proxy.setRules([{name: 'broken', match: (r) => r.path === '/broken', action: {kind: 'status', status: 500}}])
  const requests = limiter({}, 4)
  await assert.rejects(
    requests.run('read', () => get('/broken'), {classify: classifyStorageError}),
    (error: S3HttpError) => error.status === 500,
  )
  assert.equal(proxy.fired('broken'), 4)
  const before = originHits
  await assert.rejects(
    requests.run('read', () => get('/missing'), {classify: classifyStorageError}),
    (error: S3HttpError) => error.status === 404,
  )
  assert.equal(originHits - before, 1)
  assert.equal(requests.stats().retries, 3)
  proxy.setRules([])
})
