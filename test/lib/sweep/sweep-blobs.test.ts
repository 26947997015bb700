// The sweep on a filesystem store written in the distribution layout, with a real PostgreSQL for the
// journal and checkpoints. The registry-backed oracle tests are in test/registry/.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, readFile, rm, utimes, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {runCli, startCli} from '../../helpers/cli.js'
import {openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {LayoutWriter, seededBytes, sha256} from '../../../src/lib/sample/layout-writer.js'
import {pathFor} from '../../../src/lib/storage/layout.js'
import {writeSampleRegistry, ageTree} from '../../../src/lib/quickstart/sample.js'
import {sweepBlobs} from '../../../src/lib/sweep/sweep-blobs.js'
import {purgeQuarantine, restoreQuarantine} from '../../../src/lib/sweep/restore-purge.js'
import {Logger} from '../../../src/lib/output/logger.js'
import {RefusedError} from '../../../src/lib/errors.js'

const logger = new Logger('silent')
const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

async function freshDb(): Promise<{db: Db; url: string}> {
  const url = await (await sharedPostgres()).createDatabase()
  const db = openDatabase(url, {max: 4})
  cleanups.push(() => db.close())
  await migrateUp(db)
  return {db, url}
}

async function sampleStore() {
  const root = await mkdtemp(join(tmpdir(), 'regops-sweep-'))
  cleanups.push(() => rm(root, {recursive: true, force: true}))
  const driver = new FilesystemDriver('local', root)
  const sample = await writeSampleRegistry(driver, root)
  return {root, driver, sample}
}

/** An orphan written with the first seed whose digest falls in `prefix` (two hex digits): places a blob in a chosen shard. */
async function orphanInPrefix(w: LayoutWriter, prefix: string, label: string): Promise<string> {
  for (let i = 0; ; i++) {
    const seed = `${label}-${prefix}-${i}`
    if (sha256(seededBytes(`${seed}:orphan`, 300)).startsWith(`sha256:${prefix}`))
      return w.writeOrphan(undefined, seed, 300)
  }
}

async function reportDigests(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l).digest as string)
    .sort()
}

async function allFiles(driver: FilesystemDriver, prefix = ''): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for await (const o of driver.list(prefix)) out.set(o.key, sha256(await driver.readSmall(o.key, 1 << 24)))
  return out
}

const DAY = 86_400_000
// The tests below act on stores with many orphans; the mass-deletion guard has its own tests.
const base = {
  strategy: 'storage' as const,
  minAgeMs: DAY,
  quarantinePrefix: '_regops/quarantine',
  logger,
  allowMassDelete: true,
}

describe('sweep blobs on a filesystem store', () => {
  test('dry-run finds exactly the planted orphans, spares a young _layers link and a young blob, changes nothing', async () => {
    const {root, driver, sample} = await sampleStore()
    // One protection each: the in-flight upload's blob is made old, so only its young _layers link spares
    // it; a stray blob with no link at all is young, so only its own age spares it.
    const old = new Date(Date.now() - 3 * DAY)
    await utimes(join(root, pathFor({kind: 'blob-data', digest: sample.inFlight})), old, old)
    const youngStray = await new LayoutWriter(driver).writeOrphan(undefined, 'young-stray', 600)
    const before = await allFiles(driver)
    const report = join(root, '..', `report-${Date.now()}.jsonl`)
    cleanups.push(() => rm(report, {force: true}))
    const result = await sweepBlobs({...base, driver, mode: 'dry-run', reportFile: report})
    const lines = (await readFile(report, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
    assert.deepEqual(
      lines.map((l) => l.digest).sort(),
      sample.orphans.map((o) => o.digest),
    )
    assert.equal(result.candidates.count, sample.orphans.length)
    assert.equal(result.marked.youngLinks, 1, 'the in-flight upload is the only young link')
    assert.deepEqual(result.tooYoung, {count: 1, bytes: 600}, 'the young stray is the only blob spared for its age')
    assert.ok(!lines.some((l) => l.digest === sample.inFlight || l.digest === youngStray))
    assert.equal(result.markComplete, true)
    assert.deepEqual(await allFiles(driver), before, 'a dry-run changes nothing')
  })

  test('--delete removes exactly the orphans, journals intent and outcome once each', async () => {
    const {driver, sample} = await sampleStore()
    const {db} = await freshDb()
    const result = await sweepBlobs({...base, driver, db, mode: 'delete'})
    assert.equal(result.acted.deleted, sample.orphans.length)
    for (const o of sample.orphans)
      assert.equal(await driver.stat(pathFor({kind: 'blob-data', digest: o.digest})), undefined)
    assert.ok(await driver.stat(pathFor({kind: 'blob-data', digest: sample.inFlight})), 'in-flight blob kept')
    const journal = await db.query(
      `SELECT action, phase, digest, intent_id FROM regops_journal WHERE job_id = $1 ORDER BY id`,
      [result.jobId],
    )
    const intents = journal.rows.filter((r) => r.phase === 'intent')
    const outcomes = journal.rows.filter((r) => r.phase === 'done')
    assert.deepEqual(
      intents.map((r) => r.digest).sort(),
      sample.orphans.map((o) => o.digest),
    )
    assert.equal(outcomes.length, intents.length)
    const again = await sweepBlobs({...base, driver, mode: 'dry-run'})
    assert.equal(again.candidates.count, 0, 'nothing left to find')
    const job = await db.query(`SELECT status FROM regops_jobs WHERE id = $1`, [result.jobId])
    assert.equal(job.rows[0].status, 'done')
  })

  test('quarantine then restore gives byte-identical blobs; purge after the hold deletes only the unreferenced', async () => {
    const {root, driver, sample} = await sampleStore()
    const {db} = await freshDb()
    const before = await allFiles(driver, 'blobs/')
    const q = await sweepBlobs({...base, driver, db, mode: 'quarantine'})
    assert.equal(q.acted.quarantined, sample.orphans.length)
    for (const o of sample.orphans) {
      assert.equal(await driver.stat(pathFor({kind: 'blob-data', digest: o.digest})), undefined)
      assert.ok(
        await driver.stat(`_regops/quarantine/job-${q.jobId}/${pathFor({kind: 'blob-data', digest: o.digest})}`),
        "under the job's own prefix",
      )
    }
    const restored = await restoreQuarantine({db, driver, jobId: q.jobId!, logger})
    assert.equal(restored.restored, sample.orphans.length)
    assert.deepEqual(await allFiles(driver, 'blobs/'), before, 'restore is byte-identical')
    assert.deepEqual([...(await allFiles(driver, '_regops/'))], [], 'quarantine emptied')

    // A restored blob is new again (its copy has a fresh mtime), so the grace period protects it once
    // more. Age the store, quarantine again, then make one of them referenced again before the purge.
    const again = await sweepBlobs({...base, driver, mode: 'dry-run'})
    assert.equal(again.candidates.count, 0, 'restored blobs are inside the grace period again')
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    const q2 = await sweepBlobs({...base, driver, db, mode: 'quarantine'})
    const revived = sample.orphans.find((o) => o.why.startsWith('uploaded to tools/ci'))!
    const w = new LayoutWriter(driver)
    const config = Buffer.from(
      JSON.stringify({architecture: 'amd64', os: 'linux', rootfs: {type: 'layers', diff_ids: [revived.digest]}}),
    )
    const configDigest = await w.putBlob(config)
    await w.putManifest(
      'tools/ci',
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
          config: {
            mediaType: 'application/vnd.docker.container.image.v1+json',
            size: config.length,
            digest: configDigest,
          },
          layers: [
            {mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: 5000, digest: revived.digest},
          ],
        }),
      ),
      'revived',
    )
    const notYet = await purgeQuarantine({db, driver, holdForMs: DAY, strategy: 'storage', dryRun: false, logger})
    assert.equal(notYet.entries, 0, 'nothing is past its hold time yet')
    const purged = await purgeQuarantine({
      db,
      driver,
      holdForMs: DAY,
      strategy: 'storage',
      dryRun: false,
      logger,
      now: new Date(Date.now() + 2 * DAY),
    })
    // Quarantined: the planted orphans and the in-flight upload (now old, an orphan too); purged: all but the rescued one.
    const planted = [...sample.orphans.map((o) => o.digest), sample.inFlight].sort()
    assert.equal(q2.acted.quarantined, planted.length)
    assert.equal(purged.rescued, 1)
    assert.equal(purged.purged, planted.length - 1)
    for (const d of planted.filter((d) => d !== revived.digest)) {
      assert.equal(await driver.stat(pathFor({kind: 'blob-data', digest: d})), undefined, `${d} purged`)
    }
    assert.ok(
      await driver.stat(pathFor({kind: 'blob-data', digest: revived.digest})),
      'the re-referenced blob is back in the store',
    )
    assert.equal(
      sha256(await driver.readSmall(pathFor({kind: 'blob-data', digest: revived.digest}), 1 << 20)),
      revived.digest,
    )
    assert.deepEqual([...(await allFiles(driver, '_regops/'))], [], 'quarantine emptied by purge')
  })

  test('an unreadable manifest makes the mark incomplete: report in dry-run, refuse (exit 4) to act', async () => {
    const {root, driver, sample} = await sampleStore()
    const {db} = await freshDb()
    const w = new LayoutWriter(driver)
    const garbage = await w.putManifest('tools/ci', Buffer.from('\x00\x01 not a manifest'))
    const missing = `sha256:${'e'.repeat(64)}`
    await w.link(pathFor({kind: 'manifest-revision-link', repository: 'library/nginx', digest: missing}), missing)
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    const dry = await sweepBlobs({...base, driver, mode: 'dry-run'})
    assert.equal(dry.markComplete, false)
    const kinds = dry.problems.map((p) => `${p.kind}:${p.key}`)
    assert.ok(
      kinds.some((k) => k.startsWith('bad-manifest:') && k.includes(garbage.slice(7))),
      kinds.join('\n'),
    )
    assert.ok(
      kinds.some((k) => k.startsWith('missing-manifest-blob:') && k.includes(missing.slice(7))),
      kinds.join('\n'),
    )
    const before = await allFiles(driver)
    await assert.rejects(
      sweepBlobs({...base, driver, db, mode: 'delete'}),
      (e: unknown) => e instanceof RefusedError && e.exitCode === 4,
    )
    await assert.rejects(
      sweepBlobs({...base, driver, db, mode: 'quarantine'}),
      (e: unknown) => e instanceof RefusedError && e.exitCode === 4,
    )
    assert.deepEqual(await allFiles(driver), before, 'nothing touched')
    assert.equal(sample.orphans.length, 6)
  })

  test('unsafe settings are refused: --min-age under 1h without --force, caps exceeded', async () => {
    const {root, driver, sample} = await sampleStore()
    const {db} = await freshDb()
    // The one-hour guard belongs to the flag layer (the service trusts minAgeMs): refused before anything runs.
    const cfg = join(root, 'regops.yaml')
    await writeFile(cfg, `regions:\n  local: {url: "file://${root}"}\n`)
    const unsafe = await runCli(['sweep', 'blobs', '--config', cfg, '--min-age', '10m', '--json'])
    assert.equal(unsafe.code, 4, unsafe.stdout + unsafe.stderr)
    assert.match(unsafe.json.error.message, /--min-age 10m is below 1h/)
    await assert.rejects(
      sweepBlobs({...base, driver, db, mode: 'delete', maxDeletes: sample.orphans.length - 1}),
      /exceed --max-deletes/,
    )
    await assert.rejects(sweepBlobs({...base, driver, db, mode: 'delete', maxBytes: 100}), /exceed --max-bytes/)
    for (const o of sample.orphans) assert.ok(await driver.stat(pathFor({kind: 'blob-data', digest: o.digest})))
  })

  test('--shard i/n: three workers find disjoint candidate sets whose union is what one finds', async () => {
    const {root, driver, sample} = await sampleStore()
    // Orphans on both sides of every shard boundary (0x54|0x55 and 0xa9|0xaa) and at both ends.
    const w = new LayoutWriter(driver)
    const edges = await Promise.all(
      ['00', '54', '55', 'a9', 'aa', 'ff'].map((prefix) => orphanInPrefix(w, prefix, 'edge')),
    )
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    const reports = [0, 1, 2, 3].map((i) => join(root, '..', `shard-${i}-${Date.now()}.jsonl`))
    cleanups.push(async () => void (await Promise.all(reports.map((r) => rm(r, {force: true})))))
    const parts = await Promise.all(
      [0, 1, 2].map((index) =>
        sweepBlobs({...base, driver, mode: 'dry-run', shard: {index, count: 3}, reportFile: reports[index]}),
      ),
    )
    assert.deepEqual(
      parts.map((p) => p.shards.prefixes),
      [85, 85, 86],
    )
    const whole = await sweepBlobs({...base, driver, mode: 'dry-run', reportFile: reports[3]})
    const wholeSet = await reportDigests(reports[3])
    // the in-flight upload was aged with the rest: an orphan now
    assert.deepEqual(wholeSet, [...sample.orphans.map((o) => o.digest), sample.inFlight, ...edges].sort())
    const sets = await Promise.all(reports.slice(0, 3).map(reportDigests))
    const seen = new Map<string, number>()
    for (const [i, set] of sets.entries()) {
      for (const d of set) {
        assert.equal(seen.get(d), undefined, `${d} found by shard ${seen.get(d)} and by shard ${i}`)
        seen.set(d, i)
        // shard i holds prefixes [floor(i*256/3), floor((i+1)*256/3)): 00-54, 55-a9, aa-ff
        const prefix = parseInt(d.slice(7, 9), 16)
        assert.ok(
          prefix >= Math.floor((i * 256) / 3) && prefix < Math.floor(((i + 1) * 256) / 3),
          `${d} found by shard ${i}`,
        )
      }
    }
    assert.deepEqual([...seen.keys()].sort(), wholeSet)
    assert.equal(
      parts.reduce((n, p) => n + p.scanned.blobs, 0),
      whole.scanned.blobs,
    )
  })

  test('--delete-untagged removes an untagged manifest but never a child of a tagged index', async () => {
    const {root, driver, sample} = await sampleStore()
    const {db} = await freshDb()
    const w = new LayoutWriter(driver)
    const untagged = await w.writeImage({repository: 'library/nginx', seed: 'untagged-one', layers: 1, layerSize: 700})
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    const blobsBefore = [...(await allFiles(driver, 'blobs/')).keys()]
    const result = await sweepBlobs({...base, driver, db, mode: 'delete', deleteUntagged: true})
    assert.equal(result.acted.manifestsDeleted, 1)
    assert.equal(
      await driver.stat(
        pathFor({kind: 'manifest-revision-link', repository: 'library/nginx', digest: untagged.manifestDigest}),
      ),
      undefined,
    )
    // Its manifest, config and own layer went with it, with the planted orphans (the in-flight upload is old now too).
    const blobsAfter = new Set((await allFiles(driver, 'blobs/')).keys())
    const removed = blobsBefore.filter((k) => !blobsAfter.has(k)).sort()
    const expected = [
      untagged.manifestDigest,
      untagged.configDigest,
      untagged.layerDigests[0],
      sample.inFlight,
      ...sample.orphans.map((o) => o.digest),
    ]
    assert.deepEqual(removed, expected.map((digest) => pathFor({kind: 'blob-data', digest})).sort())
    assert.equal(untagged.layerDigests.length, 1)
    // the multi-arch children of team/api:v1 are untagged themselves, but their index is tagged
    const index = sample.tags.find((t) => t.repository === 'team/api')!
    const indexPayload = JSON.parse(
      (await driver.readSmall(pathFor({kind: 'blob-data', digest: index.digest}), 1 << 20)).toString(),
    )
    for (const child of indexPayload.manifests) {
      assert.ok(
        await driver.stat(pathFor({kind: 'manifest-revision-link', repository: 'team/api', digest: child.digest})),
        `child ${child.digest} kept`,
      )
      assert.ok(await driver.stat(pathFor({kind: 'blob-data', digest: child.digest})))
    }
  })
})

/** Waits until the sweep has journaled more than `n` outcomes (the kill point), failing if it ends first. */
async function waitForJournal(db: Db, run: ReturnType<typeof startCli>, n: number): Promise<void> {
  let exited = false
  const ended = () => (exited = true)
  void run.done.then(ended, ended)
  for (const deadline = Date.now() + 60_000; Date.now() < deadline && !exited;) {
    const rows = await db.query(`SELECT count(*)::int AS n FROM regops_journal WHERE phase = 'done'`)
    if (rows.rows[0].n > n) return
    await new Promise((r) => setTimeout(r, 10))
  }
  if (!exited) run.child.kill('SIGKILL')
  const res = await run.done
  assert.fail(
    `the sweep ended (or stalled for a minute) before ${n} outcomes were journaled: ${res.stdout}${res.stderr}`,
  )
}

describe('sweep blobs through the CLI', () => {
  let root: string
  let url: string
  let config: string
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'regops-sweep-cli-'))
    cleanups.push(() => rm(root, {recursive: true, force: true}))
    ;({url} = await freshDb())
    config = join(root, 'regops.yaml')
    await writeFile(config, `regions:\n  local: {url: "file://${join(root, 'store')}"}\ndatabase:\n  url: ${url}\n`)
  })

  test('SIGKILL during --delete, then --resume: same end state as an uninterrupted run, each action journaled once', async () => {
    // Two identical stores: one swept without interruption, one killed mid-delete and resumed.
    const orphanCount = 3000
    const stores = ['store', 'store-ref']
    for (const name of stores) {
      const driver = new FilesystemDriver('local', join(root, name))
      const w = new LayoutWriter(driver, 64)
      await w.writeImage({repository: 'app/web', tag: 'v1', seed: 'web', layers: 3, layerSize: 256})
      await Promise.all(Array.from({length: orphanCount}, (_, i) => w.writeOrphan(undefined, `bulk-${i}`, 64)))
      await ageTree(join(root, name), new Date(Date.now() - 3 * DAY))
    }
    const run = startCli(['sweep', 'blobs', '--config', config, '--delete', '--allow-mass-delete', '--json'], {})
    const db = openDatabase(url, {max: 2})
    cleanups.push(() => db.close())
    // Kill without warning once some deletions are journaled.
    await waitForJournal(db, run, 200)
    run.child.kill('SIGKILL')
    const killed = await run.done
    assert.equal(killed.signal, 'SIGKILL')
    const job = (
      await db.query(`SELECT id, status FROM regops_jobs WHERE kind = 'sweep-blobs' ORDER BY id DESC LIMIT 1`)
    ).rows[0]
    const doneBefore = (
      await db.query(`SELECT count(*)::int AS n FROM regops_journal WHERE job_id = $1 AND phase = 'done'`, [job.id])
    ).rows[0].n
    assert.ok(doneBefore > 0 && doneBefore < orphanCount, `killed midway (${doneBefore} of ${orphanCount} done)`)

    // The worker is dead but its heartbeat is fresh: an immediate resume is refused (exit 4)...
    const tooSoon = await runCli(['sweep', 'blobs', '--config', config, '--resume', String(job.id), '--json'])
    assert.equal(tooSoon.code, 4, tooSoon.stdout + tooSoon.stderr)
    // ...until the heartbeat is stale (here: aged by hand, as 60 s would pass in production).
    await db.query(`UPDATE regops_jobs SET heartbeat_at = now() - interval '5 minutes' WHERE id = $1`, [job.id])
    const resumed = await runCli(['sweep', 'blobs', '--config', config, '--resume', String(job.id), '--json'])
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr)

    const refDb = await freshDb()
    const refConfig = join(root, 'ref.yaml')
    await writeFile(
      refConfig,
      `regions:\n  local: {url: "file://${join(root, 'store-ref')}"}\ndatabase:\n  url: ${refDb.url}\n`,
    )
    const reference = await runCli([
      'sweep',
      'blobs',
      '--config',
      refConfig,
      '--delete',
      '--allow-mass-delete',
      '--json',
    ])
    assert.equal(reference.code, 0, reference.stderr)
    const listing = async (name: string) => {
      const keys: string[] = []
      for await (const o of new FilesystemDriver('x', join(root, name)).list('')) keys.push(o.key)
      return keys
    }
    assert.deepEqual(await listing('store'), await listing('store-ref'), 'same end state')
    const journal = await db.query(
      `SELECT digest, count(*) FILTER (WHERE phase = 'intent')::int AS intents, count(*) FILTER (WHERE phase = 'done')::int AS done
       FROM regops_journal WHERE job_id = $1 GROUP BY digest`,
      [job.id],
    )
    assert.equal(journal.rows.length, orphanCount)
    for (const row of journal.rows)
      assert.deepEqual([row.intents, row.done], [1, 1], `${row.digest} journaled exactly once`)
    const status = (await db.query(`SELECT status FROM regops_jobs WHERE id = $1`, [job.id])).rows[0].status
    assert.equal(status, 'done')
  })

  test('SIGTERM during --delete saves the checkpoint and exits 143; --resume finishes the job', async () => {
    const store = join(root, 'store-term')
    const driver = new FilesystemDriver('local', store)
    const w = new LayoutWriter(driver, 64)
    // One image: a store with no repository at all is one the mark cannot see, and acting is refused.
    const kept = await w.writeImage({repository: 'app/kept', tag: 'v1', seed: 'term-kept', layers: 1, layerSize: 64})
    const planted = await Promise.all(Array.from({length: 2000}, (_, i) => w.writeOrphan(undefined, `term-${i}`, 32)))
    await ageTree(store, new Date(Date.now() - 3 * DAY))
    const {url: termDb} = await freshDb()
    const cfg = join(root, 'term.yaml')
    await writeFile(cfg, `regions:\n  local: {url: "file://${store}"}\ndatabase:\n  url: ${termDb}\n`)
    const db = openDatabase(termDb, {max: 2})
    cleanups.push(() => db.close())
    const run = startCli(['sweep', 'blobs', '--config', cfg, '--delete', '--allow-mass-delete', '--json'])
    await waitForJournal(db, run, 100)
    run.child.kill('SIGTERM')
    const stopped = await run.done
    assert.equal(stopped.code, 143, stopped.stdout + stopped.stderr)
    assert.equal(stopped.json.error.code, 'INTERRUPTED')
    const job = (await db.query(`SELECT id, status FROM regops_jobs ORDER BY id DESC LIMIT 1`)).rows[0]
    assert.equal(job.status, 'interrupted')
    const resumed = await runCli(['sweep', 'blobs', '--config', cfg, '--resume', String(job.id), '--json'])
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr)
    const left: string[] = []
    for await (const o of driver.list('blobs/')) left.push(o.key)
    const keptKeys = [kept.manifestDigest, kept.configDigest, ...kept.layerDigests]
      .map((digest) => pathFor({kind: 'blob-data', digest}))
      .sort()
    assert.deepEqual(left, keptKeys, 'only the kept image is left')
    const journal = await db.query(
      `SELECT digest, count(*) FILTER (WHERE phase = 'intent')::int AS intents, count(*) FILTER (WHERE phase = 'done')::int AS done
       FROM regops_journal WHERE job_id = $1 GROUP BY digest ORDER BY digest`,
      [job.id],
    )
    assert.deepEqual(
      journal.rows.map((r) => r.digest),
      [...planted].sort(),
    )
    for (const row of journal.rows)
      assert.deepEqual([row.intents, row.done], [1, 1], `${row.digest} journaled exactly once`)
  })

  test('dry-run via the CLI exits 1 with candidates, writes the report, and --json is a plain result', async () => {
    const store = join(root, 'store-dry')
    const driver = new FilesystemDriver('local', store)
    const w = new LayoutWriter(driver)
    await w.writeImage({repository: 'a/b', tag: 't', seed: 's', layers: 1, layerSize: 100})
    const orphan = await w.writeOrphan('a/b', 'o', 100)
    await ageTree(store, new Date(Date.now() - 3 * DAY))
    const cfg = join(root, 'dry.yaml')
    await writeFile(cfg, `regions:\n  local: {url: "file://${store}"}\n`)
    const report = join(root, 'dry.jsonl')
    const res = await runCli(['sweep', 'blobs', '--config', cfg, '--report', report, '--json'])
    assert.equal(res.code, 1, res.stderr)
    assert.equal(res.json.kind, 'sweep-blobs')
    assert.equal(res.json.candidates.count, 1)
    assert.equal(JSON.parse((await readFile(report, 'utf8')).trim()).digest, orphan)
    const bad = await runCli(['sweep', 'blobs', '--config', cfg, '--min-age', '5m', '--json'])
    assert.equal(bad.code, 4)
    assert.equal(bad.json.error.code, 'REFUSED')
    const noDb = await runCli(['sweep', 'blobs', '--config', cfg, '--delete', '--json'])
    assert.equal(noDb.code, 2)
    assert.match(noDb.json.error.message, /needs a database/)
  })
})
