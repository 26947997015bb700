// The sweep's rails for a tired operator: a store the mark cannot see is not "all orphans", a mass
// deletion needs to be asked for, repeated problems are counted rather than repeated, and the progress
// line moves while the listing runs. Filesystem stores and one radosgw bucket, real PostgreSQL.
import {after, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {existsSync} from 'node:fs'
import {mkdtemp, rename, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {radosgwRegion, sharedRadosgw} from '../../helpers/radosgw.js'
import {runCli} from '../../helpers/cli.js'
import {openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {S3Driver} from '../../../src/lib/storage/s3.js'
import type {StorageDriver} from '../../../src/lib/storage/driver.js'
import {LayoutWriter, sha256} from '../../../src/lib/sample/layout-writer.js'
import {writeSampleRegistry, ageTree} from '../../../src/lib/quickstart/sample.js'
import {PROBLEMS_LOGGED_PER_KIND, sweepBlobs, type SweepProgress} from '../../../src/lib/sweep/sweep-blobs.js'
import {journalIntents} from '../../../src/lib/sweep/journal.js'
import {Logger} from '../../../src/lib/output/logger.js'
import {RefusedError} from '../../../src/lib/errors.js'

const logger = new Logger('silent')
const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

const DAY = 86_400_000
const base = {strategy: 'storage' as const, minAgeMs: DAY, quarantinePrefix: '_regops/quarantine', logger}

async function freshDb(): Promise<{db: Db; url: string}> {
  const url = await (await sharedPostgres()).createDatabase()
  const db = openDatabase(url, {max: 4})
  cleanups.push(() => db.close())
  await migrateUp(db)
  return {db, url}
}

async function tempDir(label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `regops-${label}-`))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  return dir
}

async function allFiles(driver: StorageDriver): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for await (const o of driver.list('')) out.set(o.key, sha256(await driver.readSmall(o.key, 1 << 24)))
  return out
}

/** A store with `referenced` blobs in use (one image) and `orphans` unreferenced ones, all three days old. */
async function storeWith(orphans: number): Promise<{root: string; driver: FilesystemDriver; writer: LayoutWriter}> {
  const root = await tempDir('rails-store')
  const driver = new FilesystemDriver('local', root)
  const writer = new LayoutWriter(driver)
  // manifest, config and two layers: four referenced blobs
  await writer.writeImage({repository: 'app/web', tag: 'v1', seed: 'rails-web', layers: 2, layerSize: 256})
  await addOrphans(root, writer, orphans, 'first')
  return {root, driver, writer}
}

async function addOrphans(root: string, writer: LayoutWriter, count: number, label: string): Promise<void> {
  for (let i = 0; i < count; i++) await writer.writeOrphan(undefined, `rails-${label}-${i}`, 100)
  await ageTree(root, new Date(Date.now() - 3 * DAY))
}

describe('a store the mark cannot see is not all orphans', () => {
  test('filesystem, repositories/ renamed: acting exits 4 and touches nothing; the dry-run says why', async () => {
    const root = await tempDir('blind')
    const driver = new FilesystemDriver('local', root)
    await writeSampleRegistry(driver, root)
    await rename(join(root, 'repositories'), join(root, 'repositories.old'))
    const {url} = await freshDb()
    const config = join(root, '..', `${root.split('/').pop()}.yaml`)
    cleanups.push(() => rm(config, {force: true}))
    await writeFile(config, `regions:\n  local: {url: "file://${root}"}\ndatabase:\n  url: ${url}\n`)
    const before = await allFiles(driver)
    // --allow-mass-delete: the blind mark alone must stop it, not the mass-deletion guard.
    for (const mode of ['--delete', '--quarantine']) {
      const acted = await runCli([
        'sweep',
        'blobs',
        '--config',
        config,
        mode,
        '--allow-mass-delete',
        '--report',
        join(root, '..', 'blind.jsonl'),
        '--json',
      ])
      assert.equal(acted.code, 4, acted.stdout + acted.stderr)
      assert.match(acted.json.error.message, /mark is incomplete.*empty-mark at repositories\//)
    }
    assert.deepEqual(await allFiles(driver), before, 'nothing was touched')
    const dry = await runCli([
      'sweep',
      'blobs',
      '--config',
      config,
      '--allow-mass-delete',
      '--report',
      join(root, '..', 'blind.jsonl'),
      '--json',
    ])
    assert.equal(dry.code, 1, dry.stderr)
    assert.equal(dry.json.markComplete, false)
    assert.equal(dry.json.problems[0].kind, 'empty-mark')
    assert.match(
      dry.json.problems[0].message,
      /no repository under repositories\/ .* while the blob store holds 26 blobs/,
    )
    assert.equal(dry.json.wouldRefuse.length, 1)
    assert.match(dry.json.wouldRefuse[0], /mark is incomplete/)
    const text = await runCli(['sweep', 'blobs', '--config', config, '--report', join(root, '..', 'blind.jsonl')])
    assert.match(text.stdout, /acting would be refused \(exit 4\)\tthe mark is incomplete/)
    assert.doesNotMatch(text.stdout, /act with --quarantine or --delete/)
  })

  test('repositories but no manifest revision: incomplete too', async () => {
    const {root, driver} = await storeWith(2)
    await rm(join(root, 'repositories', 'app', 'web', '_manifests'), {recursive: true})
    const result = await sweepBlobs({...base, driver, mode: 'dry-run'})
    assert.equal(result.markComplete, false)
    assert.match(result.problems[0].message, /1 repositories but not one manifest revision/)
  })

  test('radosgw, no repositories/ in the bucket: acting exits 4 and deletes nothing', async () => {
    assert.ok(existsSync('/usr/bin/radosgw'), 'radosgw is not installed: run scripts/install-test-deps.sh')
    const rgw = await sharedRadosgw()
    const bucket = await rgw.newBucket('blind-mark')
    const driver = new S3Driver(radosgwRegion(rgw, bucket, {name: 'rgw'}))
    cleanups.push(() => driver.close())
    await writeSampleRegistry(driver, undefined)
    const repositoryKeys: string[] = []
    for await (const o of driver.list('repositories/')) repositoryKeys.push(o.key)
    await driver.deleteMany(repositoryKeys)
    const before = await allFiles(driver)
    const {url} = await freshDb()
    const dir = await tempDir('blind-s3')
    const config = join(dir, 'regops.yaml')
    await writeFile(
      config,
      `regions:\n  rgw: {url: "s3://${bucket}/docker/registry/v2", endpoint: "${rgw.endpoint}", region: us-east-1, checksums: when_required, ` +
        `accessKeyId: "${rgw.accessKeyId}", secretAccessKey: "${rgw.secretAccessKey}"}\ndatabase:\n  url: ${url}\n`,
    )
    // --min-age 0s: the sample is new, and every blob would be a candidate.
    const args = [
      'sweep',
      'blobs',
      '--config',
      config,
      '--min-age',
      '0s',
      '--force',
      '--report',
      join(dir, 'r.jsonl'),
      '--json',
    ]
    const acted = await runCli([...args, '--delete', '--allow-mass-delete'])
    assert.equal(acted.code, 4, acted.stdout + acted.stderr)
    assert.deepEqual(await allFiles(driver), before, 'nothing was deleted')
    const dry = await runCli(args)
    assert.equal(dry.json.markComplete, false)
    assert.equal(dry.json.problemKinds['empty-mark'], 1)
    assert.ok(dry.json.wouldRefuse.some((r: string) => /mark is incomplete/.test(r)))
  })
})

describe('the mass-deletion guard', () => {
  const refusedFor = (pattern: RegExp) => (e: unknown) =>
    e instanceof RefusedError && e.exitCode === 4 && pattern.test(e.message)

  test('60% orphans: refused without the flag, the dry-run says so; --allow-mass-delete acts', async () => {
    const {driver} = await storeWith(6)
    const {db} = await freshDb()
    const before = await allFiles(driver)
    await assert.rejects(
      sweepBlobs({...base, driver, db, mode: 'delete'}),
      refusedFor(/6 of 10 scanned blobs \(60%\).*10% the first acting sweep of region local/),
    )
    await assert.rejects(sweepBlobs({...base, driver, db, mode: 'quarantine'}), refusedFor(/60%/))
    assert.deepEqual(await allFiles(driver), before, 'nothing was touched')
    const dry = await sweepBlobs({...base, driver, db, mode: 'dry-run'})
    assert.equal(dry.wouldRefuse.length, 1)
    assert.match(dry.wouldRefuse[0], /6 of 10 scanned blobs \(60%\)/)
    // Without a database the dry-run cannot know whether a sweep acted before: it says which share it assumed.
    const noDb = await sweepBlobs({...base, driver, mode: 'dry-run'})
    assert.match(noDb.wouldRefuse[0], /no database to tell/)
    // A --max-deletes that would refuse is said too (and an explicit cap replaces the share guard).
    const capped = await sweepBlobs({...base, driver, mode: 'dry-run', maxDeletes: 5})
    assert.deepEqual(capped.wouldRefuse, ['6 candidates (0 of them manifests) exceed --max-deletes 5'])
    const allowed = await sweepBlobs({...base, driver, db, mode: 'delete', allowMassDelete: true})
    assert.equal(allowed.acted.deleted, 6)
  })

  test('10% on the first acting sweep of a region, 50% once one has finished; an explicit cap replaces the guard', async () => {
    const {root, driver, writer} = await storeWith(2)
    const {db} = await freshDb()
    // 2 of 6 (33%): too many for a first sweep...
    await assert.rejects(
      sweepBlobs({...base, driver, db, mode: 'delete'}),
      refusedFor(/2 of 6 scanned blobs \(33.3%\)/),
    )
    // ...unless the operator states a cap.
    assert.equal((await sweepBlobs({...base, driver, db, mode: 'delete', maxDeletes: 10})).acted.deleted, 2)
    // A sweep of this region has finished: a third is ordinary now.
    await addOrphans(root, writer, 2, 'second')
    const dry = await sweepBlobs({...base, driver, db, mode: 'dry-run'})
    assert.deepEqual(dry.wouldRefuse, [])
    assert.equal((await sweepBlobs({...base, driver, db, mode: 'delete'})).acted.deleted, 2)
    // and more than half is not.
    await addOrphans(root, writer, 6, 'third')
    await assert.rejects(
      sweepBlobs({...base, driver, db, mode: 'delete'}),
      refusedFor(/6 of 10 scanned blobs \(60%\) are candidates, more than the 50% a sweep acts on/),
    )
  })
})

describe('repeated problems are counted, not repeated', () => {
  test('50 garbage manifests: a few warning lines and one count, not 50 lines', async () => {
    const {root, writer} = await storeWith(0)
    for (let i = 0; i < 50; i++) await writer.putManifest('app/garbage', Buffer.from(`not a manifest ${i}`))
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    const config = join(await tempDir('garbage'), 'regops.yaml')
    await writeFile(config, `regions:\n  local: {url: "file://${root}"}\n`)
    const run = await runCli([
      'sweep',
      'blobs',
      '--config',
      config,
      '--report',
      join(root, '..', 'garbage.jsonl'),
      '--json',
    ])
    assert.equal(run.code, 1, run.stderr)
    assert.equal(run.json.problemCount, 50)
    assert.deepEqual(run.json.problemKinds, {'bad-manifest': 50})
    const warnings = run.stderr.split('\n').filter((line) => line.includes('"level":"warn"'))
    const about = warnings.filter((line) => line.includes('bad-manifest'))
    assert.equal(about.length, PROBLEMS_LOGGED_PER_KIND + 1, about.join('\n'))
    assert.match(about.at(-1)!, /… and 45 more problems of kind bad-manifest/)
    assert.ok(warnings.length <= PROBLEMS_LOGGED_PER_KIND + 2, warnings.join('\n'))
  })
})

describe('the progress line', () => {
  test("shows the listing's own count before any prefix is merged", async () => {
    const {driver} = await storeWith(40)
    const events: SweepProgress[] = []
    const result = await sweepBlobs({...base, driver, mode: 'dry-run', onProgress: (p) => events.push({...p})})
    const firstMerge = events.findIndex((p) => p.phase === 'plan')
    assert.ok(firstMerge > 0)
    const listedBeforeMerge = Math.max(...events.slice(0, firstMerge).map((p) => p.listed))
    assert.equal(listedBeforeMerge, result.scanned.blobs, 'every listed blob was counted while the mark ran')
    assert.ok(events.slice(0, firstMerge).every((p) => p.scanned === 0))
  })
})

describe('journal', () => {
  test('newest entries first by default, --oldest-first to reverse, --limit keeps the newest', async () => {
    const {db, url} = await freshDb()
    const keys = Array.from({length: 5}, (_, i) => `blobs/sha256/0${i}/entry-${i}/data`)
    for (const key of keys)
      await journalIntents(db, null, [{action: 'delete', region: 'local', key, size: 1, detail: {}}])
    const newest = await runCli(['journal', '--database-url', url, '--limit', '2', '--json'])
    assert.equal(newest.code, 0, newest.stderr)
    assert.deepEqual(
      newest.json.entries.map((e: {key: string}) => e.key),
      [keys[4], keys[3]],
    )
    const oldest = await runCli(['journal', '--database-url', url, '--limit', '2', '--oldest-first', '--json'])
    assert.deepEqual(
      oldest.json.entries.map((e: {key: string}) => e.key),
      [keys[0], keys[1]],
    )
  })
})
