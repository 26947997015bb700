// loadtest pull against a registry that misbehaves (a small loopback server): an image that does not exist,
// garbage JSON, a body cut short of its Content-Length, endless redirects, a silent server. Each is counted
// as an error of its kind, the run goes on, and it ends on time.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import http from 'node:http'
import {listenOnLoopback} from '../../helpers/ports.js'
import {runPullLoadtest} from '../../../src/lib/loadtest/run-pull.js'
import {loadOptions, openModel} from './options.js'

const layer = Buffer.alloc(4096, 7)
const layerDigest = 'sha256:' + createHash('sha256').update(layer).digest('hex')
const config = Buffer.from('{"architecture":"amd64","os":"linux"}')
const configDigest = 'sha256:' + createHash('sha256').update(config).digest('hex')
const manifest = (layerRef: string, size: number) =>
  JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: {mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: configDigest},
    layers: [{mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size, digest: layerRef}],
  })
const truncatedDigest = 'sha256:' + 'ab'.repeat(32)
const loopDigest = 'sha256:' + 'cd'.repeat(32)

let server: http.Server
let url: string
let close: () => Promise<void>
before(async () => {
  server = http.createServer((req, res) => {
    const path = req.url ?? ''
    const json = (body: string) =>
      res
        .writeHead(200, {
          'content-type': 'application/vnd.docker.distribution.manifest.v2+json',
          'content-length': Buffer.byteLength(body),
        })
        .end(body)
    if (path === '/v2/') return res.writeHead(200).end('{}')
    if (path === '/v2/good/manifests/v1') return json(manifest(layerDigest, layer.length))
    if (path === '/v2/garbage/manifests/v1') return json('{"schemaVersion": 2, "layers": [')
    if (path === '/v2/short/manifests/v1') return json(manifest(truncatedDigest, 1000))
    if (path === '/v2/loop/manifests/v1') return json(manifest(loopDigest, 10))
    if (path === '/v2/silent/manifests/v1') return // never answers
    if (path.endsWith(`/blobs/${configDigest}`))
      return res.writeHead(200, {'content-length': config.length}).end(config)
    if (path.endsWith(`/blobs/${layerDigest}`)) return res.writeHead(200, {'content-length': layer.length}).end(layer)
    if (path.endsWith(`/blobs/${truncatedDigest}`)) {
      res.writeHead(200, {'content-length': 1000})
      res.write(Buffer.alloc(10))
      setTimeout(() => res.socket?.destroy(), 20)
      return
    }
    if (path.includes(`/blobs/${loopDigest}`))
      return res.writeHead(302, {location: `/v2/loop/blobs/${loopDigest}?hop=${Math.random()}`}).end()
    res.writeHead(404, {'content-type': 'application/json'}).end('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
  })
  ;({url, close} = await listenOnLoopback(server))
})
after(() => close())

test('every kind of bad answer is counted as its kind, the good image still pulls, and the run ends on time', async () => {
  const images = ['good', 'garbage', 'short', 'loop', 'missing', 'silent'].map((repository) => ({
    repository,
    reference: 'v1',
    weight: 1,
  }))
  const started = Date.now()
  const report = await runPullLoadtest(
    loadOptions({registry: {url}, images, model: openModel(60, 3000), timeoutMs: 1000, graceMs: 500, verify: true}),
  )
  const tookMs = Date.now() - started
  // 3 s of starts, at most 1 s for a request, 0.5 s grace: 4.5 s, plus slack for a loaded 2-core host.
  // A run that waited on the silent server would not end at all.
  assert.ok(tookMs < 7500, `took ${tookMs} ms`)
  assert.ok(report.pulls.succeeded > 0, 'the good image pulls')
  for (const kind of ['bad_manifest', 'truncated_body', 'too_many_redirects', 'not_found', 'timeout']) {
    assert.ok((report.errors[kind] ?? 0) > 0, `${kind} counted: ${JSON.stringify(report.errors)}`)
  }
  assert.equal(
    report.pulls.failed,
    Object.values(report.errors).reduce((a, b) => a + b, 0),
  )
  assert.ok(
    report.stages.manifest!.errors.not_found! > 0 && report.stages.layer!.errors.truncated_body! > 0,
    'errors are counted at their stage',
  )
  assert.ok(report.stages.redirect!.count > 0, 'the redirect hops were timed')
  assert.equal(report.pulls.started, report.pulls.completed + report.pulls.cutOff)
})

test('at the end of the grace period, requests still waiting on a silent server are cut off, not failed', async () => {
  const started = Date.now()
  const report = await runPullLoadtest(
    loadOptions({
      registry: {url},
      images: [{repository: 'silent', reference: 'v1', weight: 1}],
      model: openModel(20, 1000),
      timeoutMs: 60_000,
      graceMs: 300,
    }),
  )
  const tookMs = Date.now() - started
  // 1 s of starts and 0.3 s of grace; waiting for the 60 s timeout instead would take a minute.
  assert.ok(tookMs < 5000, `took ${tookMs} ms`)
  assert.ok(report.pulls.started >= 15, `started ${report.pulls.started}`)
  assert.equal(report.pulls.cutOff, report.pulls.started)
  assert.equal(report.pulls.failed, 0, JSON.stringify(report.errors))
})
