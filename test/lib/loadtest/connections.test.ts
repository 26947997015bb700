// --connections caps the sockets per host: pulls over it wait for a connection, and that wait is part of their
// latency (from the intended start), so a client-side queue cannot make a slow registry look fast.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import {listenOnLoopback} from '../../helpers/ports.js'
import {runPullLoadtest} from '../../../src/lib/loadtest/run-pull.js'
import {loadOptions, openModel} from './options.js'

const manifest = JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
  config: {mediaType: 'application/vnd.docker.container.image.v1+json', size: 2, digest: 'sha256:' + 'a'.repeat(64)},
  layers: [],
})
const ANSWER_MS = 50

let server: http.Server
let url: string
let close: () => Promise<void>
let open = 0
let mostOpen = 0
before(async () => {
  server = http.createServer((req, res) => {
    if (req.url === '/v2/') return res.writeHead(200).end('{}')
    setTimeout(() => {
      res
        .writeHead(200, {
          'content-type': 'application/vnd.docker.distribution.manifest.v2+json',
          'content-length': Buffer.byteLength(manifest),
        })
        .end(manifest)
    }, ANSWER_MS)
  })
  server.on('connection', (socket) => {
    open++
    mostOpen = Math.max(mostOpen, open)
    socket.on('close', () => open--)
  })
  ;({url, close} = await listenOnLoopback(server))
})
after(() => close())

const run = (connections?: number) =>
  runPullLoadtest(
    loadOptions({
      registry: {url},
      images: [{repository: 'app/slow', reference: 'v1', weight: 1}],
      // 60 pulls/s of 50 ms each keep 3 requests in flight; two connections carry only 40/s
      model: openModel(60, 1000),
      manifestsOnly: true,
      pingEveryPull: false,
      connections,
      graceMs: 10_000,
    }),
  )

test('--connections 2 holds two sockets; pulls queue for them and the wait shows in their latency', async () => {
  mostOpen = 0
  const capped = await run(2)
  assert.equal(capped.pulls.failed, 0, JSON.stringify(capped.errors))
  assert.equal(capped.pulls.dropped, 0)
  assert.equal(capped.pulls.succeeded, capped.pulls.started)
  assert.ok(mostOpen <= 2, `${mostOpen} sockets open at once`)
  // A backlog of about 20 pulls by the end of the second, the last waiting ~0.5 s for a connection.
  assert.ok(capped.stages.pull!.p99Ms >= 300, `pull p99 ${capped.stages.pull!.p99Ms} ms`)

  server.closeAllConnections()
  mostOpen = 0
  const uncapped = await run(undefined)
  assert.equal(uncapped.pulls.failed, 0, JSON.stringify(uncapped.errors))
  assert.ok(mostOpen >= 3, `by default one connection per request in flight: ${mostOpen} at most`)
  assert.ok(uncapped.stages.pull!.p99Ms < capped.stages.pull!.p99Ms, 'without the cap, no queue')
})
