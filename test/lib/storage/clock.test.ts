// The storage's clock, measured through the driver on a filesystem and on radosgw, and a skewed S3
// clock (Last-Modified shifted by the fault proxy) refused.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, readdir, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {startRadosgw, type RadosgwServer} from '../../helpers/radosgw.js'
import {isStat, startFaultProxy, type FaultProxy} from '../../helpers/fault-proxy.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {S3Driver} from '../../../src/lib/storage/s3.js'
import type {S3RegionConfig} from '../../../src/lib/config/config.js'
import {
  assertClockSkewWithin,
  clockWithOffset,
  estimateOffset,
  measureStorageClock,
} from '../../../src/lib/storage/clock.js'
import {RefusedError} from '../../../src/lib/errors.js'

let rgw: RadosgwServer
let proxy: FaultProxy
before(async () => {
  rgw = await startRadosgw({buckets: ['clock']})
  proxy = await startFaultProxy({target: rgw.endpoint, seed: 7})
})
after(async () => {
  await proxy?.close()
  await rgw?.stop()
})

function s3(endpoint: string): S3Driver {
  const region: S3RegionConfig = {
    kind: 's3',
    name: 'clock',
    url: 's3://clock/v2',
    bucket: 'clock',
    prefix: 'v2',
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    checksums: 'when_required',
    concurrency: 4,
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
  }
  return new S3Driver(region)
}

test('estimateOffset: a stamp truncated to the second, taken between two host instants', () => {
  assert.deepEqual(estimateOffset(10_000, 10_000, 10_200, 1000), {offsetMs: 400, uncertaintyMs: 600})
  assert.deepEqual(estimateOffset(10_000, 70_000, 10_000, 1), {offsetMs: 60_001, uncertaintyMs: 1})
  assert.throws(() => assertClockSkewWithin(clockWithOffset(-400_000, 10), 300_000, 's3://x'), /400\.0 s|400 s/)
  assert.doesNotThrow(() => assertClockSkewWithin(clockWithOffset(2_000, 1_000), 300_000, 's3://x'))
  // Uncertainty counts against the limit: a measure too coarse to tell is refused.
  assert.throws(() => assertClockSkewWithin(clockWithOffset(0, 400_000), 300_000, 's3://x'), RefusedError)
})

test('the filesystem clock is this host clock, and the probe leaves nothing behind', async () => {
  const root = await mkdtemp(join(tmpdir(), 'regops-clock-'))
  try {
    const clock = await measureStorageClock(new FilesystemDriver('local', root))
    assert.ok(Math.abs(clock.offsetMs) <= clock.uncertaintyMs + 5, `offset ${clock.offsetMs} ± ${clock.uncertaintyMs}`)
    assert.ok(clock.uncertaintyMs < 1500)
    assert.deepEqual(await readdir(join(root, '_regops', 'clock')).catch(() => []), [])
  } finally {
    await rm(root, {recursive: true, force: true})
  }
})

test('radosgw on this host reads within its second of resolution; shifted 10 minutes ahead it is refused', async () => {
  const direct = s3(rgw.endpoint)
  const skewed = s3(proxy.endpoint)
  try {
    const clock = await measureStorageClock(direct)
    assert.ok(Math.abs(clock.offsetMs) <= clock.uncertaintyMs, `offset ${clock.offsetMs} ± ${clock.uncertaintyMs}`)
    assertClockSkewWithin(clock, 300_000, direct.location)

    proxy.setRules([{name: 'ahead', match: isStat, action: {kind: 'shift-clock', ms: 600_000}}])
    const ahead = await measureStorageClock(skewed)
    assert.ok(Math.abs(ahead.offsetMs - 600_000) <= ahead.uncertaintyMs, `offset ${ahead.offsetMs}`)
    assert.ok(proxy.fired('ahead') >= 1)
    assert.throws(
      () => assertClockSkewWithin(ahead, 300_000, skewed.location),
      (e: Error) => e instanceof RefusedError && /ahead/.test(e.message),
    )
    const listed: string[] = []
    for await (const o of direct.list('_regops/')) listed.push(o.key)
    assert.deepEqual(listed, [], 'the probes were deleted')
  } finally {
    await skewed.close()
    await direct.close()
  }
})

test('a storage that refuses writes cannot be measured: RefusedError naming it', async () => {
  proxy.setRules([{name: 'no-put', match: (r) => r.method === 'PUT', action: {kind: 'status', status: 403}}])
  const skewed = s3(proxy.endpoint)
  try {
    await assert.rejects(
      measureStorageClock(skewed),
      (e: Error) => e instanceof RefusedError && e.message.includes('s3://clock/v2'),
    )
  } finally {
    await skewed.close()
  }
})

test('the probe, small writes and one-key deletes go without the AWS SDK; a refused DELETE is an error for its key', async () => {
  proxy.setRules([])
  const driver = s3(proxy.endpoint)
  // Private, peeked on purpose: loading the SDK is what a dry-run sweep or audit must not pay for.
  const sdkLoaded = () => (driver as unknown as {sdkLoading?: unknown}).sdkLoading !== undefined
  try {
    await measureStorageClock(driver)
    const small = Buffer.from('a link or a manifest')
    await driver.write('small', small)
    assert.deepEqual(await driver.readSmall('small', 100), small)
    assert.deepEqual(await driver.deleteMany(['small']), {deleted: ['small'], errors: []})
    assert.deepEqual(await driver.deleteMany(['never-there']), {deleted: ['never-there'], errors: []})
    assert.equal(await driver.stat('small'), undefined)
    assert.equal(sdkLoaded(), false, 'the SDK was loaded')

    await driver.write('kept', small)
    proxy.setRules([{name: 'no-delete', match: (r) => r.method === 'DELETE', action: {kind: 'status', status: 403}}])
    const refused = await driver.deleteMany(['kept'])
    assert.deepEqual(refused.deleted, [])
    assert.equal(refused.errors[0]?.key, 'kept')
    assert.ok(proxy.fired('no-delete') >= 1)
    proxy.setRules([])
    assert.ok(await driver.stat('kept'), 'still there')
  } finally {
    proxy.setRules([])
    await driver.close()
  }
})
