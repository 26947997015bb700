// --delete-untagged (issue 8 §6): the re-check before acting follows nested indexes to any depth and
// referrers, as the mark does; referrers of kept manifests are kept unless --delete-referrers; under
// --shard each untagged manifest belongs to the shard that owns its repository. Changes between plan and
// act are made at a deterministic point: the job stops at its first re-check (a hook that throws), the
// store is changed, and --resume re-checks the pending candidates.
import {after, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {LayoutWriter, seededBytes, type WrittenImage} from '../../../src/lib/sample/layout-writer.js'
import {pathFor} from '../../../src/lib/storage/layout.js'
import {MediaTypes} from '../../../src/lib/storage/manifest.js'
import {ageTree} from '../../../src/lib/quickstart/sample.js'
import {shardOfRepository} from '../../../src/lib/metadata/import.js'
import {sweepBlobs} from '../../../src/lib/sweep/sweep-blobs.js'
import {Logger} from '../../../src/lib/output/logger.js'

const logger = new Logger('silent')
const DAY = 86_400_000
const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

async function freshDb(): Promise<Db> {
  const url = await (await sharedPostgres()).createDatabase()
  const db = openDatabase(url, {max: 4})
  cleanups.push(() => db.close())
  await migrateUp(db)
  return db
}

async function store() {
  const root = await mkdtemp(join(tmpdir(), 'regops-untagged-'))
  cleanups.push(() => rm(root, {recursive: true, force: true}))
  const driver = new FilesystemDriver('local', root)
  return {root, driver, w: new LayoutWriter(driver)}
}

const settings = {
  strategy: 'storage' as const,
  minAgeMs: DAY,
  quarantinePrefix: '_regops/quarantine',
  logger,
  deleteUntagged: true,
  // small stores where the planted orphans are most of the blobs, on purpose
  allowMassDelete: true,
}
const revision = (repository: string, digest: string) => pathFor({kind: 'manifest-revision-link', repository, digest})
const blob = (digest: string) => pathFor({kind: 'blob-data', digest})

/** An OCI index over manifests already in the repository (each may be an index itself). */
async function writeIndexOf(w: LayoutWriter, repository: string, children: string[], tag?: string): Promise<string> {
  const manifests = await Promise.all(
    children.map(async (digest) => ({
      mediaType: MediaTypes.ociManifest,
      digest,
      size: (await w.driver.stat(blob(digest)))!.size,
    })),
  )
  return w.putManifest(
    repository,
    Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests})),
    tag,
  )
}

/** A referrer (a signature or an SBOM): an OCI manifest whose subject is `subject`, with one layer of its own. */
async function writeReferrer(
  w: LayoutWriter,
  repository: string,
  subject: string,
  seed: string,
): Promise<{digest: string; layer: string}> {
  const empty = await w.putBlob(Buffer.from('{}'))
  const content = seededBytes(`${seed}:referrer`, 200)
  const layer = await w.putBlob(content)
  await w.linkLayer(repository, layer)
  const payload = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json',
    config: {mediaType: MediaTypes.ociEmpty, digest: empty, size: 2},
    layers: [{mediaType: 'application/octet-stream', digest: layer, size: content.length}],
    subject: {mediaType: MediaTypes.ociManifest, digest: subject, size: (await w.driver.stat(blob(subject)))!.size},
  }
  return {digest: await w.putManifest(repository, Buffer.from(JSON.stringify(payload))), layer}
}

async function deletedManifests(db: Db, jobId: string): Promise<string[]> {
  const rows = await db.query(
    `SELECT digest FROM regops_journal WHERE job_id = $1 AND action = 'delete-manifest' AND phase = 'done' ORDER BY digest`,
    [jobId],
  )
  return rows.rows.map((r) => r.digest as string)
}

const image = (w: LayoutWriter, repository: string, seed: string, tag?: string): Promise<WrittenImage> =>
  w.writeImage({repository, tag, seed, layers: 1, layerSize: 300, oci: true})

describe('--delete-untagged: referrers', () => {
  test('signatures and SBOMs of a tagged image (and a signature of the SBOM) are kept; --delete-referrers removes them', async () => {
    for (const deleteReferrers of [false, true]) {
      const {root, w, driver} = await store()
      const db = await freshDb()
      const tagged = await image(w, 'team/app', 'ref-tagged', 'v1')
      const untagged = await image(w, 'team/app', 'ref-untagged')
      const signature = await writeReferrer(w, 'team/app', tagged.manifestDigest, 'sig')
      const sbom = await writeReferrer(w, 'team/app', tagged.manifestDigest, 'sbom')
      const sbomSignature = await writeReferrer(w, 'team/app', sbom.digest, 'sbom-sig')
      await ageTree(root, new Date(Date.now() - 3 * DAY))
      const result = await sweepBlobs({...settings, driver, db, mode: 'delete', deleteReferrers})
      const referrers = [signature, sbom, sbomSignature]
      const expected = [untagged.manifestDigest, ...(deleteReferrers ? referrers.map((r) => r.digest) : [])].sort()
      assert.deepEqual(await deletedManifests(db, result.jobId!), expected, `deleteReferrers=${deleteReferrers}`)
      assert.equal(result.acted.manifestsDeleted, expected.length)
      for (const r of referrers) {
        assert.equal(
          Boolean(await driver.stat(revision('team/app', r.digest))),
          !deleteReferrers,
          `referrer ${r.digest} revision link`,
        )
        assert.equal(Boolean(await driver.stat(blob(r.layer))), !deleteReferrers, `referrer ${r.digest}'s layer`)
      }
      for (const d of tagged.blobs) assert.ok(await driver.stat(blob(d)), `the tagged image's ${d} stays`)
      for (const d of untagged.blobs)
        assert.equal(await driver.stat(blob(d)), undefined, `the untagged image's ${d} goes`)
    }
  })
})

describe('--delete-untagged: the re-check before acting decides as the mark does', () => {
  test('tagged between plan and act: a nested index reaches its child at depth 2, and a referrer of a newly tagged image is kept', async () => {
    const {root, w, driver} = await store()
    const db = await freshDb()
    await image(w, 'team/app', 'nest-base', 'v1')
    const child = await image(w, 'team/app', 'nest-child')
    const inner = await writeIndexOf(w, 'team/app', [child.manifestDigest])
    const subject = await image(w, 'team/app', 'nest-subject')
    const signature = await writeReferrer(w, 'team/app', subject.manifestDigest, 'nest-sig')
    const stillUntagged = await image(w, 'team/app', 'nest-still')
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    const stop = new Error('stopped at the first re-check')
    await assert.rejects(
      sweepBlobs({...settings, driver, db, mode: 'delete', hooks: {afterRecheck: () => Promise.reject(stop)}}),
      /stopped at the first re-check/,
    )
    const job = (await db.query(`SELECT id FROM regops_jobs ORDER BY id DESC LIMIT 1`)).rows[0].id as string
    const pending = await db.query(
      `SELECT digest FROM regops_sweep_candidates WHERE job_id = $1 AND kind = 'manifest' AND state = 'pending' ORDER BY digest`,
      [job],
    )
    const planned = [
      child.manifestDigest,
      inner,
      subject.manifestDigest,
      signature.digest,
      stillUntagged.manifestDigest,
    ].sort()
    assert.deepEqual(
      pending.rows.map((r) => r.digest),
      planned,
      'the plan found five untagged manifests, none acted on',
    )

    // Meanwhile: a tag on an index over the inner index (the child is two levels down), and a tag on the subject.
    const outer = await writeIndexOf(w, 'team/app', [inner], 'multi')
    await w.tag('team/app', 'signed', subject.manifestDigest)
    const resumed = await sweepBlobs({driver, db, logger, resume: job})
    assert.deepEqual(await deletedManifests(db, job), [stillUntagged.manifestDigest])
    const kept = await db.query(
      `SELECT digest FROM regops_sweep_candidates WHERE job_id = $1 AND kind = 'manifest' AND state = 'skipped' ORDER BY digest`,
      [job],
    )
    assert.deepEqual(
      kept.rows.map((r) => r.digest),
      planned.filter((d) => d !== stillUntagged.manifestDigest),
    )
    assert.equal(resumed.acted.manifestsDeleted, 1)
    for (const d of [child.manifestDigest, inner, outer, subject.manifestDigest, signature.digest]) {
      assert.ok(await driver.stat(blob(d)), `${d} stays`)
    }
    for (const d of [...child.blobs, ...subject.blobs, signature.layer])
      assert.ok(await driver.stat(blob(d)), `${d}, referenced by a kept manifest, stays`)
    for (const d of stillUntagged.blobs) assert.equal(await driver.stat(blob(d)), undefined)
  })
})

describe('--delete-untagged under --shard', () => {
  test('each untagged manifest is planned and deleted once, by the shard that owns its repository; the others keep what it references', async () => {
    const {root, w, driver} = await store()
    const db = await freshDb()
    // Repositories on both shards of two.
    const repos = ['a/one', 'b/two', 'c/three', 'd/four', 'e/five', 'f/six']
    const owners = new Map(repos.map((r) => [r, shardOfRepository(r, 2)]))
    assert.ok(new Set(owners.values()).size === 2, `repositories on both shards: ${JSON.stringify([...owners])}`)
    const untagged = new Map<string, WrittenImage>()
    for (const repository of repos) {
      await image(w, repository, `shard-tagged-${repository}`, 'v1')
      untagged.set(repository, await image(w, repository, `shard-untagged-${repository}`))
    }
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    const reports = [0, 1].map((i) => join(root, '..', `untagged-shard-${i}-${process.pid}.jsonl`))
    cleanups.push(async () => void (await Promise.all(reports.map((r) => rm(r, {force: true})))))
    for (const index of [0, 1])
      await sweepBlobs({...settings, driver, mode: 'dry-run', shard: {index, count: 2}, reportFile: reports[index]})
    for (const index of [0, 1]) {
      const lines = (await readFile(reports[index], 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
      const manifests = lines
        .filter((l) => l.kind === 'manifest')
        .map((l) => `${l.repository} ${l.digest}`)
        .sort()
      const owned = repos
        .filter((r) => owners.get(r) === index)
        .map((r) => `${r} ${untagged.get(r)!.manifestDigest}`)
        .sort()
      assert.deepEqual(manifests, owned, `shard ${index} plans exactly its repositories' untagged manifests`)
    }
    // Shard 0 acts: it deletes its own, and leaves shard 1's manifests and everything they reference.
    const first = await sweepBlobs({...settings, driver, db, mode: 'delete', shard: {index: 0, count: 2}})
    const mine = repos.filter((r) => owners.get(r) === 0)
    assert.deepEqual(await deletedManifests(db, first.jobId!), mine.map((r) => untagged.get(r)!.manifestDigest).sort())
    for (const repository of repos.filter((r) => owners.get(r) === 1)) {
      const other = untagged.get(repository)!
      assert.ok(
        await driver.stat(revision(repository, other.manifestDigest)),
        `${repository}'s untagged manifest is shard 1's`,
      )
      for (const d of other.blobs)
        assert.ok(await driver.stat(blob(d)), `${d} of ${repository} stays while its manifest does`)
    }
  })
})
