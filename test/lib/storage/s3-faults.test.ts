// The S3 driver under injected faults: radosgw behind the fault-injecting proxy. Transient faults
// (503 SlowDown, 500, a reset connection) are retried to the same answer; lasting ones fail loudly with
// the status, and a truncated body or a lying Content-Length never comes back as a shorter object.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {startRadosgw, type RadosgwServer} from '../../helpers/radosgw.js'
import {isStat, startFaultProxy, type FaultProxy, type FaultRule} from '../../helpers/fault-proxy.js'
import {S3Driver} from '../../../src/lib/storage/s3.js'
import type {S3RegionConfig} from '../../../src/lib/config/config.js'

let rgw: RadosgwServer
let proxy: FaultProxy
let direct: S3Driver
let viaProxy: S3Driver
const BUCKET = 'faults'
const BODY = Buffer.alloc(256 * 1024, 7)

function region(endpoint: string): S3RegionConfig {
  return {
    kind: 's3',
    name: 'faulty',
    url: `s3://${BUCKET}/v2`,
    bucket: BUCKET,
    prefix: 'v2',
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    checksums: 'when_required',
    concurrency: 8,
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
  }
}

before(async () => {
  rgw = await startRadosgw({buckets: [BUCKET]})
  proxy = await startFaultProxy({target: rgw.endpoint, seed: 1})
  direct = new S3Driver(region(rgw.endpoint))
  viaProxy = new S3Driver(region(proxy.endpoint), {maxAttempts: 4})
  for (let i = 0; i < 30; i++) await direct.write(`blobs/k${String(i).padStart(2, '0')}`, Buffer.from(`object ${i}`))
  await direct.write('big', BODY)
})
after(async () => {
  await viaProxy?.close()
  await direct?.close()
  await proxy?.close()
  await rgw?.stop()
})

const objectGet = (key: string) => (req: {method: string; path: string}) =>
  req.method === 'GET' && req.path === `/${BUCKET}/v2/${key}`
const listing = (req: {method: string; query: URLSearchParams}) =>
  req.method === 'GET' && req.query.get('list-type') === '2'

function use(rules: FaultRule[]): void {
  proxy.setRules(rules)
}

test('503 SlowDown and 500 on reads are retried to the same bytes', async () => {
  use([
    {name: 'slowdown', match: objectGet('blobs/k03'), action: {kind: 'status', status: 503}, times: 2},
    {name: 'internal', match: objectGet('blobs/k04'), action: {kind: 'status', status: 500}, times: 1},
  ])
  assert.equal((await viaProxy.readSmall('blobs/k03', 1024)).toString(), 'object 3')
  assert.equal((await viaProxy.readSmall('blobs/k04', 1024)).toString(), 'object 4')
  assert.equal(proxy.fired('slowdown'), 2)
  assert.equal(proxy.fired('internal'), 1)
})

test('a listing whose connection is reset mid-way is retried and yields every key once, in order', async () => {
  use([{name: 'reset-list', match: listing, action: {kind: 'reset'}, times: 1}])
  const keys: string[] = []
  for await (const o of viaProxy.list('blobs/')) keys.push(o.key)
  assert.deepEqual(
    keys,
    Array.from({length: 30}, (_, i) => `blobs/k${String(i).padStart(2, '0')}`),
  )
  assert.equal(proxy.fired('reset-list'), 1)
})

test('a lasting 503 fails with the status after the retry budget, not as a missing object', async () => {
  use([{name: 'always', match: objectGet('blobs/k05'), action: {kind: 'status', status: 503}}])
  await assert.rejects(viaProxy.readSmall('blobs/k05', 1024), (error: Error) => {
    assert.match(error.message, /503|SlowDown/)
    return true
  })
  assert.equal(proxy.fired('always'), 4, 'one try and three retries (maxAttempts 4)')
  // stat of the same object must not read as "not there" either
  use([{name: 'always-head', match: isStat, action: {kind: 'status', status: 503}}])
  await assert.rejects(viaProxy.stat('blobs/k05'), /503|SlowDown/)
})

test('a truncated body or a lying Content-Length is never returned as a shorter object', async () => {
  for (const action of [{kind: 'truncate', bytes: 1000} as const, {kind: 'wrong-length'} as const]) {
    use([{name: action.kind, match: objectGet('big'), action}])
    const outcome = await viaProxy.readSmall('big', BODY.length + 1024).then(
      (bytes) => ({bytes}),
      (error: Error) => ({error}),
    )
    if ('bytes' in outcome)
      assert.deepEqual(outcome.bytes, BODY, `${action.kind}: only the full, correct body may be returned`)
    else assert.ok(outcome.error instanceof Error, `${action.kind}: fails loudly`)
    assert.ok(proxy.fired(action.kind) >= 1)
  }
})

test('DeleteObjects that fails for some keys reports exactly those keys, and they remain', async () => {
  const failing = ['blobs/k10', 'blobs/k12']
  const body =
    `<?xml version="1.0" encoding="UTF-8"?><DeleteResult>` +
    failing
      .map((k) => `<Error><Key>v2/${k}</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`)
      .join('') +
    `</DeleteResult>`
  use([
    {
      name: 'partial-delete',
      match: (r) => r.method === 'POST' && r.query.has('delete'),
      action: {kind: 'reply', status: 200, body},
      times: 1,
    },
  ])
  const keys = ['blobs/k10', 'blobs/k11', 'blobs/k12']
  const result = await viaProxy.deleteMany(keys)
  assert.deepEqual(result.errors.map((e) => e.key).sort(), failing)
  assert.match(result.errors[0].message, /AccessDenied/)
  assert.deepEqual(result.deleted, ['blobs/k11'])
  // The proxy answered instead of radosgw, so all three objects are in fact still there: the driver must
  // not have claimed the failing ones as deleted.
  for (const key of keys) assert.ok(await direct.stat(key), `${key} still exists`)
})
