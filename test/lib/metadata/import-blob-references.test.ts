// Migration 0008 replaced the foreign keys from layers, repository_blobs and manifests' configurations to
// blobs by statement triggers (and the digest rule by a cheaper, equal one) to make bulk imports fast.
// These tests hold it to the same guarantees: an import writes the same rows as on schema 7, no row
// without its blob whoever writes it, a blob in use cannot be deleted (also by a concurrent transaction),
// and the digest rule accepts exactly what 0001's accepted.
// Run: node --import tsx --test test/lib/metadata/import-blob-references.test.ts
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import {sharedPostgres} from '../../helpers/postgres.js'
import {logicalDump, outcome} from './import-dump.js'
import {openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {importStorage} from '../../../src/lib/metadata/import.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {MediaTypes} from '../../../src/lib/storage/manifest.js'
import {LayoutWriter, seededBytes, sha256} from '../../../src/lib/sample/layout-writer.js'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => {})
})

before(async () => {
  await sharedPostgres()
})

async function freshDb(to?: number): Promise<{db: Db; url: string}> {
  const url = await (await sharedPostgres()).createDatabase()
  const db = openDatabase(url, {max: 12})
  cleanups.push(() => db.close())
  await migrateUp(db, {to})
  return {db, url}
}

async function client(url: string): Promise<pg.Client> {
  const c = new pg.Client({connectionString: url})
  await c.connect()
  cleanups.push(() => c.end())
  return c
}

const digest = (seed: string) => sha256(Buffer.from(seed))

/** A repository with a blob row, a manifest using a configuration blob, and a layer: the ids to write more. */
async function seed(db: Db) {
  const [config, layer, unused] = [digest('config'), digest('layer'), digest('unused')]
  const ns = (await db.query(`INSERT INTO top_level_namespaces (name) VALUES ('lib') RETURNING id`)).rows[0].id
  const repo = (
    await db.query(`INSERT INTO repositories (top_level_namespace_id, path) VALUES ($1, 'lib/app') RETURNING id`, [ns])
  ).rows[0].id
  await db.query(`INSERT INTO blobs (digest, size) VALUES ($1, 1), ($2, 2), ($3, 3)`, [config, layer, unused])
  const manifest = (
    await db.query(
      `INSERT INTO manifests (top_level_namespace_id, repository_id, digest, media_type_id, schema_version, payload, configuration_blob_digest)
       VALUES ($1, $2, $3, 1, 2, '\\x7b7d', $4) RETURNING id`,
      [ns, repo, digest('manifest'), config],
    )
  ).rows[0].id
  await db.query(
    `INSERT INTO layers (top_level_namespace_id, repository_id, manifest_id, position, digest, size, media_type_id) VALUES ($1, $2, $3, 0, $4, 2, 1)`,
    [ns, repo, manifest, layer],
  )
  await db.query(
    `INSERT INTO repository_blobs (top_level_namespace_id, repository_id, blob_digest) VALUES ($1, $2, $3), ($1, $2, $4)`,
    [ns, repo, layer, unused],
  )
  return {ns, repo, manifest, config, layer, unused}
}

const refused = {code: '23503'}

function rowsWritten(written: object): number {
  let n = 0
  for (const v of Object.values(written)) n += typeof v === 'number' ? v : rowsWritten(v as object)
  return n
}

describe('blob references checked per statement (migration 0008)', () => {
  test('an import writes the same rows, counts and problems as on schema 7 with its foreign keys, and a re-import nothing', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'regops-import-blob-refs-'))
    cleanups.push(() => rm(dir, {recursive: true, force: true}))
    const driver = new FilesystemDriver('lab', dir, 16)
    const writer = new LayoutWriter(driver)
    const base = seededBytes('refs-base', 700)
    const images = []
    for (const repository of ['one/app', 'one/lib', 'two']) {
      for (let i = 0; i < 3; i++)
        images.push(
          await writer.writeImage({
            repository,
            tag: i < 2 ? `v${i}` : undefined,
            seed: `${repository}:${i}`,
            layers: 2,
            layerSize: 100 + i,
            sharedLayers: [base],
            oci: i === 1,
          }),
        )
    }
    // an index (no configuration), a manifest whose layer blob storage lacks, a _layers link without its blob
    const two = images.filter((image) => image.repository === 'two')
    await writer.writeIndex('two', 'multi', two.slice(0, 2), [
      {os: 'linux', architecture: 'amd64'},
      {os: 'linux', architecture: 'arm64'},
    ])
    const config = await writer.putBlob(Buffer.from('{"architecture":"amd64","os":"linux"}'))
    const missing = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.dockerManifest,
        config: {mediaType: MediaTypes.dockerConfig, digest: config, size: 37},
        layers: [{mediaType: MediaTypes.dockerLayer, digest: digest('never written'), size: 10}],
      }),
    )
    await writer.putManifest('one/app', missing, 'missing-layer')
    await driver.write(
      `repositories/one/lib/_layers/sha256/${digest('gone').slice(7)}/link`,
      Buffer.from(digest('gone')),
    )

    const old = (await freshDb(7)).db
    const current = (await freshDb()).db
    const before = await importStorage({driver, db: old})
    const now = await importStorage({driver, db: current})
    assert.equal(now.failed.length, 0)
    assert.equal(now.manifests, 11)
    assert.ok(now.problems.some((p) => p.kind === 'missing-blob'))
    assert.ok(now.problems.some((p) => p.kind === 'dangling-layer-link'))
    assert.deepEqual(outcome(now), outcome(before))
    assert.deepEqual(await logicalDump(current), await logicalDump(old))
    for (const db of [current, old]) {
      const again = await importStorage({driver, db})
      assert.equal(again.failed.length, 0)
      assert.equal(rowsWritten(again.written), 0, JSON.stringify(again.written))
    }
  })

  test('a statement any of whose rows names a blob that is not there is refused whole', async () => {
    const {db} = await freshDb()
    const {ns, repo, manifest, layer} = await seed(db)
    const nowhere = digest('nowhere')
    await assert.rejects(
      db.query(
        `INSERT INTO layers (top_level_namespace_id, repository_id, manifest_id, position, digest, size, media_type_id)
         VALUES ($1, $2, $3, 1, $4, 2, 1), ($1, $2, $3, 2, $5, 2, 1), ($1, $2, $3, 3, $4, 2, 1)`,
        [ns, repo, manifest, layer, nowhere],
      ),
      refused,
    )
    await assert.rejects(
      db.query(
        `INSERT INTO repository_blobs (top_level_namespace_id, repository_id, blob_digest) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING`,
        [ns, repo, nowhere],
      ),
      refused,
    )
    await assert.rejects(
      db.query(
        `INSERT INTO manifests (top_level_namespace_id, repository_id, digest, media_type_id, schema_version, payload, configuration_blob_digest)
         VALUES ($1, $2, $3, 1, 2, '\\x7b7d', NULL), ($1, $2, $4, 1, 2, '\\x7b7d', $5)`,
        [ns, repo, digest('no config'), digest('bad config'), nowhere],
      ),
      refused,
    )
    await assert.rejects(db.query(`UPDATE layers SET digest = $1`, [nowhere]), refused)
    await assert.rejects(db.query(`UPDATE manifests SET configuration_blob_digest = $1`, [nowhere]), refused)
    const counts = await db.query(
      `SELECT (SELECT count(*) FROM layers)::int AS layers, (SELECT count(*) FROM repository_blobs)::int AS links,
              (SELECT count(*) FROM manifests)::int AS manifests, (SELECT count(*) FROM layers WHERE digest = $1)::int AS kept`,
      [layer],
    )
    assert.deepEqual(counts.rows[0], {layers: 1, links: 2, manifests: 1, kept: 1})
    // rows without a configuration, and rows whose blobs are all there, go in
    await db.query(
      `INSERT INTO manifests (top_level_namespace_id, repository_id, digest, media_type_id, schema_version, payload) VALUES ($1, $2, $3, 1, 2, '\\x7b7d')`,
      [ns, repo, digest('index')],
    )
  })

  test('a blob in use cannot be deleted, truncated or renamed; deleting one removes the links to it', async () => {
    const {db} = await freshDb()
    const {config, layer, unused} = await seed(db)
    await assert.rejects(db.query(`DELETE FROM blobs WHERE digest = $1`, [layer]), refused)
    await assert.rejects(db.query(`DELETE FROM blobs WHERE digest = $1`, [config]), refused)
    await assert.rejects(db.query(`DELETE FROM blobs`), refused)
    await assert.rejects(db.query(`TRUNCATE blobs`), refused)
    await assert.rejects(
      db.query(`UPDATE blobs SET digest = $2 WHERE digest = $1`, [layer, digest('renamed')]),
      refused,
    )
    assert.equal((await db.query(`DELETE FROM blobs WHERE digest = $1`, [unused])).rowCount, 1)
    const links = await db.query<{blob_digest: string}>(`SELECT blob_digest FROM repository_blobs`)
    assert.deepEqual(
      links.rows.map((r) => r.blob_digest),
      [layer],
    )
    // once nothing uses them, they go (their links with them)
    await db.query(`DELETE FROM manifests`)
    assert.equal((await db.query(`DELETE FROM blobs`)).rowCount, 2)
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM repository_blobs`)).rows[0].n, 0)
  })

  test('a delete racing a transaction that references the blob waits for it and fails; the other way round, the insert fails', async () => {
    const {db, url} = await freshDb()
    const {ns, repo, manifest, unused} = await seed(db)
    const [writer, deleter] = [await client(url), await client(url)]
    const pidOf = async (c: pg.Client): Promise<number> => (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid
    const pids = new Map([
      [writer, await pidOf(writer)],
      [deleter, await pidOf(deleter)],
    ])
    const waitsForLock = async (c: pg.Client) => {
      const pid = pids.get(c)
      for (let i = 0; i < 500; i++) {
        const r = await db.query(`SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1`, [pid])
        if (r.rows[0]?.wait_event_type === 'Lock') return
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      assert.fail('the statement never waited for a lock')
    }
    const insertLayer = (c: pg.Client) =>
      c.query(
        `INSERT INTO layers (top_level_namespace_id, repository_id, manifest_id, position, digest, size, media_type_id) VALUES ($1, $2, $3, 5, $4, 3, 1)`,
        [ns, repo, manifest, unused],
      )

    // the layer first: the delete waits for its transaction, then finds the layer
    await writer.query('BEGIN')
    await insertLayer(writer)
    const deleting = deleter.query(`DELETE FROM blobs WHERE digest = $1`, [unused])
    deleting.catch(() => {})
    await waitsForLock(deleter)
    await writer.query('COMMIT')
    await assert.rejects(deleting, refused)
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM blobs WHERE digest = $1`, [unused])).rows[0].n, 1)

    // the delete first: the layer's statement waits for it, then finds the blob gone
    await db.query(`DELETE FROM layers WHERE digest = $1`, [unused])
    await deleter.query('BEGIN')
    await deleter.query(`DELETE FROM blobs WHERE digest = $1`, [unused])
    const inserting = insertLayer(writer)
    inserting.catch(() => {})
    await waitsForLock(writer)
    await deleter.query('COMMIT')
    await assert.rejects(inserting, refused)
    const orphans = await db.query(
      `SELECT count(*)::int AS n FROM layers l WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = l.digest)`,
    )
    assert.equal(orphans.rows[0].n, 0)
  })

  test("the digest rule accepts exactly the strings 0001's rule accepted", async () => {
    const {db} = await freshDb()
    const hex64 = 'a0b1c2d3e4f5'.repeat(6).slice(0, 64)
    const candidates = [
      `sha256:${hex64}`,
      `sha512:${hex64}${hex64}`,
      `sha256:${hex64}${hex64}`,
      `sha512:${hex64}`,
      `sha256:${hex64.slice(1)}`,
      `sha256:${hex64}0`,
      `sha256:${hex64.toUpperCase()}`,
      `sha256:${hex64.slice(1)}g`,
      `sha256:${hex64.slice(1)}\n`,
      `sha256:${hex64}\n`,
      `\nsha256:${hex64.slice(1)}`,
      `sha256:${hex64.slice(1)}é`,
      `sha256:${hex64.slice(2)}é`,
      `sha384:${hex64}`,
      `SHA256:${hex64}`,
      `sha256-${hex64}`,
      ` sha256:${hex64.slice(1)}`,
      `sha256:${hex64.slice(0, 63)} `,
      hex64,
      '',
    ]
    const r = await db.query<{value: string; old: boolean}>(
      `SELECT v AS value, v ~ '^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$' AS old FROM unnest($1::text[]) AS v`,
      [candidates],
    )
    assert.equal(r.rows.filter((row) => row.old).length, 2)
    for (const row of r.rows) {
      const cast = db.query(`SELECT $1::regops_digest`, [row.value])
      if (row.old) await cast
      else await assert.rejects(cast, {code: '23514'}, JSON.stringify(row.value))
    }
  })
})
