// `regops import` against a real PostgreSQL (test/helpers/postgres.ts), stores written straight into
// the distribution layout with LayoutWriter on a FilesystemDriver, and the real CLI as child processes.
// Run: node --import tsx --test test/lib/metadata/import.test.ts
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {existsSync} from 'node:fs'
import {mkdtemp, readdir, readFile, rm, utimes, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {runCli, startCli} from '../../helpers/cli.js'
import {openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {importStorage, shardOfRepository, type ImportResult} from '../../../src/lib/metadata/import.js'
import {exitCode as importExitCode} from '../../../src/formatters/import.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {pathFor} from '../../../src/lib/storage/layout.js'
import {MediaTypes} from '../../../src/lib/storage/manifest.js'
import {listRepositories, listRevisionLinks, listTags} from '../../../src/lib/storage/repositories.js'
import {LayoutWriter, seededBytes, sha256} from '../../../src/lib/sample/layout-writer.js'
import {ExitCode, RefusedError, StorageError} from '../../../src/lib/errors.js'
import {sweepBlobs} from '../../../src/lib/sweep/sweep-blobs.js'
import {silentLogger} from '../../../src/lib/output/logger.js'
import {startRegistry, type RegistryServer} from '../../helpers/registry.js'
import {sharedRadosgw} from '../../helpers/radosgw.js'
import {
  deleteManifest,
  getManifest,
  headManifest,
  listCatalog,
  listTags as registryTags,
  pushImage,
  pushIndex,
  randomBlob,
  uploadOrphanBlob,
} from '../../helpers/images.js'

const REGISTRY_TABLES = [
  'top_level_namespaces',
  'repositories',
  'media_types',
  'blobs',
  'repository_blobs',
  'manifests',
  'manifest_references',
  'layers',
  'tags',
]

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => {})
})

async function tempDir(label: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `regops-import-${label}-`))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  return dir
}

async function freshDb(): Promise<{db: Db; url: string}> {
  const url = await (await sharedPostgres()).createDatabase()
  const db = openDatabase(url, {max: 12})
  cleanups.push(() => db.close())
  await migrateUp(db)
  return {db, url}
}

async function store(label: string): Promise<{dir: string; driver: FilesystemDriver; writer: LayoutWriter}> {
  const dir = await tempDir(label)
  const driver = new FilesystemDriver('lab', dir, 32)
  return {dir, driver, writer: new LayoutWriter(driver)}
}

/** Every row of every registry table, ids and timestamps included. */
async function fullDump(db: Db): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {}
  for (const table of REGISTRY_TABLES) {
    const r = await db.query<{j: string}>(`SELECT row_to_json(t)::text AS j FROM ${table} t ORDER BY 1`)
    out[table] = r.rows.map((row) => row.j)
  }
  return out
}

/**
 * The content of the registry tables with surrogate ids replaced by natural keys (repository path,
 * digests, media type names): comparable across databases, shards and resumed runs. Timestamps that
 * come from storage (link and blob lastModified) are included; those that are now() are not.
 */
async function logicalDump(db: Db): Promise<Record<string, string[]>> {
  const queries: Record<string, string> = {
    namespaces: `SELECT name FROM top_level_namespaces`,
    repositories: `SELECT r.path || ' ' || n.name FROM repositories r JOIN top_level_namespaces n ON n.id = r.top_level_namespace_id`,
    media_types: `SELECT media_type FROM media_types`,
    blobs: `SELECT concat_ws(' ', b.digest, b.size, mt.media_type, b.created_at) FROM blobs b LEFT JOIN media_types mt ON mt.id = b.media_type_id`,
    repository_blobs: `SELECT concat_ws(' ', r.path, rb.blob_digest, rb.created_at) FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id`,
    manifests: `SELECT concat_ws(' ', r.path, m.digest, mt.media_type, m.schema_version, md5(m.payload), m.configuration_blob_digest, cmt.media_type, m.subject_digest, m.created_at)
                  FROM manifests m JOIN repositories r ON r.id = m.repository_id JOIN media_types mt ON mt.id = m.media_type_id
                  LEFT JOIN media_types cmt ON cmt.id = m.configuration_media_type_id`,
    manifest_references: `SELECT concat_ws(' ', r.path, p.digest, c.digest) FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id
                  JOIN manifests p ON p.id = mr.parent_id AND p.repository_id = mr.repository_id JOIN manifests c ON c.id = mr.child_id AND c.repository_id = mr.repository_id`,
    layers: `SELECT concat_ws(' ', r.path, m.digest, l.position, l.digest, l.size, mt.media_type) FROM layers l JOIN repositories r ON r.id = l.repository_id
                  JOIN manifests m ON m.id = l.manifest_id AND m.repository_id = l.repository_id JOIN media_types mt ON mt.id = l.media_type_id`,
    tags: `SELECT concat_ws(' ', r.path, t.name, m.digest, t.created_at, t.updated_at) FROM tags t JOIN repositories r ON r.id = t.repository_id
                  JOIN manifests m ON m.id = t.manifest_id AND m.repository_id = t.repository_id`,
  }
  const out: Record<string, string[]> = {}
  for (const [name, sql] of Object.entries(queries)) {
    const r = await db.query<{line: string}>(`SELECT line FROM (${sql}) AS x(line) ORDER BY 1`)
    out[name] = r.rows.map((row) => row.line)
  }
  return out
}

/** tag → digest and manifest digests per repository, as storage says (the walk helpers, not the import). */
async function storageView(
  driver: FilesystemDriver,
): Promise<Map<string, {tags: Record<string, string>; manifests: string[]}>> {
  const view = new Map<string, {tags: Record<string, string>; manifests: string[]}>()
  for await (const repo of listRepositories(driver, () => {})) {
    const tags: Record<string, string> = {}
    for (const t of await listTags(driver, repo, () => {})) if (t.digest) tags[t.tag] = t.digest
    const manifests: string[] = []
    for await (const l of listRevisionLinks(driver, repo, () => {})) manifests.push(l.digest)
    view.set(repo, {tags, manifests: manifests.sort()})
  }
  return view
}

async function dbView(db: Db): Promise<Map<string, {tags: Record<string, string>; manifests: string[]}>> {
  const view = new Map<string, {tags: Record<string, string>; manifests: string[]}>()
  const repos = await db.query<{path: string}>('SELECT path FROM repositories ORDER BY path')
  for (const {path: repo} of repos.rows) {
    const tags = await db.query<{name: string; digest: string}>(
      `SELECT t.name, m.digest FROM tags t JOIN repositories r ON r.id = t.repository_id JOIN manifests m ON m.id = t.manifest_id AND m.repository_id = t.repository_id WHERE r.path = $1`,
      [repo],
    )
    const manifests = await db.query<{digest: string}>(
      `SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.path = $1 ORDER BY m.digest`,
      [repo],
    )
    view.set(repo, {
      tags: Object.fromEntries(tags.rows.map((t) => [t.name, t.digest])),
      manifests: manifests.rows.map((m) => m.digest),
    })
  }
  return view
}

function sortedEntries<V>(map: Map<string, V>): Array<[string, V]> {
  return [...map.entries()].sort(([a], [b]) => (a < b ? -1 : 1))
}

/** The store of test 1: shared layers across repositories, a multi-arch index, OCI, Docker and schema 1. */
async function writeMixedStore(writer: LayoutWriter) {
  const shared = seededBytes('shared-base-layer', 3000)
  const armShared = seededBytes('shared-arch-layer', 1500)
  const webV1 = await writer.writeImage({
    repository: 'alpha/web',
    tag: 'v1',
    seed: 'web-v1',
    layers: 2,
    layerSize: 700,
    sharedLayers: [shared],
  })
  const webOci = await writer.writeImage({
    repository: 'alpha/web',
    tag: 'v2-oci',
    seed: 'web-v2',
    layers: 1,
    layerSize: 900,
    sharedLayers: [shared],
    oci: true,
  })
  const untagged = await writer.writeImage({repository: 'alpha/web', seed: 'web-untagged', layers: 1, layerSize: 500})
  const amd = await writer.writeImage({
    repository: 'beta',
    seed: 'multi-amd64',
    layers: 1,
    layerSize: 600,
    sharedLayers: [armShared],
    platform: {os: 'linux', architecture: 'amd64'},
  })
  const arm = await writer.writeImage({
    repository: 'beta',
    seed: 'multi-arm64',
    layers: 1,
    layerSize: 600,
    sharedLayers: [armShared],
    platform: {os: 'linux', architecture: 'arm64'},
    oci: true,
  })
  const index = await writer.writeIndex(
    'beta',
    'latest',
    [amd, arm],
    [
      {os: 'linux', architecture: 'amd64'},
      {os: 'linux', architecture: 'arm64'},
    ],
  )
  const stable = await writer.writeImage({
    repository: 'beta',
    tag: 'stable',
    seed: 'beta-stable',
    layers: 1,
    layerSize: 400,
    sharedLayers: [shared],
  })
  // A second tag on the same manifest, and a repository whose name sorts between 'alpha' and 'alpha/web'.
  await writer.tag('beta', 'stable-copy', stable.manifestDigest)
  const dash = await writer.writeImage({
    repository: 'alpha-x',
    tag: 'main',
    seed: 'alpha-x',
    layers: 1,
    layerSize: 300,
    sharedLayers: [shared],
  })
  // Docker schema 1 (signed form, mediaType absent).
  const s1Layer = await writer.putBlob(seededBytes('schema1-layer', 800))
  await writer.linkLayer('gamma/legacy', s1Layer)
  const schema1 = Buffer.from(
    JSON.stringify({
      schemaVersion: 1,
      name: 'gamma/legacy',
      tag: 'old',
      architecture: 'amd64',
      fsLayers: [{blobSum: s1Layer}],
      history: [{v1Compatibility: '{}'}],
    }),
  )
  const schema1Digest = await writer.putManifest('gamma/legacy', schema1, 'old')
  // A blob uploaded to alpha/web whose manifest never came: a _layers link only.
  const orphan = await writer.writeOrphan('alpha/web', 'orphan-1', 1234)
  return {
    webV1,
    webOci,
    untagged,
    amd,
    arm,
    index,
    stable,
    dash,
    s1Layer,
    schema1Digest,
    orphan,
    images: [webV1, webOci, untagged, amd, arm, stable, dash],
  }
}

describe('regops import', () => {
  test('imports repositories, tags, manifests (Docker, OCI, index, schema 1), blobs, layers, references and links', async () => {
    const {driver, writer} = await store('mixed')
    const s = await writeMixedStore(writer)
    const {db} = await freshDb()
    const result = await importStorage({driver, db})
    assert.equal(result.kind, 'import')
    assert.deepEqual(result.failed, [])
    assert.deepEqual(result.problems, [], JSON.stringify(result.problems))
    assert.equal(importExitCode(result), ExitCode.Ok)
    assert.equal(result.repositories, 4)
    assert.equal(result.manifests, 9)
    assert.equal(result.tags, 7)
    assert.equal(result.references, 2)

    // tags and manifest digests per repository equal what storage says
    const fromStorage = await storageView(driver)
    assert.deepEqual(sortedEntries(await dbView(db)), sortedEntries(fromStorage))
    assert.deepEqual([...fromStorage.keys()].sort(), ['alpha-x', 'alpha/web', 'beta', 'gamma/legacy'])
    assert.equal(fromStorage.get('beta')!.tags.latest, s.index)

    // every blob a manifest references (manifest, config, layers) is in blobs, with its storage size
    const expected = new Set<string>([
      ...s.images.flatMap((i) => i.blobs),
      s.index,
      s.s1Layer,
      s.schema1Digest,
      s.orphan,
    ])
    const blobs = await db.query<{digest: string; size: string}>('SELECT digest, size FROM blobs')
    const inDb = new Map(blobs.rows.map((b) => [b.digest, Number(b.size)]))
    for (const digest of expected) {
      assert.ok(inDb.has(digest), `blob ${digest} missing`)
      const info = await driver.stat(pathFor({kind: 'blob-data', digest}))
      assert.equal(inDb.get(digest), info!.size, `size of ${digest}`)
    }
    assert.equal(inDb.size, expected.size)
    const unreferenced = await db.query(
      `SELECT digest FROM layers UNION SELECT configuration_blob_digest FROM manifests WHERE configuration_blob_digest IS NOT NULL UNION SELECT digest FROM manifests
       EXCEPT SELECT digest FROM blobs`,
    )
    assert.equal(unreferenced.rowCount, 0)

    // index → children edges
    const edges = await db.query<{parent: string; child: string}>(
      `SELECT p.digest AS parent, c.digest AS child FROM manifest_references mr
         JOIN manifests p ON p.id = mr.parent_id JOIN manifests c ON c.id = mr.child_id ORDER BY c.digest`,
    )
    assert.deepEqual(
      edges.rows,
      [s.amd.manifestDigest, s.arm.manifestDigest].sort().map((child) => ({parent: s.index, child})),
    )

    // manifest rows: media types, configs, schema versions, payload
    const manifests = await db.query<{
      digest: string
      media_type: string
      schema_version: number
      config: string | null
      payload: Buffer
    }>(
      `SELECT m.digest, mt.media_type, m.schema_version, m.configuration_blob_digest AS config, m.payload FROM manifests m JOIN media_types mt ON mt.id = m.media_type_id`,
    )
    const byDigest = new Map(manifests.rows.map((m) => [m.digest, m]))
    assert.equal(byDigest.get(s.webV1.manifestDigest)!.media_type, MediaTypes.dockerManifest)
    assert.equal(byDigest.get(s.webV1.manifestDigest)!.config, s.webV1.configDigest)
    assert.equal(byDigest.get(s.webOci.manifestDigest)!.media_type, MediaTypes.ociManifest)
    assert.equal(byDigest.get(s.index)!.media_type, MediaTypes.ociIndex)
    assert.equal(byDigest.get(s.index)!.config, null)
    assert.equal(byDigest.get(s.schema1Digest)!.media_type, MediaTypes.dockerSchema1Signed)
    assert.equal(byDigest.get(s.schema1Digest)!.schema_version, 1)
    for (const m of manifests.rows) assert.equal(sha256(m.payload), m.digest)

    // layers in manifest order, the shared layer once per manifest that uses it
    const layers = await db.query<{position: number; digest: string}>(
      `SELECT l.position, l.digest FROM layers l JOIN manifests m ON m.id = l.manifest_id AND m.repository_id = l.repository_id WHERE m.digest = $1 ORDER BY l.position`,
      [s.webV1.manifestDigest],
    )
    assert.deepEqual(
      layers.rows.map((l) => l.digest),
      s.webV1.layerDigests,
    )
    const sharedUsers = await db.query<{n: string}>('SELECT count(*) AS n FROM layers WHERE digest = $1', [
      s.webV1.layerDigests[0],
    ])
    assert.equal(Number(sharedUsers.rows[0].n), 4)

    // _layers links → repository_blobs, with the link's time; manifests get their revision link's time
    const links = await db.query<{path: string; digest: string; created_at: Date}>(
      `SELECT r.path, rb.blob_digest AS digest, rb.created_at FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id WHERE r.path = 'alpha/web'`,
    )
    const webLinks = new Set([
      ...s.webV1.layerDigests,
      s.webV1.configDigest,
      ...s.webOci.layerDigests,
      s.webOci.configDigest,
      ...s.untagged.layerDigests,
      s.untagged.configDigest,
      s.orphan,
    ])
    assert.deepEqual(new Set(links.rows.map((l) => l.digest)), webLinks)
    const orphanLink = await driver.stat(pathFor({kind: 'layer-link', repository: 'alpha/web', digest: s.orphan}))
    assert.equal(
      links.rows.find((l) => l.digest === s.orphan)!.created_at.getTime(),
      orphanLink!.lastModified.getTime(),
    )

    // namespaces and the job row (group param for the sweep)
    const namespaces = await db.query<{name: string}>('SELECT name FROM top_level_namespaces ORDER BY name')
    assert.deepEqual(
      namespaces.rows.map((n) => n.name),
      ['alpha', 'alpha-x', 'beta', 'gamma'],
    )
    const job = await db.query<{status: string; group: string; checkpoint: {after: string}}>(
      `SELECT status, params->>'group' AS group, checkpoint FROM regops_jobs WHERE id = $1`,
      [result.jobId],
    )
    assert.equal(job.rows[0].status, 'done')
    assert.equal(job.rows[0].group, result.group)
    assert.equal(job.rows[0].checkpoint.after, 'gamma/legacy')

    // dry-run: same counts, writes nothing
    const before = await fullDump(db)
    const jobsBefore = await db.query('SELECT count(*) FROM regops_jobs')
    const dry = await importStorage({driver, db, dryRun: true})
    assert.equal(dry.dryRun, true)
    assert.equal(dry.jobId, undefined)
    for (const key of ['repositories', 'manifests', 'tags', 'layers', 'references', 'repositoryBlobs'] as const)
      assert.equal(dry[key], result[key], key)
    assert.deepEqual(await fullDump(db), before)
    assert.deepEqual((await db.query('SELECT count(*) FROM regops_jobs')).rows, jobsBefore.rows)

    // --repository filter (exact and prefix)
    const {db: db2} = await freshDb()
    const filtered = await importStorage({driver, db: db2, repositories: ['beta', 'alpha/*']})
    assert.equal(filtered.repositories, 2)
    assert.deepEqual(
      (await db2.query<{path: string}>('SELECT path FROM repositories ORDER BY path')).rows.map((r) => r.path),
      ['alpha/web', 'beta'],
    )
  })

  test('a second run changes no row; a re-run after changes in storage follows them', async () => {
    const {driver, writer} = await store('idem')
    const s = await writeMixedStore(writer)
    const {db} = await freshDb()
    await importStorage({driver, db})
    const first = await fullDump(db)
    const again = await importStorage({driver, db})
    assert.deepEqual(await fullDump(db), first)
    assert.deepEqual(again.written, {
      namespaces: 0,
      repositories: 0,
      mediaTypes: 0,
      blobs: 0,
      manifests: 0,
      layers: 0,
      references: 0,
      repositoryBlobs: 0,
      tagsInserted: 0,
      tagsUpdated: 0,
      deleted: {repositories: 0, manifests: 0, tags: 0, repositoryBlobs: 0},
    })
    assert.equal(again.manifests, 9)

    // storage changes: a tag moves, a tag and an untagged manifest are deleted, a new image is pushed
    await writer.tag('alpha/web', 'v1', s.webOci.manifestDigest)
    await driver.deleteMany([
      pathFor({kind: 'tag-current-link', repository: 'beta', tag: 'stable-copy'}),
      pathFor({kind: 'manifest-revision-link', repository: 'alpha/web', digest: s.untagged.manifestDigest}),
    ])
    const pushed = await writer.writeImage({
      repository: 'alpha/web',
      tag: 'v3',
      seed: 'web-v3',
      layers: 1,
      layerSize: 100,
    })
    const third = await importStorage({driver, db})
    assert.deepEqual(third.problems, [])
    assert.equal(third.written.tagsUpdated, 1)
    assert.equal(third.written.tagsInserted, 1)
    assert.deepEqual(third.written.deleted, {repositories: 0, manifests: 1, tags: 1, repositoryBlobs: 0})
    assert.deepEqual(sortedEntries(await dbView(db)), sortedEntries(await storageView(driver)))
    const moved = await db.query<{updated_at: Date | null}>(`SELECT updated_at FROM tags WHERE name = 'v1'`)
    assert.ok(moved.rows[0].updated_at)
    const unchanged = await db.query<{updated_at: Date | null}>(`SELECT updated_at FROM tags WHERE name = 'stable'`)
    assert.equal(unchanged.rows[0].updated_at, null)
    assert.ok((await dbView(db)).get('alpha/web')!.manifests.includes(pushed.manifestDigest))
  })

  test('a repository that vanished from storage is removed and journaled, only by a full import of its shard', async () => {
    const {dir, driver, writer} = await store('vanished')
    await writeMixedStore(writer)
    const {db} = await freshDb()
    await importStorage({driver, db})
    const paths = async () =>
      (await db.query<{path: string}>('SELECT path FROM repositories ORDER BY path')).rows.map((r) => r.path)
    assert.deepEqual(await paths(), ['alpha-x', 'alpha/web', 'beta', 'gamma/legacy'])
    await rm(path.join(dir, 'repositories/beta'), {recursive: true})

    // an import of some repositories did not look at the others
    const filtered = await importStorage({driver, db, repositories: ['alpha/*', 'beta']})
    assert.deepEqual(filtered.removedRepositories, [])
    // nor did the shard that beta does not belong to
    const owner = shardOfRepository('beta', 2)
    const other = await importStorage({driver, db, shard: {index: 1 - owner, count: 2}})
    assert.deepEqual(other.removedRepositories, [])
    assert.deepEqual(await paths(), ['alpha-x', 'alpha/web', 'beta', 'gamma/legacy'])

    const removal = await importStorage({driver, db, shard: {index: owner, count: 2}})
    assert.deepEqual(removal.removedRepositories, ['beta'])
    assert.equal(removal.written.deleted.repositories, 1)
    assert.equal(importExitCode(removal), ExitCode.Ok)
    assert.deepEqual(await paths(), ['alpha-x', 'alpha/web', 'gamma/legacy'])
    const orphaned = await db.query(
      `SELECT 1 FROM manifests m WHERE NOT EXISTS (SELECT 1 FROM repositories r WHERE r.id = m.repository_id)`,
    )
    assert.equal(orphaned.rowCount, 0, 'its manifests went with it')
    const journal = await db.query<{
      job_id: string
      phase: string
      region: string
      key: string
      detail: {manifests: number; tags: number}
    }>(`SELECT job_id, phase, region, key, detail FROM regops_journal WHERE action = 'delete-repository' ORDER BY id`)
    assert.deepEqual(
      journal.rows.map((r) => [String(r.job_id), r.phase, r.region, r.key, r.detail.manifests, r.detail.tags]),
      [
        [removal.jobId, 'intent', 'lab', 'repositories/beta/', 4, 3],
        [removal.jobId, 'done', 'lab', 'repositories/beta/', 4, 3],
      ],
    )

    // an unsharded full import removes too, and the next run has nothing left to remove
    await rm(path.join(dir, 'repositories/gamma'), {recursive: true})
    const full = await importStorage({driver, db})
    assert.deepEqual(full.removedRepositories, ['gamma/legacy'])
    const again = await importStorage({driver, db})
    assert.deepEqual(again.removedRepositories, [])
    assert.equal(again.written.deleted.repositories, 0)

    // a listing that names no repository at all (a wrong root) removes nothing and says so
    await rm(path.join(dir, 'repositories'), {recursive: true})
    const empty = await importStorage({driver, db})
    assert.deepEqual(empty.removedRepositories, [])
    assert.deepEqual(
      empty.problems.map((p) => p.kind),
      ['vanished-kept'],
    )
    assert.equal(importExitCode(empty), ExitCode.Found)
    assert.deepEqual(await paths(), ['alpha-x', 'alpha/web'])

    // another region (a replica that may lag) lacking a repository removes nothing: the database was
    // written by this region's imports, and dropping the repository would orphan its live blobs
    const replica = await tempDir('vanished-replica')
    const replicaWriter = new LayoutWriter(new FilesystemDriver('replica', replica, 32))
    await writeMixedStore(replicaWriter)
    await rm(path.join(replica, 'repositories/alpha-x'), {recursive: true})
    const lagging = await importStorage({driver: new FilesystemDriver('replica', replica, 32), db})
    assert.deepEqual(lagging.removedRepositories, [])
    assert.ok(
      lagging.problems.some((p) => p.kind === 'vanished-kept' && /last imported from region 'lab'/.test(p.message)),
      JSON.stringify(lagging.problems),
    )
    assert.ok((await paths()).includes('alpha-x'), 'alpha-x kept')
  })

  test('bad input: corrupt link, garbage manifest, missing manifest blob, unknown media type are reported with their key; the rest is imported', async () => {
    const {dir, driver, writer} = await store('bad')
    const good = await writer.writeImage({
      repository: 'bad/repo',
      tag: 'good',
      seed: 'bad-good',
      layers: 1,
      layerSize: 200,
    })
    const other = await writer.writeImage({repository: 'clean', tag: 'v1', seed: 'clean', layers: 2, layerSize: 200})
    // a tag whose current link holds garbage
    const corruptTagKey = pathFor({kind: 'tag-current-link', repository: 'bad/repo', tag: 'broken'})
    await driver.write(corruptTagKey, Buffer.from('this is not a digest'))
    // a manifest revision of garbage bytes
    const garbage = await writer.putManifest('bad/repo', seededBytes('garbage-manifest', 300))
    // a revision link to a manifest blob that is not there
    const missing = sha256(Buffer.from('never uploaded'))
    const missingKey = pathFor({kind: 'manifest-revision-link', repository: 'bad/repo', digest: missing})
    await writer.link(missingKey, missing)
    // a manifest of a media type regops does not know (an artifact), tagged
    const artifactLayer = await writer.putBlob(seededBytes('artifact-layer', 321))
    const artifactConfig = await writer.putBlob(Buffer.from('{}'))
    const artifact = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.example.thing.manifest.v1+json',
        config: {mediaType: 'application/vnd.example.thing.config.v1+json', digest: artifactConfig, size: 2},
        layers: [{mediaType: 'application/vnd.example.thing.layer.v1', digest: artifactLayer, size: 321}],
      }),
    )
    const artifactDigest = await writer.putManifest('bad/repo', artifact, 'thing')

    const {db} = await freshDb()
    const result = await importStorage({driver, db})
    assert.deepEqual(result.failed, [])
    assert.equal(importExitCode(result), ExitCode.Found)
    const byKind = (kind: string) => result.problems.filter((p) => p.kind === kind)
    assert.deepEqual(
      byKind('corrupt-link').map((p) => p.key),
      [corruptTagKey],
    )
    assert.deepEqual(
      byKind('bad-manifest').map((p) => p.key),
      [pathFor({kind: 'blob-data', digest: garbage})],
    )
    assert.deepEqual(
      byKind('missing-manifest-blob').map((p) => p.key),
      [missingKey],
    )
    assert.deepEqual(
      byKind('unknown-media-type').map((p) => p.key),
      [pathFor({kind: 'blob-data', digest: artifactDigest})],
    )
    assert.equal(result.problemCount, 4, JSON.stringify(result.problems))
    for (const p of result.problems) assert.equal(p.repository, 'bad/repo')

    // everything else is imported
    const view = await dbView(db)
    assert.deepEqual(view.get('bad/repo')!.tags, {good: good.manifestDigest, thing: artifactDigest})
    assert.deepEqual(view.get('bad/repo')!.manifests, [good.manifestDigest, artifactDigest].sort())
    assert.deepEqual(view.get('clean')!.tags, {v1: other.manifestDigest})
    const types = await db.query<{media_type: string}>(
      `SELECT media_type FROM media_types WHERE media_type LIKE 'application/vnd.example.%' ORDER BY 1`,
    )
    assert.deepEqual(
      types.rows.map((t) => t.media_type),
      [
        'application/vnd.example.thing.config.v1+json',
        'application/vnd.example.thing.layer.v1',
        'application/vnd.example.thing.manifest.v1+json',
      ],
    )
    const artifactRow = await db.query<{config: string; layer: string}>(
      `SELECT m.configuration_blob_digest AS config, l.digest AS layer FROM manifests m JOIN layers l ON l.manifest_id = m.id AND l.repository_id = m.repository_id WHERE m.digest = $1`,
      [artifactDigest],
    )
    assert.deepEqual(artifactRow.rows, [{config: artifactConfig, layer: artifactLayer}])
    const job = await db.query<{status: string}>('SELECT status FROM regops_jobs WHERE id = $1', [result.jobId])
    assert.equal(job.rows[0].status, 'done')

    // the same through the CLI: exit 1 (found something), problems in --json
    const {url} = await freshDb()
    const config = await writeConfig(dir)
    const cli = await runCli(['import', '--config', config, '--database-url', url, '--json'])
    assert.equal(cli.code, ExitCode.Found, cli.stderr)
    assert.equal(cli.json.kind, 'import')
    assert.equal(cli.json.problemCount, 4)
    assert.equal(cli.json.manifests, 3)
  })

  test('the metadata sweep trusts only a complete import group (every shard done)', async () => {
    const {dir, driver, writer} = await store('sweep')
    const s = await writeMixedStore(writer)
    const loose = await writer.writeOrphan(undefined, 'loose', 999)
    // pushed three days ago: older than the grace period, and than the import's start
    await ageTree(dir, new Date(Date.now() - 3 * 24 * 3600_000))
    const {db} = await freshDb()
    const report = path.join(await tempDir('sweep-report'), 'candidates.jsonl')
    const sweep = () =>
      sweepBlobs({
        driver,
        db,
        strategy: 'metadata',
        mode: 'dry-run',
        minAgeMs: 24 * 3600_000,
        quarantinePrefix: '_regops/quarantine',
        logger: silentLogger,
        reportFile: report,
      })
    await importStorage({driver, db, shard: {index: 0, count: 2}, group: 'nightly'})
    await assert.rejects(sweep(), RefusedError, 'half a group is not an import')
    await importStorage({driver, db, repositories: ['beta'], group: 'partial'})
    await assert.rejects(sweep(), RefusedError, 'an import of some repositories is not an import')
    await importStorage({driver, db, shard: {index: 1, count: 2}, group: 'nightly'})
    const result = await sweep()
    const candidates = (await readFile(report, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l).digest)
      .sort()
    assert.deepEqual(candidates, [s.orphan, loose].sort())
    assert.equal(result.candidates.count, 2)
  })

  test('a repository that fails (storage error) is rolled back: exit 3, the job is failed, --resume finishes it', async () => {
    const {dir, writer} = await store('partial')
    await writeManyRepositories(writer, 6, 2)
    const broken = await writer.writeImage({
      repository: 'ns1/flaky',
      tag: 'v1',
      seed: 'flaky',
      layers: 1,
      layerSize: 100,
    })
    // A driver whose reads of one manifest blob fail as a dying S3 endpoint would (after its retries).
    const faultKey = pathFor({kind: 'blob-data', digest: broken.manifestDigest})
    let faulty = true
    class FaultyDriver extends FilesystemDriver {
      override async readSmall(key: string, limit: number): Promise<Buffer> {
        if (faulty && key === faultKey) throw new StorageError('cannot read: 503 SlowDown', {region: this.region, key})
        return super.readSmall(key, limit)
      }
    }
    const driver = new FaultyDriver('lab', dir)
    const {db} = await freshDb()
    const result = await importStorage({driver, db, repositoryConcurrency: 1})
    assert.equal(importExitCode(result), ExitCode.Partial)
    assert.deepEqual(
      result.failed.map((f) => f.repository),
      ['ns1/flaky'],
    )
    assert.match(result.failed[0].message, /503 SlowDown/)
    assert.equal(result.repositories, 6)
    const job = await db.query<{status: string; after: string}>(
      `SELECT status, checkpoint->>'after' AS after FROM regops_jobs WHERE id = $1`,
      [result.jobId],
    )
    assert.equal(job.rows[0].status, 'failed')
    // the checkpoint stops before the failed repository (listing order: 'ns1/flaky/' < 'ns1/repo-1/')
    assert.equal(job.rows[0].after, 'ns0/repo-5')
    const flaky = await db.query(
      `SELECT 1 FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.path = 'ns1/flaky'`,
    )
    assert.equal(flaky.rowCount, 0, 'nothing of the failed repository is left half-imported')

    faulty = false
    const resumed = await importStorage({driver, db, resumeJobId: result.jobId})
    assert.equal(importExitCode(resumed), ExitCode.Ok)
    assert.equal(resumed.jobId, result.jobId)
    assert.equal(resumed.resumedAfter, 'ns0/repo-5')
    assert.equal(resumed.repositories, 7)
    const {db: fresh} = await freshDb()
    await importStorage({driver, db: fresh})
    assert.deepEqual(await logicalDump(db), await logicalDump(fresh))
  })

  test('SIGTERM saves the checkpoint (exit 143); SIGKILL midway; --resume equals an uninterrupted import (real CLI)', async () => {
    const {dir, writer} = await store('kill')
    await writeManyRepositories(writer, 240, 2)
    const config = await writeConfig(dir)
    const {db, url} = await freshDb()
    const slow = ['--repository-concurrency', '1', '--concurrency', '2', '--batch-size', '1']

    /** Starts the CLI and waits until the job's checkpoint is past `beyond` (or set at all). */
    async function startAndWait(
      args: string[],
      beyond?: string,
    ): Promise<{run: ReturnType<typeof startCli>; jobId: string; after: string}> {
      const run = startCli(['import', '--config', config, '--database-url', url, '--json', ...slow, ...args])
      let exited = false
      void run.done.then(() => (exited = true))
      const deadline = Date.now() + 30_000
      while (Date.now() < deadline && !exited) {
        const r = await db.query<{id: string; after: string | null}>(
          `SELECT id, checkpoint->>'after' AS after FROM regops_jobs WHERE kind = 'import' AND status = 'running'`,
        )
        const after = r.rows[0]?.after
        if (after && (beyond === undefined || after !== beyond)) return {run, jobId: String(r.rows[0].id), after}
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      assert.fail(
        `the import finished before it could be interrupted: make the fixture larger\n${(await run.done).stderr}`,
      )
    }

    // SIGTERM: checkpoint saved, job interrupted, exit 143 with a JSON error naming the job
    const first = await startAndWait([])
    first.run.child.kill('SIGTERM')
    const terminated = await first.run.done
    assert.equal(terminated.code, ExitCode.Terminated, terminated.stderr)
    assert.equal(terminated.json?.error?.code, 'INTERRUPTED')
    const interrupted = await db.query<{status: string; after: string}>(
      `SELECT status, checkpoint->>'after' AS after FROM regops_jobs WHERE id = $1`,
      [first.jobId],
    )
    assert.equal(interrupted.rows[0].status, 'interrupted')
    assert.ok(interrupted.rows[0].after)

    // resume it, and SIGKILL it once its checkpoint has moved on
    const second = await startAndWait(['--resume', first.jobId], interrupted.rows[0].after)
    assert.equal(second.jobId, first.jobId)
    second.run.child.kill('SIGKILL')
    const killed = await second.run.done
    assert.equal(killed.signal, 'SIGKILL')
    const jobId = first.jobId
    const after = second.after
    const state = await db.query<{status: string; after: string}>(
      `SELECT status, checkpoint->>'after' AS after FROM regops_jobs WHERE id = $1`,
      [jobId],
    )
    assert.equal(state.rows[0].status, 'running')
    const partial = await db.query<{n: string}>(
      'SELECT count(*) AS n FROM repositories r WHERE EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)',
    )
    assert.ok(Number(partial.rows[0].n) < 240, `killed after ${after}, yet every repository is imported`)

    // a resume right away is refused: the heartbeat is fresh (the worker may still live)
    const refused = await runCli(['import', '--config', config, '--database-url', url, '--resume', jobId!])
    assert.equal(refused.code, ExitCode.Refused, refused.stderr)
    // the dead worker's heartbeat goes stale (STALE_HEARTBEAT_MS); simulate the wait
    await db.query(`UPDATE regops_jobs SET heartbeat_at = now() - interval '5 minutes' WHERE id = $1`, [jobId])
    const resumed = await runCli(['import', '--config', config, '--database-url', url, '--json', '--resume', jobId!])
    assert.equal(resumed.code, ExitCode.Ok, resumed.stderr)
    assert.equal(resumed.json.jobId, jobId)
    assert.ok(resumed.json.resumedAfter, 'resumed after the checkpoint')
    assert.equal(resumed.json.repositories, 240)
    const done = await db.query<{status: string}>('SELECT status FROM regops_jobs WHERE id = $1', [jobId])
    assert.equal(done.rows[0].status, 'done')

    const {db: fresh} = await freshDb()
    const uninterrupted = await importStorage({driver: new FilesystemDriver('lab', dir), db: fresh})
    assert.equal(uninterrupted.repositories, 240)
    assert.deepEqual(await logicalDump(db), await logicalDump(fresh))
  })

  test('shards 0/3, 1/3, 2/3 as three concurrent CLI processes equal one process', async () => {
    const {dir, writer} = await store('shards')
    await writeManyRepositories(writer, 60, 2)
    // shared namespaces and blobs across shards: every repository also carries the same base layer
    const config = await writeConfig(dir)
    const {db, url} = await freshDb()
    const runs = await Promise.all(
      [0, 1, 2].map((i) =>
        runCli([
          'import',
          '--config',
          config,
          '--database-url',
          url,
          '--json',
          '--shard',
          `${i}/3`,
          '--group',
          'test-group',
        ]),
      ),
    )
    for (const r of runs) assert.equal(r.code, ExitCode.Ok, r.stderr)
    const total = runs.reduce((sum, r) => sum + r.json.repositories, 0)
    assert.equal(total, 60)
    // Each process imported exactly its own repositories: the counts the shard function assigns, which
    // cover every shard (no empty shard hides a filter that drops repositories).
    const names = Array.from({length: 60}, (_, r) => `ns${r % 5}/repo-${r}`)
    const expected = [0, 1, 2].map((i) => names.filter((name) => shardOfRepository(name, 3) === i).length)
    assert.ok(
      expected.every((n) => n > 0),
      `every shard has repositories: ${expected}`,
    )
    for (const [i, r] of runs.entries()) assert.deepEqual(r.json.shard, {index: i, count: 3})
    assert.deepEqual(
      runs.map((r) => r.json.repositories),
      expected,
    )
    const jobs = await db.query<{group: string; shard_index: number; status: string}>(
      `SELECT params->>'group' AS group, shard_index, status FROM regops_jobs ORDER BY shard_index`,
    )
    assert.deepEqual(
      jobs.rows,
      [0, 1, 2].map((i) => ({group: 'test-group', shard_index: i, status: 'done'})),
    )

    const {db: single} = await freshDb()
    await importStorage({driver: new FilesystemDriver('lab', dir), db: single})
    assert.deepEqual(await logicalDump(db), await logicalDump(single))
  })
})

describe('regops import against docker-registry 2.8 (what the registry API serves)', () => {
  /** Shared layers, Docker and OCI images, a Docker list and an OCI index, two tags on one manifest, an untagged manifest, a deleted manifest, an orphan upload. */
  async function populate(url: string): Promise<{deleted: string}> {
    const shared = randomBlob(3000, 'import-shared')
    const v1 = await pushImage(url, 'library/web', 'v1', {layers: [shared, randomBlob(1000, 'web-v1')], seed: 'web-v1'})
    await pushImage(url, 'library/web', 'v2', {
      layers: [shared, randomBlob(1000, 'web-v2')],
      seed: 'web-v2',
      mediaType: 'oci',
    })
    await pushImage(url, 'library/web', undefined, {layers: [randomBlob(500, 'web-untagged')], seed: 'web-untagged'})
    const v1Bytes = (await getManifest(url, 'library/web', 'v1'))!
    assert.equal(v1Bytes.digest, v1.manifestDigest)
    await fetch(`${url}/v2/library/web/manifests/stable`, {
      method: 'PUT',
      headers: {'Content-Type': v1.manifestMediaType},
      body: v1.manifestBytes,
    }).then((r) => assert.equal(r.status, 201))
    const amd = await pushImage(url, 'team/multi', undefined, {
      layers: [shared, randomBlob(700, 'amd')],
      seed: 'amd',
      platform: {os: 'linux', architecture: 'amd64'},
    })
    const arm = await pushImage(url, 'team/multi', undefined, {
      layers: [shared, randomBlob(700, 'arm')],
      seed: 'arm',
      platform: {os: 'linux', architecture: 'arm64'},
      mediaType: 'oci',
    })
    await pushIndex(url, 'team/multi', 'latest', [amd, arm], 'oci')
    await pushIndex(url, 'team/multi', 'docker-list', [amd, arm], 'docker')
    const doomed = await pushImage(url, 'team/old', 'gone', {
      layers: [shared, randomBlob(900, 'doomed')],
      seed: 'doomed',
    })
    await pushImage(url, 'team/old', 'kept', {layers: [randomBlob(800, 'kept')], seed: 'kept'})
    await deleteManifest(url, 'team/old', doomed.manifestDigest)
    await uploadOrphanBlob(url, 'team/old', 1200, 'import-orphan')
    return {deleted: doomed.manifestDigest}
  }

  async function compareWithRegistry(db: Db, url: string, deleted: string): Promise<void> {
    const catalog = await listCatalog(url)
    const view = await dbView(db)
    assert.deepEqual([...view.keys()].sort(), catalog)
    for (const repo of catalog) {
      const tags = await registryTags(url, repo)
      assert.deepEqual(Object.keys(view.get(repo)!.tags).sort(), tags, `tags of ${repo}`)
      for (const tag of tags)
        assert.equal(view.get(repo)!.tags[tag], await headManifest(url, repo, tag), `${repo}:${tag}`)
      for (const digest of view.get(repo)!.manifests)
        assert.equal(await headManifest(url, repo, digest), digest, `${repo}@${digest}`)
    }
    assert.equal(await headManifest(url, 'team/old', deleted), undefined)
    assert.ok(!view.get('team/old')!.manifests.includes(deleted))
    // index children as the registry serves them = manifest_references
    for (const tag of ['latest', 'docker-list']) {
      const index = (await getManifest(url, 'team/multi', tag))!
      const children = (index.json.manifests as Array<{digest: string}>).map((m) => m.digest).sort()
      const edges = await db.query<{child: string}>(
        `SELECT c.digest AS child FROM manifest_references mr JOIN manifests p ON p.id = mr.parent_id AND p.repository_id = mr.repository_id
           JOIN manifests c ON c.id = mr.child_id AND c.repository_id = mr.repository_id WHERE p.digest = $1 ORDER BY 1`,
        [index.digest],
      )
      assert.deepEqual(
        edges.rows.map((e) => e.child),
        children,
      )
    }
    const missing = await db.query(
      `SELECT digest FROM layers UNION SELECT configuration_blob_digest FROM manifests WHERE configuration_blob_digest IS NOT NULL EXCEPT SELECT digest FROM blobs`,
    )
    assert.equal(missing.rowCount, 0)
  }

  test('filesystem storage: tags and digests in the database equal what the registry serves', async () => {
    const root = await tempDir('registry-fs')
    const registry: RegistryServer = await startRegistry({storage: {kind: 'filesystem', root}})
    cleanups.push(() => registry.stop())
    const {deleted} = await populate(registry.url)
    const config = await writeConfig(path.join(root, 'docker/registry/v2'))
    const {db, url} = await freshDb()
    const run = await runCli(['import', '--config', config, '--database-url', url, '--json'])
    assert.equal(run.code, ExitCode.Ok, run.stderr + JSON.stringify(run.json?.problems))
    assert.equal(run.json.repositories, 3)
    await compareWithRegistry(db, registry.url, deleted)
  })

  test('S3 storage (radosgw): tags and digests in the database equal what the registry serves', async () => {
    // npm test installs radosgw (scripts/install-test-deps.sh): missing, it is a failure, not a skip.
    assert.ok(existsSync('/usr/bin/radosgw'), 'radosgw is not installed: run scripts/install-test-deps.sh')
    const rgw = await sharedRadosgw()
    const bucket = await rgw.newBucket('import')
    const registry = await startRegistry({
      storage: {
        kind: 's3',
        endpoint: rgw.endpoint,
        bucket,
        accessKeyId: rgw.accessKeyId,
        secretAccessKey: rgw.secretAccessKey,
        region: rgw.region,
      },
    })
    cleanups.push(() => registry.stop())
    const {deleted} = await populate(registry.url)
    const dir = await tempDir('config-s3')
    const config = path.join(dir, 'regops.yaml')
    await writeFile(
      config,
      `regions:\n  s3:\n    url: s3://${bucket}/docker/registry/v2\n    endpoint: ${rgw.endpoint}\n    accessKeyId: ${rgw.accessKeyId}\n    secretAccessKey: ${rgw.secretAccessKey}\n    checksums: when_required\n`,
    )
    const {db, url} = await freshDb()
    const run = await runCli(['import', '--config', config, '--database-url', url, '--json'])
    assert.equal(run.code, ExitCode.Ok, run.stderr + JSON.stringify(run.json?.problems))
    assert.equal(run.json.region, 's3')
    await compareWithRegistry(db, registry.url, deleted)
    // a second run over S3 changes nothing
    const before = await fullDump(db)
    const again = await runCli(['import', '--config', config, '--database-url', url, '--json'])
    assert.equal(again.code, ExitCode.Ok, again.stderr)
    assert.deepEqual(await fullDump(db), before)
  })
})

async function ageTree(dir: string, when: Date): Promise<void> {
  for (const entry of await readdir(dir, {withFileTypes: true})) {
    const file = path.join(dir, entry.name)
    if (entry.isDirectory()) await ageTree(file, when)
    await utimes(file, when, when)
  }
}

/** n repositories in a few namespaces, each with `images` tagged images sharing a base layer. */
async function writeManyRepositories(writer: LayoutWriter, n: number, images: number): Promise<void> {
  const base = seededBytes('many-base', 2048)
  const work: Array<Promise<unknown>> = []
  for (let r = 0; r < n; r++) {
    const repository = `ns${r % 5}/repo-${r}`
    for (let i = 0; i < images; i++) {
      work.push(
        writer.writeImage({
          repository,
          tag: `t${i}`,
          seed: `${repository}:${i}`,
          layers: 1,
          layerSize: 64,
          sharedLayers: [base],
          oci: i % 2 === 1,
        }),
      )
    }
  }
  await Promise.all(work)
}

async function writeConfig(root: string): Promise<string> {
  const dir = await tempDir('config')
  const file = path.join(dir, 'regops.yaml')
  await writeFile(file, `regions:\n  lab:\n    url: file://${root}\n`)
  return file
}

before(async () => {
  await sharedPostgres()
})
