// The grouped bulk path of `regops import` (many small repositories per transaction, import-group.ts)
// against the streaming per-repository path (import-repository.ts): the same store must give the same
// database contents, counts and problems, on a first import and on a re-import after storage changed.
// Run: node --import tsx --test test/lib/metadata/import-grouped.test.ts
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {importStorage} from '../../../src/lib/metadata/import.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {pathFor} from '../../../src/lib/storage/layout.js'
import {MediaTypes} from '../../../src/lib/storage/manifest.js'
import {LayoutWriter, seededBytes, sha256} from '../../../src/lib/sample/layout-writer.js'
import {logicalDump, outcome} from './import-dump.js'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => {})
})

before(async () => {
  await sharedPostgres()
})

async function freshDb(): Promise<Db> {
  const db = openDatabase(await (await sharedPostgres()).createDatabase(), {max: 12})
  cleanups.push(() => db.close())
  await migrateUp(db)
  return db
}

/**
 * Repositories of two or more manifests each (with batchSize 1 every one of them takes the streaming
 * per-repository path), sharing layers across repositories, with an index, a child the index names
 * that the repository does not have, a garbage manifest, a tag to a manifest of another repository,
 * a manifest whose layer blob is not in storage, and a _layers link whose manifest never came.
 */
async function writeStore(writer: LayoutWriter): Promise<{dropTag: string; dropRevision: string}> {
  const base = seededBytes('grouped-base', 2000)
  const images = []
  for (const repository of ['alpha/web', 'alpha/api', 'beta', 'gamma/tools']) {
    for (let i = 0; i < 3; i++)
      images.push(
        await writer.writeImage({
          repository,
          tag: i < 2 ? `v${i}` : undefined,
          seed: `${repository}:${i}`,
          layers: 2,
          layerSize: 300 + i,
          sharedLayers: [base],
          oci: i === 1,
          platform: {os: 'linux', architecture: i % 2 ? 'arm64' : 'amd64'},
        }),
      )
  }
  const beta = images.filter((image) => image.repository === 'beta')
  await writer.writeIndex('beta', 'multi', beta.slice(0, 2), [
    {os: 'linux', architecture: 'amd64'},
    {os: 'linux', architecture: 'arm64'},
  ])
  // an index naming a child that beta does not have (a manifest of alpha/web)
  const foreignChild = images.find((image) => image.repository === 'alpha/web')!
  const dangling = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.ociIndex,
      manifests: [{mediaType: MediaTypes.ociManifest, digest: foreignChild.manifestDigest, size: 10}],
    }),
  )
  await writer.putManifest('beta', dangling, 'dangling-index')
  // garbage where a manifest should be, and a tag to a manifest of another repository
  await writer.putManifest('gamma/tools', Buffer.from('not a manifest at all'))
  await writer.tag('gamma/tools', 'elsewhere', foreignChild.manifestDigest)
  // a manifest whose layer blob is not in storage
  const config = await writer.putBlob(Buffer.from('{"architecture":"amd64","os":"linux"}'))
  const missingLayer = sha256(seededBytes('never-written', 10))
  const missing = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.dockerManifest,
      config: {mediaType: MediaTypes.dockerConfig, digest: config, size: 37},
      layers: [{mediaType: MediaTypes.dockerLayer, digest: missingLayer, size: 10}],
    }),
  )
  await writer.putManifest('alpha/api', missing, 'missing-layer')
  await writer.writeOrphan('alpha/web', 'grouped-orphan', 500)
  const dropRevision = images.find((image) => image.repository === 'gamma/tools' && !image.tag)!.manifestDigest
  return {dropTag: 'v1', dropRevision}
}

describe('regops import: grouped and per-repository writes', () => {
  test('a grouped import and a per-repository import of the same store give the same rows, counts and problems, also on a re-import', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'regops-import-grouped-'))
    cleanups.push(() => rm(dir, {recursive: true, force: true}))
    const driver = new FilesystemDriver('lab', dir, 16)
    const {dropTag, dropRevision} = await writeStore(new LayoutWriter(driver))
    const grouped = await freshDb()
    const single = await freshDb()
    const importBoth = async () => {
      const a = await importStorage({driver, db: grouped})
      const b = await importStorage({driver, db: single, batchSize: 1})
      return [a, b]
    }

    const [first, firstSingle] = await importBoth()
    assert.equal(first.manifests, 15, 'every readable manifest imported')
    assert.ok(first.problemCount >= 4, `the bad input is reported: ${first.problems.map((p) => p.kind)}`)
    assert.deepEqual(outcome(firstSingle), outcome(first))
    const dump = await logicalDump(grouped)
    assert.ok(dump.dangling_manifest_references.length > 0 && dump.unreadable_revisions.length > 0)
    assert.deepEqual(await logicalDump(single), dump)

    // storage changes: a tag deleted, a revision link removed, a _layers link removed, a new image; the
    // re-import follows them
    let layerLink: string | undefined
    for await (const object of driver.list('repositories/alpha/web/_layers/')) {
      layerLink ??= object.key
    }
    assert.ok(layerLink, 'alpha/web links a blob')
    await driver.deleteMany([
      pathFor({kind: 'tag-current-link', repository: 'alpha/web', tag: dropTag}),
      pathFor({kind: 'manifest-revision-link', repository: 'gamma/tools', digest: dropRevision}),
      layerLink,
    ])
    await new LayoutWriter(driver).writeImage({
      repository: 'beta',
      tag: 'new',
      seed: 'beta-new',
      layers: 1,
      layerSize: 80,
    })
    const [again, againSingle] = await importBoth()
    assert.equal(again.written.deleted.tags, 1)
    assert.equal(again.written.deleted.manifests, 1)
    assert.equal(again.written.deleted.repositoryBlobs, 1)
    assert.equal(again.written.manifests, 1)
    assert.deepEqual(outcome(againSingle), outcome(again))
    assert.deepEqual(await logicalDump(single), await logicalDump(grouped))
  })
})
