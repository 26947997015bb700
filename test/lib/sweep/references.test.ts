// The metadata strategy reads references over runs of consecutive shards (one query per run, not per
// shard). Each shard must still get exactly its own referenced digests, in storage order, whatever the
// run widths, with holes in the shard list (a resumed or sharded sweep) and with the width shrinking.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {importStorage} from '../../../src/lib/metadata/import.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {LayoutWriter} from '../../../src/lib/sample/layout-writer.js'
import {ALL_SHARDS, shardOfDigest} from '../../../src/lib/storage/layout.js'
import {ShardReferenceReader, mergeUnitsOf, shardRange} from '../../../src/lib/sweep/references.js'

let root: string
let db: Db
/** every digest a written image keeps alive, by shard, sorted */
const expected = new Map<string, string[]>()

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'regops-references-'))
  const driver = new FilesystemDriver('local', join(root, 'docker/registry/v2'))
  const writer = new LayoutWriter(driver)
  const shared = Buffer.from('a base layer every repository shares')
  const all = new Set<string>()
  for (let i = 0; i < 120; i++) {
    const image = await writer.writeImage({
      repository: `team${i % 5}/app${i % 7}`,
      tag: `v${i}`,
      seed: `image-${i}`,
      layers: 2,
      layerSize: 32,
      sharedLayers: [shared],
    })
    for (const digest of image.blobs) all.add(digest)
  }
  for (let i = 0; i < 30; i++) await writer.writeOrphan(undefined, `orphan-${i}`, 40)
  for (const digest of [...all].sort()) {
    const shard = shardOfDigest(digest)
    expected.set(shard, [...(expected.get(shard) ?? []), digest])
  }
  db = openDatabase(await (await sharedPostgres()).createDatabase(), {max: 2})
  await migrateUp(db)
  const imported = await importStorage({driver, db})
  assert.equal(imported.problems.length, 0)
})
after(async () => {
  await db?.close()
  await rm(root, {recursive: true, force: true})
})

async function readAll(shards: string[], targetRows: number): Promise<Map<string, string[]>> {
  // linkedSince in the future: only what manifests reference counts, as the images' blob lists say
  const reader = new ShardReferenceReader(db, shards, {linkedSince: new Date(Date.now() + 86_400_000)}, targetRows)
  const read = new Map<string, string[]>()
  for (const shard of shards) read.set(shard, await reader.read(shard))
  return read
}

test('each shard gets exactly its referenced digests, whatever the run width', async () => {
  // 400 rows per run at most: runs grow to the full width, 4: they grow and shrink as rows pass the target
  for (const targetRows of [400, 4, 1]) {
    const read = await readAll([...ALL_SHARDS], targetRows)
    for (const shard of ALL_SHARDS)
      assert.deepEqual(read.get(shard), expected.get(shard) ?? [], `shard ${shard}, target ${targetRows}`)
  }
})

test('holes in the shard list (a resumed or sharded sweep): a run never crosses one', async () => {
  const shards = ALL_SHARDS.filter((shard) => parseInt(shard, 16) % 3 !== 1)
  const read = await readAll(shards, 400)
  for (const shard of shards) assert.deepEqual(read.get(shard), expected.get(shard) ?? [], `shard ${shard}`)
  // a shard the merge skips (its listing failed) is passed over; the next one still reads right
  const reader = new ShardReferenceReader(db, [...ALL_SHARDS], {linkedSince: new Date(Date.now() + 86_400_000)})
  assert.deepEqual(await reader.read('00'), expected.get('00') ?? [])
  assert.deepEqual(await reader.read('05'), expected.get('05') ?? [])
  assert.deepEqual(await reader.read('ff'), expected.get('ff') ?? [])
})

test('start() reads ahead before anything asks, and stops at about targetRows digests', async () => {
  const targetRows = 40
  const reader = new ShardReferenceReader(
    db,
    [...ALL_SHARDS],
    {linkedSince: new Date(Date.now() + 86_400_000)},
    targetRows,
  )
  reader.start()
  // read ahead with nothing asked: it stops once it holds the target (a run can overshoot it by itself)
  let held = -1
  for (let settled = 0; settled < 5;) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    settled = reader.heldDigests === held ? settled + 1 : 0
    held = reader.heldDigests
  }
  assert.ok(held >= targetRows, `${held} digests read ahead`)
  assert.ok(held < 4 * targetRows, `${held} digests read ahead of a target of ${targetRows}`)
  for (const shard of ALL_SHARDS)
    assert.deepEqual(await reader.read(shard), expected.get(shard) ?? [], `shard ${shard}`)
  assert.equal(reader.heldDigests, 0)
})

test('a failed read ahead is thrown by the read that needs it, not lost', async () => {
  const closed = openDatabase(await (await sharedPostgres()).createDatabase(), {max: 1})
  await closed.close()
  const reader = new ShardReferenceReader(closed, [...ALL_SHARDS], {linkedSince: new Date()})
  reader.start()
  await assert.rejects(reader.read('00'))
})

test('units of three hex characters (the merge reads a sixteenth of a shard at a time) get exactly their digests', async () => {
  const units = ALL_SHARDS.flatMap(mergeUnitsOf)
  assert.equal(units.length, 4096)
  const expectedByUnit = new Map<string, string[]>()
  for (const digests of expected.values())
    for (const digest of digests) {
      const unit = digest.slice(7, 10)
      expectedByUnit.set(unit, [...(expectedByUnit.get(unit) ?? []), digest])
    }
  for (const targetRows of [50_000, 4]) {
    const read = await readAll(units, targetRows)
    for (const unit of units)
      assert.deepEqual(read.get(unit), expectedByUnit.get(unit) ?? [], `unit ${unit}, target ${targetRows}`)
  }
  // the merge asks only for the units its listing has lines in: the others are passed over
  const reader = new ShardReferenceReader(db, units, {linkedSince: new Date(Date.now() + 86_400_000)})
  const some = [...expectedByUnit.keys()].sort().filter((_, i) => i % 3 === 0)
  for (const unit of some) assert.deepEqual(await reader.read(unit), expectedByUnit.get(unit), `unit ${unit}`)
  assert.deepEqual(shardRange('fff'), ['sha256:fff', 'sha256:g'])
  assert.deepEqual(shardRange('ab9'), ['sha256:ab9', 'sha256:aba'])
  assert.deepEqual(shardRange('ff'), ['sha256:ff', 'sha256:g'])
})
