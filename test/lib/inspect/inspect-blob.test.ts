// inspect blob on docker-registry's data (filesystem and S3): a layer held by two regions, linked by two
// repositories, referenced by three manifests and quarantined once; every fact appears, from a storage
// walk without a database and from the imported database with one. Also inspect repo and the exit codes.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {sharedRadosgw} from '../../helpers/radosgw.js'
import {startRegistry, type RegistryServer, s3RegionYaml} from '../../helpers/registry.js'
import {pushImage, randomBlob, type PushedImage} from '../../helpers/images.js'
import {runCli} from '../../helpers/cli.js'
import {loadConfig} from '../../../src/lib/config/config.js'
import {openRegion} from '../../../src/lib/storage/index.js'
import {copyBetween, type StorageDriver} from '../../../src/lib/storage/driver.js'
import {pathFor} from '../../../src/lib/storage/layout.js'
import {jobQuarantineKey} from '../../../src/lib/sweep/act.js'
import {openDatabase} from '../../../src/lib/metadata/db.js'
import {journalIntents, journalOutcome} from '../../../src/lib/sweep/journal.js'

const cleanups: Array<() => Promise<unknown>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

for (const kind of ['filesystem', 's3'] as const) {
  describe(`inspect blob, repo and manifest on docker-registry data (${kind})`, () => {
    let registry: RegistryServer
    let withDb: string
    let withoutDb: string
    let shared: Buffer
    let images: PushedImage[]
    let sharedDigest: string

    before(async () => {
      const dir = await mkdtemp(join(tmpdir(), `regops-inspect-${kind}-`))
      cleanups.push(() => rm(dir, {recursive: true, force: true}))
      const dbUrl = await (await sharedPostgres()).createDatabase()
      let main: string
      let second: string
      if (kind === 's3') {
        const rgw = await sharedRadosgw()
        const bucket = await rgw.newBucket('inspect')
        const other = await rgw.newBucket('inspect-second')
        registry = await startRegistry({
          storage: {
            kind: 's3',
            endpoint: rgw.endpoint,
            bucket,
            accessKeyId: rgw.accessKeyId,
            secretAccessKey: rgw.secretAccessKey,
            region: rgw.region,
          },
        })
        const s3 = (b: string) => s3RegionYaml({...rgw, bucket: b})
        main = s3(bucket)
        second = s3(other)
      } else {
        registry = await startRegistry({storage: {kind: 'filesystem', root: join(dir, 'storage')}})
        await mkdir(join(dir, 'second'), {recursive: true})
        main = `{url: "file://${join(dir, 'storage', 'docker', 'registry', 'v2')}"}`
        second = `{url: "file://${join(dir, 'second')}"}`
      }
      cleanups.push(() => registry.stop())
      const regions = `regions:\n  main: ${main}\n  second: ${second}\nprimary: main\nsweep: {quarantine: "main:_regops/quarantine"}\n`
      withoutDb = join(dir, 'no-db.yaml')
      withDb = join(dir, 'db.yaml')
      await writeFile(withoutDb, regions)
      await writeFile(withDb, `${regions}database:\n  url: ${dbUrl}\n`)

      shared = randomBlob(4096, 'inspect-shared')
      sharedDigest = (await import('../../helpers/images.js')).digestOf(shared)
      images = [
        await pushImage(registry.url, 'team/one', 'a', {layers: [shared, randomBlob(500, 'one-a')], seed: 'one-a'}),
        await pushImage(registry.url, 'team/one', 'b', {
          layers: [shared, randomBlob(600, 'one-b')],
          seed: 'one-b',
          mediaType: 'oci',
        }),
        await pushImage(registry.url, 'team/two', 'c', {layers: [shared], seed: 'two-c'}),
        await pushImage(registry.url, 'team/three', 'd', {layers: [randomBlob(700, 'three-d')], seed: 'three-d'}),
      ]
      const config = loadConfig({file: withoutDb})
      const mainDriver: StorageDriver = await openRegion(config, 'main')
      const secondDriver: StorageDriver = await openRegion(config, 'second')
      cleanups.push(
        () => mainDriver.close(),
        () => secondDriver.close(),
      )
      const key = pathFor({kind: 'blob-data', digest: sharedDigest})
      await copyBetween(mainDriver, secondDriver, key)
      // A quarantine copy as a sweep job leaves it (the same key scheme), and its journal entry in the database.
      await mainDriver.copy(key, jobQuarantineKey('_regops/quarantine', '7', sharedDigest))
      assert.equal((await runCli(['db', 'migrate', 'up', '--config', withDb, '--json'])).code, 0)
      const imported = await runCli(['import', '--config', withDb, '--json'])
      assert.equal(imported.code, 0, imported.stdout + imported.stderr)
      const db = openDatabase(dbUrl)
      try {
        const [intent] = await journalIntents(db, null, [
          {
            action: 'quarantine',
            region: 'main',
            key,
            digest: sharedDigest,
            size: shared.length,
            detail: {quarantineKey: jobQuarantineKey('_regops/quarantine', '7', sharedDigest)},
          },
        ])
        await journalOutcome(db, null, intent, 'done', {})
      } finally {
        await db.close()
      }
    })

    for (const source of ['storage', 'database'] as const) {
      test(`every fact about the shared layer appears (references from ${source})`, async () => {
        const res = await runCli([
          'inspect',
          'blob',
          sharedDigest,
          '--verify',
          '--config',
          source === 'database' ? withDb : withoutDb,
          '--json',
        ])
        assert.equal(res.code, 0, res.stdout + res.stderr)
        const r = res.json
        assert.equal(r.referencesFrom, source)
        assert.deepEqual(
          r.regions.map((g: any) => [g.region, g.present, g.size, g.verified]),
          [
            ['main', true, shared.length, true],
            ['second', true, shared.length, true],
          ],
        )
        assert.deepEqual(r.linkedBy, ['team/one', 'team/two'])
        const referencing = images.slice(0, 3).map((i) => [i.repo, i.manifestDigest, 'layer'])
        assert.deepEqual(r.referencedBy.map((m: any) => [m.repository, m.manifest, m.as]).sort(), referencing.sort())
        assert.deepEqual(
          r.quarantined.map((q: any) => [q.region, q.jobId]),
          [['main', '7']],
        )
        assert.deepEqual(
          r.journal.map((e: any) => [e.action, e.phase]),
          source === 'database'
            ? [
                ['quarantine', 'intent'],
                ['quarantine', 'done'],
              ]
            : [],
        )
      })
    }

    test('--repository narrows the walk; a blob in no region exits 1; a malformed digest exits 2', async () => {
      const narrowed = await runCli([
        'inspect',
        'blob',
        sharedDigest,
        '--repository',
        'team/two',
        '--config',
        withDb,
        '--json',
      ])
      assert.equal(narrowed.code, 0, narrowed.stdout + narrowed.stderr)
      assert.deepEqual(narrowed.json.linkedBy, ['team/two'])
      assert.deepEqual(
        narrowed.json.referencedBy.map((m: any) => m.manifest),
        [images[2].manifestDigest],
      )
      const missing = await runCli(['inspect', 'blob', 'sha256:' + '0'.repeat(64), '--config', withoutDb, '--json'])
      assert.equal(missing.code, 1, missing.stdout + missing.stderr)
      const bad = await runCli(['inspect', 'blob', 'sha256:XYZ', '--config', withoutDb, '--json'])
      assert.equal(bad.code, 2)
      assert.match(bad.json.error.message, /invalid digest 'sha256:XYZ'/)
    })

    test('inspect repo: tags, manifests, sizes, last push; inspect manifest: layers present in both regions or not', async () => {
      const repo = await runCli(['inspect', 'repo', 'team/one', '--config', withoutDb, '--json'])
      assert.equal(repo.code, 0, repo.stdout + repo.stderr)
      assert.deepEqual(
        repo.json.tags.map((t: any) => [t.tag, t.digest]),
        [
          ['a', images[0].manifestDigest],
          ['b', images[1].manifestDigest],
        ],
      )
      const sizes = images[0].size + images[1].size + images[0].blobBytes + images[1].blobBytes
      assert.equal(repo.json.totalBytes, sizes)
      assert.equal(repo.json.uniqueBytes, sizes - shared.length, 'the shared layer counts once')
      assert.ok(repo.json.lastPush)
      assert.equal((await runCli(['inspect', 'repo', 'team/none', '--config', withoutDb, '--json'])).code, 1)
      assert.equal((await runCli(['inspect', 'repo', 'Team/One', '--config', withoutDb, '--json'])).code, 2)

      const m = await runCli(['inspect', 'manifest', 'team/two:c', '--config', withoutDb, '--json'])
      assert.equal(m.code, 0, m.stdout + m.stderr)
      const layer = m.json.items.find((i: any) => i.role === 'layer')
      assert.deepEqual(layer.presentIn, {main: true, second: true})
      assert.deepEqual(m.json.items.find((i: any) => i.role === 'config').presentIn, {main: true, second: false})
      assert.equal(m.json.complete, false, 'the config is missing in the second region')
      assert.equal((await runCli(['inspect', 'manifest', 'team/two:nope', '--config', withoutDb, '--json'])).code, 1)
      assert.equal((await runCli(['inspect', 'manifest', 'team/two', '--config', withoutDb, '--json'])).code, 2)
    })
  })
}
