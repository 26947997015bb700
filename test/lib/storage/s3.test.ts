import diagnosticsChannel from 'node:diagnostics_channel'
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {radosgwRegion, sharedRadosgw, type SharedRadosgw} from '../../helpers/radosgw.js'
import {S3Driver} from '../../../src/lib/storage/s3.js'
import type {S3RegionConfig} from '../../../src/lib/config/config.js'
import {NotFoundError, StorageError} from '../../../src/lib/errors.js'
import {storageConformance} from './conformance.js'

let rgw: SharedRadosgw

function regionFor(bucket: string, prefix: string, extra: Partial<S3RegionConfig> = {}): S3RegionConfig {
  return radosgwRegion(rgw, bucket, {prefix, ...extra})
}

storageConformance('s3 (radosgw)', async () => {
  rgw = await sharedRadosgw()
  const a = await rgw.newBucket('conf-a')
  const b = await rgw.newBucket('conf-b')
  // A prefix, as registries use (docker/registry/v2), so key mapping is exercised too.
  return {
    driver: new S3Driver(regionFor(a, 'docker/registry/v2')),
    other: new S3Driver(regionFor(b, '')),
    cleanup: async () => {},
  }
})

test('s3 errors name the region and what failed; wrong credentials are not retried forever', async () => {
  rgw = await sharedRadosgw()
  const errs = await rgw.newBucket('errs')
  const missingBucket = new S3Driver(regionFor('no-such-bucket', ''), {maxAttempts: 2})
  await assert.rejects(
    async () => {
      for await (const _ of missingBucket.list('')) break
    },
    (e: unknown) => e instanceof StorageError && /NoSuchBucket/.test(e.message) && e.region === 'no-such-bucket',
  )
  const badKey = new S3Driver(regionFor(errs, '', {secretAccessKey: 'not-the-secret'}), {maxAttempts: 2})
  await assert.rejects(
    badKey.readSmall('x', 10),
    (e: unknown) => e instanceof StorageError && /403/.test(e.message) && !e.message.includes('not-the-secret'),
  )
  const ok = new S3Driver(regionFor(errs, ''))
  await assert.rejects(ok.readSmall('absent', 10), NotFoundError)
  for (const d of [missingBucket, badKey, ok]) await d.close()
})

test('s3: the default checksum mode fails on radosgw, when_required works (the per-region option matters)', async () => {
  rgw = await sharedRadosgw()
  const cksum = await rgw.newBucket('cksum')
  const {Readable} = await import('node:stream')
  const strict = new S3Driver(regionFor(cksum, '', {checksums: 'when_supported'}), {maxAttempts: 1})
  const lenient = new S3Driver(regionFor(cksum, '', {checksums: 'when_required'}))
  await lenient.write('streamed', Readable.from([Buffer.from('abc')]), 3)
  assert.equal((await lenient.readSmall('streamed', 10)).toString(), 'abc')
  await assert.rejects(strict.write('streamed2', Readable.from([Buffer.from('abc')]), 3), StorageError)
  await strict.close()
  await lenient.close()
})

test('ListObjectsV2 answers: entities decoded, tokens and prefixes found', async () => {
  const {parseListBucketResult} = await import('../../../src/lib/storage/s3-read.js')
  const page = parseListBucketResult(
    `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>` +
      `<Contents><Key>p/a&amp;b&lt;c&gt;&#228;&#x1F600;</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>&quot;x&quot;</ETag><Size>42</Size></Contents>` +
      `<Contents><Key>p/123</Key><LastModified>2026-01-02T03:04:06.000Z</LastModified><Size>0</Size></Contents>` +
      `<CommonPrefixes><Prefix>p/dir/</Prefix></CommonPrefixes><KeyCount>3</KeyCount><ContinuationToken>old</ContinuationToken><NextContinuationToken>n&amp;ext</NextContinuationToken></ListBucketResult>`,
  )
  assert.deepEqual(
    page.contents.map((c) => c.key),
    ['p/a&b<c>ä😀', 'p/123'],
  )
  assert.equal(page.contents[0].size, 42)
  assert.equal(page.contents[1].lastModified.toISOString(), '2026-01-02T03:04:06.000Z')
  assert.deepEqual(page.prefixes, ['p/dir/'])
  assert.equal(page.nextToken, 'n&ext')
  const last = parseListBucketResult(
    '<ListBucketResult><IsTruncated>false</IsTruncated><NextContinuationToken>x</NextContinuationToken></ListBucketResult>',
  )
  assert.equal(last.nextToken, undefined)
  assert.throws(() => parseListBucketResult('<Error><Code>x</Code></Error>'))
})

test('a streamed write and a server-side copy above the multipart threshold go in parts, byte for byte; a short stream creates nothing and leaves no upload', async () => {
  rgw = await sharedRadosgw()
  const bucket = await rgw.newBucket('multipart-write')
  const source = new S3Driver(regionFor(bucket, 'src'))
  const target = new S3Driver(regionFor(bucket, 'dst'))
  // S3's smallest part is 5 MiB: a 12 MiB blob in 5 MiB parts is three parts, the last one short.
  target.multipartThreshold = 6 * 1024 ** 2
  target.writePartSize = 5 * 1024 ** 2
  const {randomBytes, createHash} = await import('node:crypto')
  const {Readable} = await import('node:stream')
  const {copyBetween} = await import('../../../src/lib/storage/driver.js')
  const content = randomBytes(12 * 1024 ** 2 + 12345)
  await source.write('blobs/big/data', content)
  await copyBetween(source, target, 'blobs/big/data')
  const copied = await target.readSmall('blobs/big/data', content.length)
  assert.equal(createHash('sha256').update(copied).digest('hex'), createHash('sha256').update(content).digest('hex'))
  // A server-side copy above the threshold goes range by range (UploadPartCopy), byte for byte too.
  target.copyPartSize = 5 * 1024 ** 2
  await target.copy('blobs/big/data', 'blobs/big-copy/data')
  const serverCopied = await target.readSmall('blobs/big-copy/data', content.length)
  assert.equal(
    createHash('sha256').update(serverCopied).digest('hex'),
    createHash('sha256').update(content).digest('hex'),
  )
  // A stream that ends before the announced size: no object, and the multipart upload aborted.
  await assert.rejects(
    target.write('blobs/short/data', Readable.from([content.subarray(0, 7 * 1024 ** 2)]), content.length),
    /ended after 7340032 of the/,
  )
  assert.equal(await target.stat('blobs/short/data'), undefined)
  const pending = []
  for await (const upload of target.listPendingUploads('blobs/')) pending.push(upload)
  assert.deepEqual(pending, [])
  await source.close()
  await target.close()
})

test('a stat keeps its connection: radosgw closes one after every HEAD, so stat asks for the first byte', async () => {
  rgw = await sharedRadosgw()
  const bucket = await rgw.newBucket('stat-conn')
  const driver = new S3Driver(regionFor(bucket, 'p', {concurrency: 1}))
  await driver.write('present', Buffer.from('twelve bytes'))
  await driver.write('empty', Buffer.alloc(0))
  let connects = 0
  const connected = () => connects++
  diagnosticsChannel.subscribe('undici:client:connected', connected)
  try {
    for (let i = 0; i < 50; i++) {
      assert.equal((await driver.stat('present'))?.size, 12)
      assert.equal(await driver.stat(`absent-${i}`), undefined)
    }
    assert.equal((await driver.stat('empty'))?.size, 0)
    // one stat at a time: one connection serves them all (a HEAD each made 101)
    assert.ok(connects <= 3, `${connects} connections for 101 stats`)
  } finally {
    diagnosticsChannel.unsubscribe('undici:client:connected', connected)
    await driver.close()
  }
})
