// The re-hash of a blob read whole (its listed size is small) on radosgw behind the fault proxy: one GET,
// a body cut short read again from the start, a copy that does not hash to its digest found out, a fault
// that lasts an error (never "corrupt"), and a copy grown past the limit since it was listed streamed.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {sharedRadosgw, radosgwRegion} from '../../helpers/radosgw.js'
import {startFaultProxy, type FaultProxy} from '../../helpers/fault-proxy.js'
import {S3Driver} from '../../../src/lib/storage/s3.js'
import {WHOLE_READ_LIMIT, blobVerifies} from '../../../src/lib/audit/verify.js'

const BODY = Buffer.alloc(200 * 1024, 'whole')
const digestOf = (body: Buffer) => `sha256:${createHash('sha256').update(body).digest('hex')}`
const keyOf = (digest: string) => `blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}/data`
const DIGEST = digestOf(BODY)
let proxy: FaultProxy
let driver: S3Driver

before(async () => {
  const rgw = await sharedRadosgw()
  const bucket = await rgw.newBucket('verify')
  proxy = await startFaultProxy({target: rgw.endpoint, seed: 9})
  driver = new S3Driver(
    radosgwRegion(rgw, bucket, {name: 'eu', prefix: 'v2', endpoint: proxy.endpoint, concurrency: 4}),
  )
  await driver.write(keyOf(DIGEST), BODY)
})
after(async () => {
  await driver?.close()
  await proxy?.close()
})

const gets = (key: string) => proxy.log.filter((r) => r.method === 'GET' && r.url.includes(key)).length

test('a small blob is re-hashed from one GET; a body cut short is read again from the start', async () => {
  const key = keyOf(DIGEST)
  const before = gets(key)
  assert.equal(await blobVerifies(driver, DIGEST, undefined, BODY.length), true)
  assert.equal(gets(key) - before, 1)
  proxy.setRules([
    {
      name: 'cut-once',
      match: (r) => r.method === 'GET' && r.path.endsWith(key),
      action: {kind: 'truncate', bytes: 64 * 1024},
      times: 1,
    },
  ])
  assert.equal(await blobVerifies(driver, DIGEST, undefined, BODY.length), true)
  assert.equal(proxy.fired('cut-once'), 1)
  proxy.setRules([])
})

test('a copy cut short or altered at the same size does not verify', async () => {
  const truncated = digestOf(Buffer.alloc(300 * 1024, 'truncated'))
  await driver.write(keyOf(truncated), Buffer.alloc(100 * 1024, 'truncated'))
  assert.equal(await blobVerifies(driver, truncated, undefined, 100 * 1024), false)
  const original = Buffer.alloc(50 * 1024, 'altered')
  const altered = Buffer.from(original)
  altered[0] ^= 0xff
  await driver.write(keyOf(digestOf(original)), altered)
  assert.equal(await blobVerifies(driver, digestOf(original), undefined, altered.length), false)
})

test('a fault that lasts is an error, not a copy that does not verify; nor is a refusal', async () => {
  const key = keyOf(DIGEST)
  proxy.setRules([
    {name: 'cut', match: (r) => r.method === 'GET' && r.path.endsWith(key), action: {kind: 'truncate', bytes: 1024}},
  ])
  await assert.rejects(blobVerifies(driver, DIGEST, undefined, BODY.length), /other side closed|terminated|socket/i)
  proxy.setRules([
    {name: 'denied', match: (r) => r.method === 'GET' && r.path.endsWith(key), action: {kind: 'status', status: 403}},
  ])
  // The S3 error body's Code and Message reach the message.
  await assert.rejects(blobVerifies(driver, DIGEST, undefined, BODY.length), /AccessDenied: injected 403/)
  proxy.setRules([])
})

test('a copy grown past the limit since it was listed is streamed, and an aborted re-hash does not read', async () => {
  const large = Buffer.alloc(WHOLE_READ_LIMIT + 1, 'large')
  const digest = digestOf(large)
  await driver.write(keyOf(digest), large)
  assert.equal(await blobVerifies(driver, digest, undefined, 100), true)
  const key = keyOf(DIGEST)
  const before = gets(key)
  await assert.rejects(blobVerifies(driver, DIGEST, AbortSignal.abort(), BODY.length), {name: 'AbortError'})
  assert.equal(gets(key), before)
})
