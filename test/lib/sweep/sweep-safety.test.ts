// Sweep safety on a live registry (issue 8): the registry's blob-descriptor cache, a crash between
// intent and action, a push inside the re-check-to-action window, the storage's clock, one actor per
// region, and quarantine copies per job. Interleavings are held at the act phase's hooks, never raced.
import {after, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {startRegistry, type RegistryServer} from '../../helpers/registry.js'
import {startRedis} from '../../helpers/redis.js'
import {startRadosgw, radosgwRegion} from '../../helpers/radosgw.js'
import {isStat, startFaultProxy} from '../../helpers/fault-proxy.js'
import {blobExists, deleteManifest, pullImage, pushImage, randomBlob, uploadOrphanBlob} from '../../helpers/images.js'
import {runCli} from '../../helpers/cli.js'
import {ageTree} from '../../../src/lib/quickstart/sample.js'
import {openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {S3Driver} from '../../../src/lib/storage/s3.js'
import {pathFor} from '../../../src/lib/storage/layout.js'
import {sweepBlobs} from '../../../src/lib/sweep/sweep-blobs.js'
import {jobQuarantineKey} from '../../../src/lib/sweep/act.js'
import {purgeQuarantine, restoreQuarantine} from '../../../src/lib/sweep/restore-purge.js'
import {exitCode as sweepExitCode} from '../../../src/formatters/sweep-blobs.js'
import {Logger} from '../../../src/lib/output/logger.js'
import {RefusedError, RegopsError} from '../../../src/lib/errors.js'

const logger = new Logger('silent')
const DAY = 86_400_000
const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  return dir
}

async function freshDb(): Promise<{db: Db; url: string}> {
  const url = await (await sharedPostgres()).createDatabase()
  const db = openDatabase(url, {max: 6})
  cleanups.push(() => db.close())
  await migrateUp(db)
  return {db, url}
}

/** A registry on the filesystem, regops' driver on the same tree, and a database. */
async function liveRegistry(cache?: 'inmemory' | {redis: string}) {
  const dir = await tempDir('regops-safety-')
  const root = join(dir, 'storage')
  const registry = await startRegistry({storage: {kind: 'filesystem', root}, cache})
  cleanups.push(() => registry.stop())
  // One image the tests never delete: a registry with no manifest at all is one the mark cannot see (acting is refused).
  await pushImage(registry.url, 'kept/base', 'v1', {layers: 1, seed: 'safety-kept'})
  const driver = new FilesystemDriver('main', join(root, 'docker', 'registry', 'v2'))
  const {db, url} = await freshDb()
  return {dir, root, registry, driver, db, dbUrl: url}
}

async function assertPulls(registry: RegistryServer, repo: string, tag: string): Promise<void> {
  const pulled = await pullImage(registry.url, repo, tag)
  assert.ok(pulled.ok, `${repo}:${tag} pulls in full: ${pulled.errors.join('; ')}`)
}

const settings = {
  strategy: 'storage' as const,
  minAgeMs: DAY,
  quarantinePrefix: '_regops/quarantine',
  logger,
  allowMassDelete: true,
}
const blobKey = (digest: string) => pathFor({kind: 'blob-data', digest})

describe('the registry blob-descriptor cache', () => {
  test('redis: a manifest deleted, swept with --delete, pushed again with HEAD first: pulls in full', async () => {
    const redis = await startRedis()
    cleanups.push(() => redis.stop())
    const {dir, registry, dbUrl} = await liveRegistry({redis: redis.addr})
    const v0 = await pushImage(registry.url, 'team/app', 'v0', {layers: 2, seed: 'cache-v0'})
    await pushImage(registry.url, 'team/app', 'v1', {layers: 2, seed: 'cache-v1'})
    await deleteManifest(registry.url, 'team/app', v0.manifestDigest)
    // Lookups fill the cache, as clients' HEADs do on a busy registry.
    for (const digest of [v0.configDigest, ...v0.layerDigests])
      assert.equal(await blobExists(registry.url, 'team/app', digest), true)
    const config = join(dir, 'regops.yaml')
    await writeFile(
      config,
      `regions:\n  main: {url: "file://${join(dir, 'storage', 'docker', 'registry', 'v2')}"}\ndatabase:\n  url: ${dbUrl}\nregistry:\n  cache: ${redis.url}\n`,
    )
    const swept = await runCli([
      'sweep',
      'blobs',
      '--config',
      config,
      '--min-age',
      '0',
      '--force',
      '--delete',
      '--allow-mass-delete',
      '--report',
      join(dir, 'r.jsonl'),
      '--json',
    ])
    assert.equal(swept.code, 0, swept.stdout + swept.stderr)
    assert.ok(swept.json.acted.deleted >= 3, `deleted ${swept.json.acted.deleted}`)
    assert.equal(swept.json.registryCache, 'redis')
    await pushImage(registry.url, 'team/app', 'v0', {layers: 2, seed: 'cache-v0'})
    await assertPulls(registry, 'team/app', 'v0')
    await assertPulls(registry, 'team/app', 'v1')
  })

  test('inmemory: acting is refused (exit 4) unless --registry-read-only, and then says to restart the registry', async () => {
    const {dir, registry, dbUrl} = await liveRegistry('inmemory')
    const v0 = await pushImage(registry.url, 'team/app', 'v0', {layers: 1, seed: 'inmem-v0'})
    await deleteManifest(registry.url, 'team/app', v0.manifestDigest)
    const config = join(dir, 'regops.yaml')
    await writeFile(
      config,
      `regions:\n  main: {url: "file://${join(dir, 'storage', 'docker', 'registry', 'v2')}"}\ndatabase:\n  url: ${dbUrl}\nregistry:\n  cache: inmemory\n`,
    )
    const args = ['sweep', 'blobs', '--config', config, '--min-age', '0', '--force', '--report', join(dir, 'r.jsonl')]
    const refused = await runCli([...args, '--delete', '--json'])
    assert.equal(refused.code, 4, refused.stdout + refused.stderr)
    assert.equal((await runCli([...args, '--quarantine', '--json'])).code, 4)
    const allowed = await runCli([...args, '--delete', '--registry-read-only', '--allow-mass-delete'])
    assert.equal(allowed.code, 0, allowed.stdout + allowed.stderr)
    assert.match(allowed.stdout, /restart every registry process/)
  })
})

describe('act phase on a live registry (filesystem)', () => {
  test('a crash between intent and action, pushes that use the blobs, then --resume: every image pulls in full', async () => {
    const {root, registry, driver, db} = await liveRegistry()
    await pushImage(registry.url, 'team/base', 'v1', {layers: 1, seed: 'crash-base'})
    const reused = await uploadOrphanBlob(registry.url, 'team/app', 1500, 'crash-reused')
    const reuploaded = await uploadOrphanBlob(registry.url, 'team/app', 1600, 'crash-reuploaded')
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    const crash = new Error('killed between intent and action')
    await assert.rejects(
      sweepBlobs({...settings, driver, db, mode: 'delete', hooks: {afterIntents: async () => Promise.reject(crash)}}),
      (e: Error) => e instanceof RegopsError && /killed between/.test(e.message),
    )
    const job = (await db.query(`SELECT id FROM regops_jobs WHERE kind = 'sweep-blobs' ORDER BY id DESC LIMIT 1`))
      .rows[0].id as string
    // One push reuses the orphan as it is (HEAD says it exists); the other finds its blob deleted (as if
    // the delete had gone through before the crash) and uploads it again.
    await pushImage(registry.url, 'team/app', 'reuse', {
      layers: [randomBlob(1500, 'crash-reused')],
      seed: 'crash-reuse',
    })
    await rm(join(root, 'docker', 'registry', 'v2', blobKey(reuploaded.digest)))
    await pushImage(registry.url, 'team/app', 'again', {
      layers: [randomBlob(1600, 'crash-reuploaded')],
      seed: 'crash-again',
    })

    // A resume stating other settings is refused, naming them.
    await assert.rejects(sweepBlobs({driver, db, logger, resume: String(job), maxDeletes: 1}), /maxDeletes/)
    const resumed = await sweepBlobs({driver, db, logger, resume: String(job)})
    assert.equal(resumed.acted.failed, 0)
    assert.ok(await driver.stat(blobKey(reused.digest)), 'the reused blob is kept')
    await assertPulls(registry, 'team/app', 'reuse')
    await assertPulls(registry, 'team/app', 'again')
    await assertPulls(registry, 'team/base', 'v1')
    const skipped = await db.query(
      `SELECT digest FROM regops_journal WHERE job_id = $1 AND phase = 'skipped' ORDER BY digest`,
      [job],
    )
    assert.deepEqual(
      skipped.rows.map((r) => r.digest),
      [reused.digest, reuploaded.digest].sort(),
    )
  })

  for (const mode of ['quarantine', 'delete'] as const) {
    test(`a manifest pushed between re-check and action, reusing an old orphan its repository links (--${mode})`, async () => {
      const {root, registry, driver, db} = await liveRegistry()
      const orphan = await uploadOrphanBlob(registry.url, 'team/app', 1700, `window-${mode}`)
      await uploadOrphanBlob(registry.url, 'team/app', 1800, `window-other-${mode}`)
      await ageTree(root, new Date(Date.now() - 3 * DAY))
      let pushed: {manifestDigest: string} | undefined
      const result = await sweepBlobs({
        ...settings,
        driver,
        db,
        mode,
        hooks: {
          afterRecheck: async ({kind}) => {
            if (kind !== 'blob' || pushed) return
            pushed = await pushImage(registry.url, 'team/app', 'late', {
              layers: [randomBlob(1700, `window-${mode}`)],
              seed: `window-late-${mode}`,
            })
          },
        },
      })
      assert.ok(pushed)
      assert.equal(result.window.batches, 1)
      assert.ok(result.window.p99Ms >= result.window.p50Ms && result.window.p50Ms >= 0)
      if (mode === 'quarantine') {
        assert.equal(result.postCheck.movedBack, 1)
        assert.deepEqual(result.postCheck.broken, [])
        assert.equal(sweepExitCode(result), 0)
        await assertPulls(registry, 'team/app', 'late')
        // The journal's rescue closes that quarantine: a restore or purge no longer sees it.
        assert.deepEqual(
          (await restoreQuarantine({db, driver, digest: orphan.digest, dryRun: true, logger})).entries,
          0,
        )
      } else {
        assert.deepEqual(result.postCheck.broken, [
          {digest: orphan.digest, repository: 'team/app', manifest: pushed.manifestDigest},
        ])
        assert.equal(sweepExitCode(result), 3)
      }
    })
  }

  test('--quarantine copies before the re-check: a copy is not in the window, and a blob mounted while it is copied is kept without a copy left', async () => {
    const {root, registry, driver, db} = await liveRegistry()
    const reused = await uploadOrphanBlob(registry.url, 'team/app', 2100, 'ahead-reused')
    const other = await uploadOrphanBlob(registry.url, 'team/app', 2200, 'ahead-other')
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    // Slow copies, as of large blobs on S3; while the reused blob is being copied, a push mounts it.
    const COPY_MS = 400
    let pushed = false
    const slowCopies = new Proxy(driver, {
      get(target, name, receiver) {
        if (name !== 'copy') return Reflect.get(target, name, receiver)
        return async (source: string, destination: string) => {
          if (source === blobKey(reused.digest) && !pushed) {
            pushed = true
            await pushImage(registry.url, 'team/other', 'late', {
              layers: [randomBlob(2100, 'ahead-reused')],
              seed: 'ahead-late',
            })
          }
          await new Promise((resolve) => setTimeout(resolve, COPY_MS))
          return target.copy(source, destination)
        }
      },
    })
    const result = await sweepBlobs({...settings, driver: slowCopies, db, mode: 'quarantine'})
    assert.ok(pushed)
    assert.equal(result.acted.quarantined, 1)
    assert.equal(result.skipped.referencedAgain, 1, 'the re-check saw the push made during the copies')
    assert.equal(result.postCheck.movedBack, 0, 'nothing had to be moved back')
    assert.ok(
      result.window.maxMs < COPY_MS,
      `the window (${result.window.maxMs} ms) is the delete, not a ${COPY_MS} ms copy`,
    )
    const job = (await db.query(`SELECT id FROM regops_jobs WHERE kind = 'sweep-blobs' ORDER BY id DESC LIMIT 1`))
      .rows[0].id as string
    assert.ok(await driver.stat(blobKey(reused.digest)), 'the reused blob is in place')
    assert.equal(
      await driver.stat(jobQuarantineKey('_regops/quarantine', job, reused.digest)),
      undefined,
      'its copy is gone',
    )
    assert.equal(await driver.stat(blobKey(other.digest)), undefined)
    assert.ok(await driver.stat(jobQuarantineKey('_regops/quarantine', job, other.digest)))
    const outcomes = await db.query(
      `SELECT digest, phase, detail->>'reason' AS reason FROM regops_journal WHERE job_id = $1 AND phase <> 'intent' ORDER BY digest`,
      [job],
    )
    assert.deepEqual(
      outcomes.rows.map((r) => [r.digest, r.phase, r.reason]).sort(),
      [
        [other.digest, 'done', null],
        [reused.digest, 'skipped', 'referenced again'],
      ].sort(),
    )
    await assertPulls(registry, 'team/other', 'late')
  })

  test('--quarantine killed after an original went, then the blob linked again: the resume moves it back', async () => {
    const {root, registry, driver, db} = await liveRegistry()
    const orphan = await uploadOrphanBlob(registry.url, 'team/app', 2300, 'killed-moved')
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    const crash = new Error('killed between the batch delete and its outcomes')
    await assert.rejects(
      sweepBlobs({
        ...settings,
        driver,
        db,
        mode: 'quarantine',
        hooks: {afterIntents: async () => Promise.reject(crash)},
      }),
      (e: Error) => e instanceof RegopsError && /killed between/.test(e.message),
    )
    const job = (await db.query(`SELECT id FROM regops_jobs WHERE kind = 'sweep-blobs' ORDER BY id DESC LIMIT 1`))
      .rows[0].id as string
    const copy = jobQuarantineKey('_regops/quarantine', job, orphan.digest)
    assert.ok(await driver.stat(copy), 'the copy was made before the re-check')
    // As if the delete had gone through before the kill, and a push had then mounted the blob (a mount
    // writes only the repository's link).
    await driver.deleteMany([blobKey(orphan.digest)])
    await driver.write(
      pathFor({kind: 'layer-link', repository: 'team/other', digest: orphan.digest}),
      Buffer.from(orphan.digest),
    )
    const resumed = await sweepBlobs({driver, db, logger, resume: String(job)})
    assert.equal(resumed.acted.quarantined, 0)
    assert.equal((await driver.stat(blobKey(orphan.digest)))?.size, 2300, 'the blob is back in place')
    assert.equal(await driver.stat(copy), undefined)
    const outcome = await db.query(
      `SELECT phase, detail->>'reason' AS reason, detail->>'recovered' AS recovered FROM regops_journal WHERE job_id = $1 AND phase <> 'intent'`,
      [job],
    )
    assert.deepEqual(outcome.rows, [{phase: 'skipped', reason: 'referenced again', recovered: 'true'}])
  })

  test('--registry-read-only: batches are not re-walked, and one walk after the last still catches a push it did not expect', async () => {
    const {root, registry, driver, db} = await liveRegistry()
    const orphans: Array<{digest: string}> = []
    for (let i = 0; i < 6; i++) orphans.push(await uploadOrphanBlob(registry.url, 'team/app', 1900 + i, `ro-${i}`))
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    // Every walk of the repositories starts with one listing of repositories/.
    let walks = 0
    const counted = new Proxy(driver, {
      get(target, name, receiver) {
        if (name === 'listDirectories')
          return (prefix: string, opts?: object) => {
            if (prefix === 'repositories/') walks++
            return target.listDirectories(prefix, opts)
          }
        const value = Reflect.get(target, name, receiver)
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
    const readOnly = {
      ...settings,
      driver: counted,
      db,
      mode: 'quarantine' as const,
      batchSize: 2,
      registryReadOnly: true,
    }
    let pushed = false
    const result = await sweepBlobs({
      ...readOnly,
      hooks: {
        // The statement is wrong once: a push reuses the first batch's first orphan after its re-check.
        afterRecheck: async ({kind, digests}) => {
          if (kind !== 'blob' || pushed) return
          pushed = true
          const size = 1900 + orphans.findIndex((o) => o.digest === digests[0])
          await pushImage(registry.url, 'team/app', 'late', {
            layers: [randomBlob(size, `ro-${size - 1900}`)],
            seed: 'ro-late',
          })
        },
      },
    })
    assert.ok(pushed)
    assert.equal(result.window.batches, 3)
    assert.equal(result.acted.quarantined, 6)
    assert.equal(walks, 2, 'the mark and one post-check, no walk per batch (5 without --registry-read-only)')
    assert.equal(result.postCheck.movedBack, 1, 'the final walk found the push and moved its blob back')
    await assertPulls(registry, 'team/app', 'late')

    // Batches waiting for that walk are bounded: past the bound (here 4 blobs) they are walked at once.
    for (let i = 0; i < 6; i++) await uploadOrphanBlob(registry.url, 'team/app', 2000 + i, `ro-bound-${i}`)
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    walks = 0
    const bounded = await sweepBlobs({...readOnly, postCheckAfterBlobs: 4})
    assert.equal(bounded.acted.quarantined, 6)
    assert.equal(walks, 3, 'the mark, a walk once 4 blobs wait, and one for the last 2')
  })

  test('one actor per region and prefix: a second acting sweep or a purge is refused while one acts', async () => {
    const {root, registry, driver, db} = await liveRegistry()
    await uploadOrphanBlob(registry.url, 'team/app', 900, 'lock-orphan')
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    let release!: () => void
    let holding!: () => void
    const held = new Promise<void>((resolve) => (holding = resolve))
    const first = sweepBlobs({
      ...settings,
      driver,
      db,
      mode: 'quarantine',
      hooks: {afterRecheck: () => (holding(), new Promise<void>((resolve) => (release = resolve)))},
    })
    await held
    const isLocked = (e: unknown) => e instanceof RefusedError && e.code === 'LOCKED'
    await assert.rejects(sweepBlobs({...settings, driver, db, mode: 'delete'}), isLocked)
    await assert.rejects(sweepBlobs({...settings, driver, db, mode: 'delete', shard: {index: 1, count: 4}}), isLocked)
    await assert.rejects(
      purgeQuarantine({db, driver, holdForMs: 0, strategy: 'storage', dryRun: false, logger}),
      isLocked,
    )
    const jobs = await db.query(`SELECT count(*)::int AS n FROM regops_jobs`)
    assert.equal(jobs.rows[0].n, 1, 'a refused run leaves no job behind')
    release()
    assert.equal((await first).acted.quarantined, 1)
    // Released with the job: the next one acts.
    assert.equal((await sweepBlobs({...settings, driver, db, mode: 'delete'})).acted.failed, 0)
  })

  test("quarantine copies are per job: one job's purge never deletes another job's copy", async () => {
    const {root, registry, driver, db} = await liveRegistry()
    const orphan = await uploadOrphanBlob(registry.url, 'team/app', 1100, 'per-job')
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    const a = await sweepBlobs({...settings, driver, db, mode: 'quarantine'})
    assert.equal(a.acted.quarantined, 1)
    // The same content is uploaded again, ages, and is quarantined by a second job.
    await uploadOrphanBlob(registry.url, 'team/app', 1100, 'per-job')
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    const b = await sweepBlobs({...settings, driver, db, mode: 'quarantine'})
    assert.equal(b.acted.quarantined, 1)
    const purged = await purgeQuarantine({
      db,
      driver,
      holdForMs: 0,
      strategy: 'storage',
      dryRun: false,
      jobId: a.jobId!,
      logger,
    })
    assert.equal(purged.purged, 1)
    const restored = await restoreQuarantine({db, driver, jobId: b.jobId!, logger})
    assert.deepEqual(restored.failed, [])
    assert.equal(restored.restored, 1)
    assert.ok(await driver.stat(blobKey(orphan.digest)), "job B's copy came back")
  })
})

describe('the storage clock (radosgw, 10 minutes ahead through the fault proxy)', () => {
  test('acting is refused beyond --max-clock-skew; a dry-run goes on; within the limit the cutoff is in storage time', async () => {
    const rgw = await startRadosgw({buckets: ['skew']})
    cleanups.push(() => rgw.stop())
    const proxy = await startFaultProxy({target: rgw.endpoint, seed: 8})
    cleanups.push(() => proxy.close())
    proxy.setRules([{name: 'ahead', match: isStat, action: {kind: 'shift-clock', ms: 600_000}}])
    const driver = new S3Driver(radosgwRegion(rgw, 'skew', {prefix: 'v2', endpoint: proxy.endpoint, concurrency: 4}))
    cleanups.push(() => driver.close())
    const {db} = await freshDb()
    await assert.rejects(
      sweepBlobs({...settings, driver, db, mode: 'delete'}),
      (e: Error) => e instanceof RefusedError && /ahead/.test(e.message),
    )
    const dry = await sweepBlobs({...settings, driver, mode: 'dry-run'})
    assert.ok(Math.abs(dry.storageClock!.offsetMs - 600_000) < 5_000, `offset ${dry.storageClock?.offsetMs}`)
    const before = Date.now()
    const acted = await sweepBlobs({...settings, driver, db, mode: 'delete', maxClockSkewMs: 15 * 60_000})
    const cutoffFromHostNow = Date.parse(acted.cutoff) + DAY - before
    assert.ok(
      Math.abs(cutoffFromHostNow - 600_000) < 10_000,
      `cutoff is ${cutoffFromHostNow} ms ahead of host time - min-age`,
    )
    // A storage that cannot be measured: acting refused, a dry-run warns and goes on.
    proxy.setRules([{name: 'no-put', match: (r) => r.method === 'PUT', action: {kind: 'status', status: 403}}])
    await assert.rejects(sweepBlobs({...settings, driver, db, mode: 'delete'}), RefusedError)
    assert.equal((await sweepBlobs({...settings, driver, mode: 'dry-run'})).storageClock, null)
  })
})
