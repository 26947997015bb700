// A sweep through a throttling proxy in front of radosgw (503 SlowDown above 6 requests in flight,
// latency growing with those in flight), at the default adaptive request limit: it finishes with no
// request failed for good and finds exactly what the same sweep finds straight against radosgw.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {readFile, mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedRadosgw, type SharedRadosgw} from '../../helpers/radosgw.js'
import {startFaultProxy, type FaultProxy} from '../../helpers/fault-proxy.js'
import {S3Driver} from '../../../src/lib/storage/s3.js'
import type {S3RegionConfig} from '../../../src/lib/config/config.js'
import {LayoutWriter} from '../../../src/lib/sample/layout-writer.js'
import {sweepBlobs, type SweepBlobsResult} from '../../../src/lib/sweep/sweep-blobs.js'
import {Logger} from '../../../src/lib/output/logger.js'

const logger = new Logger('silent')
let rgw: SharedRadosgw
let proxy: FaultProxy
let bucket: string
let dir: string

function region(endpoint: string): S3RegionConfig {
  return {
    kind: 's3',
    name: 'throttled',
    url: `s3://${bucket}/docker/registry/v2`,
    bucket,
    prefix: 'docker/registry/v2',
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    checksums: 'when_required',
    concurrency: 64,
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
  }
}

before(async () => {
  rgw = await sharedRadosgw()
  bucket = await rgw.newBucket('throttled')
  dir = await mkdtemp(join(tmpdir(), 'regops-throttled-'))
  const direct = new S3Driver(region(rgw.endpoint))
  const writer = new LayoutWriter(direct, 16)
  await Promise.all(
    Array.from({length: 40}, (_, i) =>
      writer.writeImage({repository: `team/app${i % 8}`, tag: `v${i}`, seed: `img-${i}`, layers: 2, layerSize: 64}),
    ),
  )
  for (let i = 0; i < 15; i++) await writer.writeOrphan(undefined, `orphan-${i}`, 40)
  await direct.close()
  proxy = await startFaultProxy({target: rgw.endpoint, seed: 11})
})
after(async () => {
  await proxy?.close()
  await rm(dir, {recursive: true, force: true})
})

async function sweepVia(
  endpoint: string,
  label: string,
): Promise<{result: SweepBlobsResult; digests: string[]; driver: S3Driver}> {
  const driver = new S3Driver(region(endpoint))
  const reportFile = join(dir, `${label}.jsonl`)
  try {
    const result = await sweepBlobs({
      driver,
      logger,
      strategy: 'storage',
      mode: 'dry-run',
      minAgeMs: 0,
      quarantinePrefix: '_regops/quarantine',
      reportFile,
      concurrency: 64,
      // A minute ahead: everything just written is past the grace period (S3 dates have whole seconds).
      now: new Date(Date.now() + 60_000),
    })
    const digests = (await readFile(reportFile, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line).digest as string)
      .sort()
    return {result, digests, driver}
  } finally {
    await driver.close()
  }
}

test('a sweep behind a throttling proxy finds what it finds without one, with no request failed', async () => {
  const plain = await sweepVia(rgw.endpoint, 'direct')
  assert.equal(plain.result.candidates.count, 15)
  proxy.setThrottle({maxInFlight: 6, baseLatencyMs: 2, latencyPerInFlightMs: 2})
  const throttled = await sweepVia(proxy.endpoint, 'throttled')
  const server = proxy.throttleStats()
  proxy.setThrottle(undefined)
  assert.ok(server.throttled > 0, 'the proxy did answer 503 SlowDown')
  assert.equal(throttled.driver.requests.stats().throttled, server.throttled, 'every 503 was seen and retried')
  assert.equal(throttled.result.problemCount, 0, JSON.stringify(throttled.result.problems.slice(0, 3)))
  assert.equal(throttled.result.markComplete, true)
  assert.deepEqual(throttled.digests, plain.digests)
  assert.equal(throttled.result.scanned.blobs, plain.result.scanned.blobs)
  assert.equal(throttled.result.marked.manifests, plain.result.marked.manifests)
})
