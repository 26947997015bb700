// A reference the import could not resolve is still a reference (issue 16), and the metadata strategy's
// freshness guard (issue 8 §4). Real PostgreSQL, filesystem stores written in the distribution layout and
// aged three days, so that the metadata strategy's catch-up walk (revisions newer than the import) reads
// none of them: only what the import recorded counts.
import {after, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {importStorage} from '../../../src/lib/metadata/import.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {pathFor} from '../../../src/lib/storage/layout.js'
import {MediaTypes} from '../../../src/lib/storage/manifest.js'
import {MAX_MANIFEST_SIZE} from '../../../src/lib/storage/repositories.js'
import {LayoutWriter, seededBytes, sha256} from '../../../src/lib/sample/layout-writer.js'
import {ageTree} from '../../../src/lib/quickstart/sample.js'
import {sweepBlobs, type SweepBlobsResult} from '../../../src/lib/sweep/sweep-blobs.js'
import {purgeQuarantine} from '../../../src/lib/sweep/restore-purge.js'
import {ExitCode, RefusedError} from '../../../src/lib/errors.js'
import {Logger} from '../../../src/lib/output/logger.js'

const logger = new Logger('silent')
const DAY = 86_400_000
const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

async function freshDb(): Promise<Db> {
  const db = openDatabase(await (await sharedPostgres()).createDatabase(), {max: 6})
  cleanups.push(() => db.close())
  await migrateUp(db)
  return db
}

async function store(region = 'lab'): Promise<{dir: string; driver: FilesystemDriver; writer: LayoutWriter}> {
  const dir = await mkdtemp(join(tmpdir(), 'regops-import-refs-'))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  const driver = new FilesystemDriver(region, dir, 16)
  return {dir, driver, writer: new LayoutWriter(driver)}
}

const age = (dir: string) => ageTree(dir, new Date(Date.now() - 3 * DAY))

async function dryRun(
  driver: FilesystemDriver,
  strategy: 'storage' | 'metadata',
  db?: Db,
  extra: {metadataAuthoritative?: boolean} = {},
): Promise<{result: SweepBlobsResult; candidates: string[]}> {
  const report = join(
    tmpdir(),
    `regops-import-refs-${strategy}-${process.pid}-${Math.random().toString(36).slice(2)}.jsonl`,
  )
  cleanups.push(() => rm(report, {force: true}))
  const result = await sweepBlobs({
    strategy,
    minAgeMs: DAY,
    quarantinePrefix: '_regops/quarantine',
    logger,
    driver,
    db,
    mode: 'dry-run',
    reportFile: report,
    ...extra,
  })
  const candidates = (await readFile(report, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line))
    .filter((c) => c.kind === 'blob')
    .map((c) => c.digest as string)
    .sort()
  return {result, candidates}
}

function ociManifest(config: string, layers: string[], extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.ociManifest,
      config: {mediaType: MediaTypes.ociConfig, digest: config, size: 2},
      layers: layers.map((digest) => ({mediaType: MediaTypes.ociLayerGzip, digest, size: 100})),
      ...extra,
    }),
  )
}

interface Case {
  /** the problem kind the import reports (none for a subject: it is no child, and import does not check it) */
  problem?: string
  /** writes the bad input into repository 'case/x' */
  plant: (s: {writer: LayoutWriter; driver: FilesystemDriver}) => Promise<void>
  /** the storage walk cannot tell what some manifest references: both strategies report the mark incomplete */
  incomplete?: boolean
  /** a change to storage after a first import, then a second import */
  afterImport?: (s: {writer: LayoutWriter; driver: FilesystemDriver}) => Promise<void>
}

/** A manifest with its own config and layer; returns its digest (the blobs are only its). */
async function plainManifest(writer: LayoutWriter, seed: string): Promise<{digest: string; payload: Buffer}> {
  const config = await writer.putBlob(Buffer.from(`{"seed":"${seed}"}`))
  const layer = await writer.putBlob(seededBytes(`${seed}:layer`, 300))
  await writer.linkLayer('case/x', layer)
  const payload = ociManifest(config, [layer])
  return {digest: sha256(payload), payload}
}

const CASES: Record<string, Case> = {
  'corrupt revision link': {
    problem: 'corrupt-link',
    plant: async ({writer, driver}) => {
      const m = await writer.writeImage({repository: 'case/x', seed: 'corrupt-link', layers: 1, layerSize: 300})
      await driver.write(
        pathFor({kind: 'manifest-revision-link', repository: 'case/x', digest: m.manifestDigest}),
        Buffer.from('not a digest'),
      )
    },
  },
  'revision link naming another digest': {
    problem: 'link-mismatch',
    plant: async ({writer, driver}) => {
      const m = await writer.writeImage({repository: 'case/x', seed: 'mismatch', layers: 1, layerSize: 300})
      await driver.write(
        pathFor({kind: 'manifest-revision-link', repository: 'case/x', digest: m.manifestDigest}),
        Buffer.from(m.configDigest),
      )
    },
  },
  'garbage manifest': {
    problem: 'bad-manifest',
    incomplete: true,
    plant: async ({writer}) => void (await writer.putManifest('case/x', seededBytes('garbage', 500))),
  },
  'manifest over the size limit': {
    problem: 'bad-manifest',
    incomplete: true,
    plant: async ({writer}) => void (await writer.putManifest('case/x', Buffer.alloc(MAX_MANIFEST_SIZE + 1, 0x20))),
  },
  'manifest descriptor with an unknown digest algorithm': {
    problem: 'bad-manifest',
    incomplete: true,
    plant: async ({writer}) => {
      const config = await writer.putBlob(Buffer.from('{}'))
      await writer.putManifest('case/x', ociManifest(config, [`sha384:${'ab'.repeat(48)}`]))
    },
  },
  'revision link with an unknown digest algorithm': {
    problem: 'invalid-key',
    incomplete: true,
    plant: async ({writer}) => {
      const hex = 'cd'.repeat(48)
      await writer.link(`repositories/case/x/_manifests/revisions/sha384/${hex}/link`, `sha384:${hex}`)
    },
  },
  'missing manifest blob': {
    problem: 'missing-manifest-blob',
    incomplete: true,
    plant: async ({writer}) => {
      const {digest} = await plainManifest(writer, 'missing-manifest')
      await writer.link(pathFor({kind: 'manifest-revision-link', repository: 'case/x', digest}), digest)
    },
  },
  'unknown media type': {
    problem: 'unknown-media-type',
    plant: async ({writer}) => {
      const config = await writer.putBlob(Buffer.from('{"artifact":1}'))
      const layer = await writer.putBlob(seededBytes('artifact-layer', 300))
      const blob = await writer.putBlob(seededBytes('artifact-blob', 300))
      const payload = {
        schemaVersion: 2,
        mediaType: 'application/vnd.example.thing.v1+json',
        config: {mediaType: 'application/vnd.example.config', digest: config, size: 14},
        layers: [{mediaType: 'application/vnd.example.layer', digest: layer, size: 300}],
        blobs: [{mediaType: 'application/vnd.example.blob', digest: blob, size: 300}],
      }
      await writer.putManifest('case/x', Buffer.from(JSON.stringify(payload)), 'thing')
    },
  },
  'missing blob for a layer and a config': {
    problem: 'missing-blob',
    plant: async ({writer, driver}) => {
      const m = await writer.writeImage({
        repository: 'case/x',
        tag: 'v',
        seed: 'missing-blob',
        layers: 2,
        layerSize: 300,
      })
      await driver.deleteMany([
        pathFor({kind: 'blob-data', digest: m.layerDigests[0]}),
        pathFor({kind: 'blob-data', digest: m.configDigest}),
      ])
    },
  },
  'dangling layer link': {
    problem: 'dangling-layer-link',
    plant: async ({writer}) => writer.linkLayer('case/x', sha256(Buffer.from('never uploaded'))),
  },
  'dangling tag': {
    problem: 'dangling-tag',
    plant: async ({writer}) => writer.tag('case/x', 'gone', await writer.putBlob(seededBytes('tag-target', 200))),
  },
  'index child that is not a manifest of the repository': {
    problem: 'missing-child',
    plant: async ({writer, driver}) => {
      const amd = await writer.writeImage({repository: 'case/x', seed: 'child-amd', layers: 1, layerSize: 300})
      const arm = await writer.writeImage({repository: 'case/x', seed: 'child-arm', layers: 1, layerSize: 300})
      await writer.writeIndex(
        'case/x',
        'multi',
        [amd, arm],
        [
          {os: 'linux', architecture: 'amd64'},
          {os: 'linux', architecture: 'arm64'},
        ],
      )
      await driver.deleteMany([
        pathFor({kind: 'manifest-revision-link', repository: 'case/x', digest: arm.manifestDigest}),
      ])
    },
  },
  'index child deleted after a first import (re-import)': {
    problem: 'missing-child',
    plant: async ({writer}) => {
      const amd = await writer.writeImage({repository: 'case/x', seed: 'late-amd', layers: 1, layerSize: 300})
      const arm = await writer.writeImage({repository: 'case/x', seed: 'late-arm', layers: 1, layerSize: 300})
      await writer.writeIndex(
        'case/x',
        'multi',
        [amd, arm],
        [
          {os: 'linux', architecture: 'amd64'},
          {os: 'linux', architecture: 'arm64'},
        ],
      )
    },
    afterImport: async ({driver}) => {
      const revisions: string[] = []
      for await (const o of driver.list('repositories/case/x/_manifests/revisions/')) revisions.push(o.key)
      // the child of seed late-arm: the manifest whose config says so
      for (const key of revisions) {
        const digest = `sha256:${key.split('/').at(-2)}`
        const payload = JSON.parse((await driver.readSmall(pathFor({kind: 'blob-data', digest}), 1 << 20)).toString())
        if (!payload.config) continue
        const config = (
          await driver.readSmall(pathFor({kind: 'blob-data', digest: payload.config.digest}), 1 << 20)
        ).toString()
        if (config.includes('late-arm')) await driver.deleteMany([key])
      }
    },
  },
  'referrer whose subject is not a manifest of the repository': {
    plant: async ({writer, driver}) => {
      const subject = await writer.writeImage({repository: 'case/x', seed: 'subject', layers: 1, layerSize: 300})
      const empty = await writer.putBlob(Buffer.from('{}'))
      const signature = await writer.putBlob(seededBytes('signature', 200))
      await writer.putManifest(
        'case/x',
        ociManifest(empty, [signature], {
          subject: {mediaType: MediaTypes.dockerManifest, digest: subject.manifestDigest, size: 10},
        }),
        'sig',
      )
      await driver.deleteMany([
        pathFor({kind: 'manifest-revision-link', repository: 'case/x', digest: subject.manifestDigest}),
      ])
    },
  },
}

describe('every import problem kind: the metadata strategy marks what the storage walk marks, or reports its mark incomplete', () => {
  for (const [name, c] of Object.entries(CASES)) {
    test(name, async () => {
      const {dir, driver, writer} = await store()
      await writer.writeImage({repository: 'clean/app', tag: 'v1', seed: `clean-${name}`, layers: 1, layerSize: 200})
      await writer.writeOrphan('clean/app', `orphan-${name}`, 400)
      await c.plant({writer, driver})
      await age(dir)
      const db = await freshDb()
      let imported = await importStorage({driver, db, logger})
      if (c.afterImport) {
        await c.afterImport({writer, driver})
        await age(dir)
        imported = await importStorage({driver, db, logger})
      }
      assert.deepEqual(imported.failed, [])
      if (c.problem)
        assert.ok(
          imported.problems.some((p) => p.kind === c.problem),
          `${c.problem} in ${JSON.stringify(imported.problems)}`,
        )

      const storage = await dryRun(driver, 'storage')
      const metadata = await dryRun(driver, 'metadata', db)
      assert.equal(storage.result.markComplete, !c.incomplete, JSON.stringify(storage.result.problems))
      assert.equal(metadata.result.markComplete, !c.incomplete, JSON.stringify(metadata.result.problems))
      // Whatever the storage walk marks, the metadata strategy does not name.
      assert.deepEqual(metadata.candidates, storage.candidates)
      assert.ok(storage.candidates.length >= 1, 'the planted orphan is found')
      if (!c.incomplete) return
      // An incomplete mark: acting is refused (exit 4), naming the repository and the key.
      const refused = await sweepBlobs({
        strategy: 'metadata',
        minAgeMs: DAY,
        quarantinePrefix: '_regops/quarantine',
        logger,
        driver,
        db,
        mode: 'quarantine',
      }).then(
        () => assert.fail('acting on an incomplete metadata mark must be refused'),
        (error: unknown) => error,
      )
      assert.ok(refused instanceof RefusedError, String(refused))
      assert.equal(refused.exitCode, ExitCode.Refused)
      assert.match(refused.message, /repositories\/case\/x\/_manifests\/revisions\/|blobs\//)
      assert.ok(
        metadata.result.problems.length > 0 &&
          metadata.result.problems.every((p) => p.key.includes('case/x/') || p.repository === 'case/x'),
        JSON.stringify(metadata.result.problems),
      )
    })
  }

  test('a manifest unreadable at import is taken once the catch-up reads it: its references are marked and acting is allowed', async () => {
    const {dir, driver, writer} = await store()
    const {digest, payload} = await plainManifest(writer, 'restored')
    await writer.link(pathFor({kind: 'manifest-revision-link', repository: 'case/x', digest}), digest)
    await age(dir)
    const db = await freshDb()
    await importStorage({driver, db, logger})
    assert.equal(Number((await db.query('SELECT count(*) AS n FROM unreadable_revisions')).rows[0].n), 1)
    // the manifest blob comes back (copied from another region), as old as the rest
    await writer.putBlob(payload)
    await age(dir)
    const metadata = await dryRun(driver, 'metadata', db)
    assert.equal(metadata.result.markComplete, true, JSON.stringify(metadata.result.problems))
    assert.deepEqual(metadata.candidates, [], 'its config and layer are referenced')
    const quarantined = await sweepBlobs({
      strategy: 'metadata',
      minAgeMs: DAY,
      quarantinePrefix: '_regops/quarantine',
      logger,
      driver,
      db,
      mode: 'quarantine',
      allowMassDelete: true,
    })
    assert.equal(quarantined.acted.quarantined, 0)
    // and a second import records it as readable
    await importStorage({driver, db, logger})
    assert.equal(Number((await db.query('SELECT count(*) AS n FROM unreadable_revisions')).rows[0].n), 0)
  })
})

describe('the metadata strategy trusts only a fresh import of the swept region', () => {
  test('an import of region eu does not serve a sweep of region us', async () => {
    const eu = await store('eu')
    const us = await store('us')
    for (const s of [eu, us]) {
      await s.writer.writeImage({repository: 'team/app', tag: 'v1', seed: 'region', layers: 1, layerSize: 200})
      await age(s.dir)
    }
    // only us has this image: an import of eu knows nothing of it
    await us.writer.writeImage({repository: 'team/only-us', tag: 'v1', seed: 'only-us', layers: 1, layerSize: 200})
    await age(us.dir)
    const db = await freshDb()
    await importStorage({driver: eu.driver, db, logger})
    await assert.rejects(
      dryRun(us.driver, 'metadata', db),
      (error: unknown) => error instanceof RefusedError && /region 'us'/.test(error.message),
    )
    await importStorage({driver: us.driver, db, logger})
    const swept = await dryRun(us.driver, 'metadata', db)
    assert.deepEqual(swept.candidates, [])
  })

  test('sweep purge --strategy metadata refuses without an import, and rescues a blob referenced since the import', async () => {
    const {dir, driver, writer} = await store()
    await writer.writeImage({repository: 'team/app', tag: 'v1', seed: 'purge', layers: 1, layerSize: 200})
    const orphan = await writer.writeOrphan(undefined, 'purge-orphan', 500)
    await age(dir)
    const db = await freshDb()
    const quarantined = await sweepBlobs({
      strategy: 'storage',
      minAgeMs: DAY,
      quarantinePrefix: '_regops/quarantine',
      logger,
      driver,
      db,
      mode: 'quarantine',
      allowMassDelete: true,
    })
    assert.equal(quarantined.acted.quarantined, 1)
    const later = new Date(Date.now() + 8 * DAY)
    const purge = () =>
      purgeQuarantine({db, driver, holdForMs: 7 * DAY, strategy: 'metadata', dryRun: true, logger, now: later})
    await assert.rejects(
      purge(),
      (error: unknown) => error instanceof RefusedError && /no finished import of region 'lab'/.test(error.message),
    )
    await importStorage({driver, db, logger})
    assert.deepEqual(
      (await purge()).items.map((i) => i.action),
      ['purge'],
    )
    // pushed after the import: a manifest using the quarantined blob (its revision is newer than the import)
    const config = await writer.putBlob(Buffer.from('{"late":1}'))
    await writer.putManifest('team/late', ociManifest(config, [orphan]), 'v1')
    assert.deepEqual(
      (await purge()).items.map((i) => i.action),
      ['rescue'],
    )
  })

  test('--metadata-authoritative: a repository_blobs row younger than the cutoff protects its blob', async () => {
    const {dir, driver, writer} = await store()
    await writer.writeImage({repository: 'team/app', tag: 'v1', seed: 'auth', layers: 1, layerSize: 200})
    const linked = await writer.writeOrphan('team/app', 'auth-linked', 500)
    const loose = await writer.writeOrphan(undefined, 'auth-loose', 500)
    await age(dir)
    const db = await freshDb()
    await importStorage({driver, db, logger})
    const before = await dryRun(driver, 'metadata', db, {metadataAuthoritative: true})
    assert.deepEqual(before.candidates, [linked, loose].sort())
    // the registry links the blob into a repository now: a push whose manifest is still to come
    await db.query(`UPDATE repository_blobs SET created_at = now() WHERE blob_digest = $1`, [linked])
    const after = await dryRun(driver, 'metadata', db, {metadataAuthoritative: true})
    assert.deepEqual(after.candidates, [loose])
  })
})
