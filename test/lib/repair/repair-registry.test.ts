// Repairs on docker-registry's own data (distribution 2.8, filesystem and S3 on radosgw): a deleted
// _layers link fails the pull with "blob unknown" until `repair links` puts it back; a tag moved to a wrong
// digest is moved back by `repair tag --to`; both are journaled and undone by `journal undo`.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {startRegistryWithRegion, type RegistryServer} from '../../helpers/registry.js'
import {headManifest, pullImage, pushImage, randomBlob, type PushedImage} from '../../helpers/images.js'
import {runCli} from '../../helpers/cli.js'
import {loadConfig} from '../../../src/lib/config/config.js'
import {openRegion} from '../../../src/lib/storage/index.js'
import type {StorageDriver} from '../../../src/lib/storage/driver.js'
import {pathFor} from '../../../src/lib/storage/layout.js'
import {openDatabase} from '../../../src/lib/metadata/db.js'
import {journalIntents, journalOutcome} from '../../../src/lib/sweep/journal.js'

const cleanups: Array<() => Promise<unknown>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

/** The registry's answer to a blob GET: status and error code ("BLOB_UNKNOWN" is the pull failure). */
async function blobAnswer(url: string, repo: string, digest: string): Promise<{status: number; body: string}> {
  const res = await fetch(`${url}/v2/${repo}/blobs/${digest}`)
  return {status: res.status, body: await res.text()}
}

for (const kind of ['filesystem', 's3'] as const) {
  describe(`repair links, repair tag and journal undo on docker-registry data (${kind})`, () => {
    let registry: RegistryServer
    let config: string
    let dbUrl: string
    let driver: StorageDriver
    let app: PushedImage
    const cli = (...args: string[]) => runCli([...args, '--config', config, '--json'])

    before(async () => {
      const dir = await mkdtemp(join(tmpdir(), `regops-repair-${kind}-`))
      cleanups.push(() => rm(dir, {recursive: true, force: true}))
      dbUrl = await (await sharedPostgres()).createDatabase()
      const started = await startRegistryWithRegion(kind, dir, 'repair')
      registry = started.registry
      const region = started.region
      cleanups.push(() => registry.stop())
      config = join(dir, 'regops.yaml')
      await writeFile(config, `regions:\n  main: ${region}\nprimary: main\ndatabase:\n  url: ${dbUrl}\n`)
      driver = await openRegion(loadConfig({file: config}))
      cleanups.push(() => driver.close())
      const migrated = await cli('db', 'migrate', 'up')
      assert.equal(migrated.code, 0, migrated.stdout + migrated.stderr)
      app = await pushImage(registry.url, 'team/app', 'v1', {
        layers: [randomBlob(3000, 'app-a'), randomBlob(2000, 'app-b')],
        seed: 'app',
      })
    })

    test('a deleted _layers link: pull fails with blob unknown; repair links names it, recreates it, and journal undo removes it again', async () => {
      const layer = app.layerDigests[0]
      const link = pathFor({kind: 'layer-link', repository: 'team/app', digest: layer})
      await driver.deleteMany([link])
      const broken = await blobAnswer(registry.url, 'team/app', layer)
      assert.equal(broken.status, 404)
      assert.match(broken.body, /BLOB_UNKNOWN/)

      const dry = await cli('repair', 'links', 'team/app')
      assert.equal(dry.code, 1, dry.stdout + dry.stderr)
      assert.deepEqual(
        dry.json.links.map((l: any) => [l.key, l.state]),
        [[link, 'missing']],
      )
      assert.equal(await driver.stat(link), undefined, 'a dry-run writes nothing')

      const applied = await cli('repair', 'links', 'team/app', '--apply')
      assert.equal(applied.code, 0, applied.stdout + applied.stderr)
      assert.equal(applied.json.links[0].state, 'created')
      const entry = applied.json.links[0].entry as string
      const pulled = await pullImage(registry.url, 'team/app', 'v1')
      assert.ok(pulled.ok, pulled.errors.join('; '))
      const journal = await cli('journal', '--digest', layer)
      assert.deepEqual(
        journal.json.entries.map((e: any) => [e.action, e.phase, e.key]),
        // `journal` lists the newest first
        [
          ['link', 'done', link],
          ['link', 'intent', link],
        ],
      )

      const again = await cli('repair', 'links', 'team/app')
      assert.equal(again.code, 0, 'nothing left to repair')
      assert.deepEqual(again.json.links, [])

      const undoDry = await cli('journal', 'undo', entry)
      assert.equal(undoDry.code, 1, undoDry.stdout + undoDry.stderr)
      assert.ok(await driver.stat(link), 'a dry-run undo removes nothing')
      const undone = await cli('journal', 'undo', entry, '--apply')
      assert.equal(undone.code, 0, undone.stdout + undone.stderr)
      assert.equal(await driver.stat(link), undefined)
      assert.match((await blobAnswer(registry.url, 'team/app', layer)).body, /BLOB_UNKNOWN/)
      const twice = await cli('journal', 'undo', entry, '--apply')
      assert.equal(twice.code, 4, twice.stdout)
      assert.match(twice.json.error.message, /already undone/)
      // leave the repository whole for the next test
      assert.equal((await cli('repair', 'links', 'team/app', '--apply')).code, 0)
    })

    test('a tag moved to a wrong digest: inspect manifest shows its history, repair tag --to moves it back, journal undo moves it again', async () => {
      const wrong = await pushImage(registry.url, 'team/app', 'v1', {
        layers: [randomBlob(1000, 'wrong')],
        seed: 'wrong',
      })
      assert.equal(await headManifest(registry.url, 'team/app', 'v1'), wrong.manifestDigest)
      const imported = await cli('import')
      assert.equal(imported.code, 0, imported.stdout + imported.stderr)

      const inspected = await cli('inspect', 'manifest', 'team/app:v1')
      assert.equal(inspected.code, 0, inspected.stdout + inspected.stderr)
      assert.equal(inspected.json.digest, wrong.manifestDigest)
      const v1 = inspected.json.tags.find((t: any) => t.tag === 'v1')
      assert.deepEqual(v1.history.map((h: any) => h.digest).sort(), [app.manifestDigest, wrong.manifestDigest].sort())
      const old = await cli('inspect', 'manifest', `team/app@${app.manifestDigest}`)
      assert.equal(old.code, 0)
      assert.deepEqual(
        old.json.tags.map((t: any) => [t.tag, t.pointsHere]),
        [['v1', false]],
        'the old digest is in the tag history, not its current',
      )

      const dry = await cli('repair', 'tag', 'team/app:v1', '--to', app.manifestDigest)
      assert.equal(dry.code, 1, dry.stdout + dry.stderr)
      assert.equal(dry.json.state, 'would-move')
      assert.equal(await headManifest(registry.url, 'team/app', 'v1'), wrong.manifestDigest)

      const moved = await cli('repair', 'tag', 'team/app:v1', '--to', app.manifestDigest, '--apply')
      assert.equal(moved.code, 0, moved.stdout + moved.stderr)
      assert.deepEqual(
        [moved.json.state, moved.json.from, moved.json.database],
        ['moved', wrong.manifestDigest, 'updated'],
      )
      assert.equal(
        await headManifest(registry.url, 'team/app', 'v1'),
        app.manifestDigest,
        'the registry serves the old digest again',
      )
      const db = openDatabase(dbUrl)
      try {
        const row = await db.query(
          `SELECT m.digest FROM tags t JOIN manifests m ON m.id = t.manifest_id AND m.repository_id = t.repository_id WHERE t.name = 'v1'`,
        )
        assert.equal(row.rows[0].digest, app.manifestDigest, 'the tags row follows')
      } finally {
        await db.close()
      }

      const undone = await cli('journal', 'undo', moved.json.entry, '--apply')
      assert.equal(undone.code, 0, undone.stdout + undone.stderr)
      assert.equal(await headManifest(registry.url, 'team/app', 'v1'), wrong.manifestDigest)
    })

    test('refusals: a repository that matches nothing, a digest outside the tag history, an irreversible entry; malformed input exits 2', async () => {
      const none = await cli('repair', 'links', 'team/nothing')
      assert.equal(none.code, 4, none.stdout)
      assert.match(none.json.error.message, /team\/nothing does not exist/)
      const stranger = 'sha256:' + 'ab'.repeat(32)
      const outside = await cli('repair', 'tag', 'team/app:v1', '--to', stranger, '--apply')
      assert.equal(outside.code, 4, outside.stdout)
      assert.match(outside.json.error.message, /not in the index history/)
      assert.equal((await cli('repair', 'db', '--repository', 'team/nothing')).code, 4)
      assert.equal((await cli('repair', 'tag', 'Team/App:v1', '--to', stranger)).code, 2)

      const db = openDatabase(dbUrl)
      let intent: string
      try {
        ;[intent] = await journalIntents(db, null, [
          {
            action: 'delete',
            region: 'main',
            key: pathFor({kind: 'blob-data', digest: stranger}),
            digest: stranger,
            size: 1,
          },
        ])
        await journalOutcome(db, null, intent, 'done', {})
      } finally {
        await db.close()
      }
      const refused = await cli('journal', 'undo', intent)
      assert.equal(refused.code, 4, refused.stdout)
      assert.match(refused.json.error.message, /cannot be undone: a deleted blob is gone/)
    })

    test('repair db shows the difference, then re-imports the repository', async () => {
      await pushImage(registry.url, 'team/app', 'v2', {layers: [randomBlob(700, 'v2')], seed: 'v2'})
      const dry = await cli('repair', 'db', '--repository', 'team/app')
      assert.equal(dry.code, 1, dry.stdout + dry.stderr)
      assert.deepEqual(dry.json.difference.tags.onlyInStorage, ['v2'])
      const applied = await cli('repair', 'db', '--repository', 'team/app', '--apply')
      assert.equal(applied.code, 0, applied.stdout + applied.stderr)
      assert.equal(applied.json.remaining.tags.onlyInStorage.length, 0)
      assert.equal((await cli('repair', 'db', '--repository', 'team/app')).code, 0, 'no difference left')
      const refused = await cli('journal', 'undo', applied.json.entry)
      assert.equal(refused.code, 4)
    })
  })
}
