// Streamed transfers under a transient fault (found by the faults reliability suite): the drivers retry
// requests, but not a body once it streams, so copyBetween and hashObject start again from a new read.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {sharedRadosgw} from '../../helpers/radosgw.js'
import {startFaultProxy, type FaultProxy} from '../../helpers/fault-proxy.js'
import {S3Driver} from '../../../src/lib/storage/s3.js'
import {copyBetween} from '../../../src/lib/storage/driver.js'
import {hashObject} from '../../../src/lib/audit/verify.js'
import type {S3RegionConfig} from '../../../src/lib/config/config.js'

const BODY = Buffer.alloc(200 * 1024, 'streamed')
const DIGEST = `sha256:${createHash('sha256').update(BODY).digest('hex')}`
let proxy: FaultProxy
let source: S3Driver
let target: S3Driver
let bucket: string

before(async () => {
  const rgw = await sharedRadosgw()
  bucket = await rgw.newBucket('streamed')
  proxy = await startFaultProxy({target: rgw.endpoint, seed: 3})
  const region = (name: string, endpoint: string): S3RegionConfig => ({
    kind: 's3',
    name,
    url: `s3://${bucket}/v2`,
    bucket,
    prefix: 'v2',
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    checksums: 'when_required',
    concurrency: 4,
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
  })
  source = new S3Driver(region('eu', proxy.endpoint))
  target = new S3Driver(region('us', proxy.endpoint))
  await source.write('blob', BODY)
})
after(async () => {
  await source?.close()
  await target?.close()
  await proxy?.close()
})

test('a copy whose streamed write is answered 503 SlowDown copies again from a new read', async () => {
  proxy.setRules([
    {
      name: 'put-503',
      match: (r) => r.method === 'PUT' && r.path.endsWith('/copied'),
      action: {kind: 'status', status: 503},
      times: 1,
    },
  ])
  await copyBetween(source, target, 'blob', 'copied')
  assert.equal(proxy.fired('put-503'), 1)
  assert.ok((await target.readSmall('copied', 1 << 20)).equals(BODY))
})

// Without ending the upload when its source fails, the first attempt waits about a minute for radosgw's 408.
test('a copy whose source body is cut mid-way copies again from a new read, at once', {timeout: 20_000}, async () => {
  proxy.setRules([
    {
      name: 'copy-cut',
      match: (r) => r.method === 'GET' && r.path.endsWith('/blob'),
      action: {kind: 'truncate', bytes: 64 * 1024},
      times: 1,
    },
  ])
  await copyBetween(source, target, 'blob', 'copied-after-cut')
  assert.equal(proxy.fired('copy-cut'), 1)
  assert.ok((await target.readSmall('copied-after-cut', 1 << 20)).equals(BODY))
})

test('a re-hash whose body is cut mid-way reads again and gets the digest; a lasting cut still fails', async () => {
  const cut = (times?: number) =>
    proxy.setRules([
      {
        name: times ? 'hash-cut-once' : 'hash-cut',
        match: (r) => r.method === 'GET' && r.path.endsWith('/blob'),
        action: {kind: 'truncate', bytes: 64 * 1024},
        times,
      },
    ])
  cut(1)
  assert.equal(await hashObject(source, 'blob', 'sha256'), DIGEST)
  assert.equal(proxy.fired('hash-cut-once'), 1)
  cut()
  await assert.rejects(hashObject(source, 'blob', 'sha256'), /other side closed|terminated|socket|premature/i)
  proxy.setRules([])
})
