// An S3 import lists blobs/ once instead of a stat per blob the database lacks. On radosgw, through a
// proxy that logs every request: the same rows, counts and problems as an import that stats each blob;
// a stat only for what the listing does not have (a referenced blob storage lacks); a listing refused
// part way still gives the same import; the job's listing rows are gone when it ends.
// Run: node --import tsx --test test/lib/metadata/import-blob-listing.test.ts
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {sharedPostgres} from '../../helpers/postgres.js'
import {radosgwRegion, sharedRadosgw, type SharedRadosgw} from '../../helpers/radosgw.js'
import {isStat, startFaultProxy, type FaultProxy} from '../../helpers/fault-proxy.js'
import {openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {importStorage} from '../../../src/lib/metadata/import.js'
import {S3Driver} from '../../../src/lib/storage/s3.js'
import {MediaTypes} from '../../../src/lib/storage/manifest.js'
import {LayoutWriter, seededBytes, sha256} from '../../../src/lib/sample/layout-writer.js'
import {logicalDump, outcome} from './import-dump.js'

const cleanups: Array<() => Promise<void>> = []
let rgw: SharedRadosgw
let proxy: FaultProxy
let driver: S3Driver
let missingLayer: string

after(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => {})
})

before(async () => {
  await sharedPostgres()
  rgw = await sharedRadosgw()
  const bucket = await rgw.newBucket('import-listing')
  proxy = await startFaultProxy({target: rgw.endpoint, seed: 11})
  cleanups.push(() => proxy.close())
  driver = new S3Driver(radosgwRegion(rgw, bucket, {name: 'lab', endpoint: proxy.endpoint}))
  cleanups.push(() => driver.close())
  const writer = new LayoutWriter(driver)
  const base = seededBytes('listing-base', 700)
  for (const repository of ['team/web', 'team/api', 'solo'])
    for (let i = 0; i < 4; i++)
      await writer.writeImage({
        repository,
        tag: i < 3 ? `v${i}` : undefined,
        seed: `${repository}:${i}`,
        layers: 2,
        layerSize: 200 + i,
        sharedLayers: [base],
      })
  // a manifest whose layer blob is not in storage, and an orphan
  const config = await writer.putBlob(Buffer.from('{"architecture":"amd64","os":"linux"}'))
  missingLayer = sha256(seededBytes('never-written', 10))
  await writer.putManifest(
    'solo',
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.dockerManifest,
        config: {mediaType: MediaTypes.dockerConfig, digest: config, size: 37},
        layers: [{mediaType: MediaTypes.dockerLayer, digest: missingLayer, size: 10}],
      }),
    ),
    'missing-layer',
  )
  await writer.writeOrphan('solo', 'listing-orphan', 300)
})

async function freshDb(): Promise<Db> {
  const db = openDatabase(await (await sharedPostgres()).createDatabase(), {max: 12})
  cleanups.push(() => db.close())
  await migrateUp(db)
  return db
}

/** Blob times from a listing carry milliseconds; a stat's Last-Modified header has whole seconds. */
function toSeconds(dump: Record<string, string[]>): Record<string, string[]> {
  return {...dump, blobs: dump.blobs.map((line) => line.replace(/(\d\d:\d\d:\d\d)\.\d+/, '$1'))}
}

describe('regops import on S3: the blob listing', () => {
  test('the same rows, counts and problems as a stat per blob, with one stat: the blob the listing does not have', async () => {
    const statted = await freshDb()
    const listed = await freshDb()
    proxy.setRules([{name: 'stat', match: isStat, action: {kind: 'pass'}}])
    const a = {result: await importStorage({driver, db: statted, blobListing: false})}
    const statsWithout = proxy.fired('stat')
    const b = {result: await importStorage({driver, db: listed})}
    const statsWith = proxy.fired('stat') - statsWithout

    assert.equal(a.result.blobsListed, null)
    // 12 images of 4 blobs (manifest, config, 2 layers) + the shared base, a config, a manifest, an orphan
    assert.equal(b.result.blobsListed, 12 * 4 + 1 + 3)
    assert.deepEqual(outcome(b.result), outcome(a.result))
    assert.ok(
      b.result.problems.some((p) => p.kind === 'missing-blob' && p.digest === missingLayer),
      'the missing layer is reported',
    )
    assert.deepEqual(toSeconds(await logicalDump(listed)), toSeconds(await logicalDump(statted)))
    assert.ok(statsWithout >= 12 * 4, `${statsWithout} stats without the listing`)
    assert.equal(statsWith, 1, "with the listing, only the missing layer is stat'ed")
    const left = await listed.query('SELECT count(*)::int AS n FROM regops_import_listed_blobs')
    assert.equal(left.rows[0].n, 0, "the job's listing rows are deleted when it ends")
  })

  test("a listing refused part way: what it did not reach is stat'ed, and the import is the same", async () => {
    const statted = await freshDb()
    const partial = await freshDb()
    await importStorage({driver, db: statted, blobListing: false})
    // the ranges of the listing from prefix 80 on are refused (403 is not retried)
    proxy.setRules([
      {
        name: 'refuse-upper-listing',
        match: (r) => r.method === 'GET' && (r.query.get('start-after') ?? '') >= 'docker/registry/v2/blobs/sha256/80',
        action: {kind: 'status', status: 403},
      },
      {name: 'stat', match: isStat, action: {kind: 'pass'}},
    ])
    const result = await importStorage({driver, db: partial})
    assert.ok(proxy.fired('refuse-upper-listing') >= 1)
    assert.ok(proxy.fired('stat') > 1, "the blobs of the refused ranges are stat'ed")
    assert.equal(result.failed.length, 0)
    assert.deepEqual(toSeconds(await logicalDump(partial)), toSeconds(await logicalDump(statted)))
  })
})
