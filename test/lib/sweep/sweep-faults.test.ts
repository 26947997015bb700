// Faults and failure paths of the sweep (issue 17): S3 answers that fail (through a seeded fault proxy in
// front of the run's radosgw), resumes from each phase, refusals, the metrics file, restore and purge
// through the CLI, and the pre-act re-check with exact counts. Store changes between plan and act are made
// at a fixed point: the job stops at its first re-check (a hook that throws) and --resume goes on.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {sharedRadosgw, type SharedRadosgw} from '../../helpers/radosgw.js'
import {startFaultProxy, type FaultProxy} from '../../helpers/fault-proxy.js'
import {runCli} from '../../helpers/cli.js'
import {parsePrometheus, valueOf} from '../../helpers/prometheus.js'
import {openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {S3Driver} from '../../../src/lib/storage/s3.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import type {StorageDriver} from '../../../src/lib/storage/driver.js'
import {LayoutWriter, seededBytes, sha256, type WrittenImage} from '../../../src/lib/sample/layout-writer.js'
import {pathFor} from '../../../src/lib/storage/layout.js'
import {ageTree} from '../../../src/lib/quickstart/sample.js'
import {sweepBlobs} from '../../../src/lib/sweep/sweep-blobs.js'
import {Logger} from '../../../src/lib/output/logger.js'
import {exitCode as sweepExitCode} from '../../../src/formatters/sweep-blobs.js'

const logger = new Logger('silent')
const DAY = 86_400_000
const PREFIX = 'docker/registry/v2'
const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

async function tempDir(label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `regops-faults-${label}-`))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  return dir
}

async function freshDb(): Promise<{db: Db; url: string}> {
  const url = await (await sharedPostgres()).createDatabase()
  const db = openDatabase(url, {max: 4})
  cleanups.push(() => db.close())
  await migrateUp(db)
  return {db, url}
}

const blob = (digest: string) => pathFor({kind: 'blob-data', digest})

/** Orphans whose digests start with the given two-hex prefixes (one each), plus `plain` more anywhere. */
async function writeOrphans(w: LayoutWriter, label: string, prefixes: string[], plain: number): Promise<string[]> {
  const digests: string[] = []
  for (const prefix of prefixes) {
    for (let i = 0; ; i++) {
      const seed = `${label}-${prefix}-${i}`
      if (!sha256(seededBytes(`${seed}:orphan`, 300)).startsWith(`sha256:${prefix}`)) continue
      digests.push(await w.writeOrphan('team/app', seed, 300))
      break
    }
  }
  for (let i = 0; i < plain; i++) digests.push(await w.writeOrphan('team/app', `${label}-plain-${i}`, 300 + i))
  return digests.sort()
}

async function present(driver: StorageDriver, digests: string[]): Promise<string[]> {
  const found: string[] = []
  for (const d of digests) if (await driver.stat(blob(d))) found.push(d)
  return found
}

/** Per digest of a job: [intents, done, failed] outcomes. */
async function journalCounts(db: Db, jobId: string): Promise<Map<string, [number, number, number]>> {
  const rows = await db.query(
    `SELECT digest, count(*) FILTER (WHERE phase = 'intent')::int AS i, count(*) FILTER (WHERE phase = 'done')::int AS d,
            count(*) FILTER (WHERE phase = 'failed')::int AS f
     FROM regops_journal WHERE job_id = $1 AND action IN ('delete', 'quarantine', 'delete-manifest') GROUP BY digest ORDER BY digest`,
    [jobId],
  )
  return new Map(rows.rows.map((r) => [r.digest as string, [r.i, r.d, r.f] as [number, number, number]]))
}

describe('the sweep on S3 (radosgw) through a fault proxy', () => {
  let rgw: SharedRadosgw
  let proxy: FaultProxy
  let dir: string

  before(async () => {
    rgw = await sharedRadosgw()
    proxy = await startFaultProxy({target: rgw.endpoint, seed: 17})
    cleanups.push(() => proxy.close())
    dir = await tempDir('s3')
  })

  /** A bucket with one tagged image and orphans; `writer` writes straight to radosgw, `driver` reads through the proxy. */
  async function s3Store(label: string) {
    const bucket = await rgw.newBucket(label)
    const regionOf = (endpoint: string) => ({
      kind: 's3' as const,
      name: 'eu',
      url: `s3://${bucket}/${PREFIX}`,
      bucket,
      prefix: PREFIX,
      region: 'us-east-1',
      endpoint,
      forcePathStyle: true,
      checksums: 'when_required' as const,
      concurrency: 16,
      accessKeyId: rgw.accessKeyId,
      secretAccessKey: rgw.secretAccessKey,
    })
    const direct = new S3Driver(regionOf(rgw.endpoint))
    const driver = new S3Driver(regionOf(proxy.endpoint))
    cleanups.push(async () => {
      await direct.close()
      await driver.close()
    })
    const w = new LayoutWriter(direct)
    const image = await w.writeImage({
      repository: 'team/app',
      tag: 'v1',
      seed: `${label}-image`,
      layers: 2,
      layerSize: 400,
    })
    const {url} = await freshDb()
    const config = join(dir, `${label}.yaml`)
    const region = (endpoint: string) =>
      `{url: "s3://${bucket}/${PREFIX}", endpoint: "${endpoint}", region: us-east-1, checksums: when_required, accessKeyId: "${rgw.accessKeyId}", secretAccessKey: "${rgw.secretAccessKey}"}`
    await writeFile(
      config,
      `regions:\n  eu: ${region(proxy.endpoint)}\ndatabase:\n  url: ${url}\nsweep: {quarantine: "eu:_regops/quarantine"}\n`,
    )
    const db = openDatabase(url, {max: 2})
    cleanups.push(() => db.close())
    return {bucket, direct, driver, w, image, config, db, dir}
  }

  // S3 objects cannot be back-dated: these sweeps run with --min-age 0 (everything written before is old).
  const sweep = (config: string, ...args: string[]) =>
    runCli([
      'sweep',
      'blobs',
      '--config',
      config,
      '--min-age',
      '0',
      '--force',
      // small stores where the planted orphans are most of the blobs, on purpose
      '--allow-mass-delete',
      '--report',
      join(dir, `r-${Date.now()}.jsonl`),
      '--json',
      ...args,
    ])
  const settle = () => new Promise((r) => setTimeout(r, 1100))

  test('a blob listing that answers 500 past its retries: exit 3, the job failed, nothing acted on', async () => {
    const s = await s3Store('list-500')
    const orphans = await writeOrphans(s.w, 'list-500', ['80', '81'], 4)
    await settle()
    proxy.setRules([
      {
        name: 'list-500',
        match: (r) => r.method === 'GET' && r.query.get('start-after') === `${PREFIX}/blobs/sha256/80`,
        action: {kind: 'status', status: 500},
      },
    ])
    const run = await sweep(s.config, '--delete')
    proxy.setRules([])
    assert.equal(run.code, 3, run.stdout + run.stderr)
    assert.ok(proxy.fired('list-500') > 1, `retried (${proxy.fired('list-500')} answers of 500)`)
    assert.match(run.json.error.message, /HTTP 500/)
    assert.deepEqual(await present(s.direct, orphans), orphans, 'every orphan still there')
    const jobs = await s.db.query(`SELECT status FROM regops_jobs`)
    assert.deepEqual(
      jobs.rows.map((r) => r.status),
      ['failed'],
    )
    assert.equal((await s.db.query(`SELECT count(*)::int AS n FROM regops_journal`)).rows[0].n, 0, 'nothing journaled')
  })

  test('a 503 on a manifest read: transient is retried (same result); lasting makes the mark incomplete and acting refused (exit 4)', async () => {
    const s = await s3Store('manifest-503')
    const orphans = await writeOrphans(s.w, 'manifest-503', [], 3)
    await settle()
    const manifestPath = `/${s.bucket}/${PREFIX}/${blob(s.image.manifestDigest)}`
    const rule = (times?: number) => [
      {
        name: 'manifest-503',
        match: (r: {method: string; path: string}) => r.method === 'GET' && r.path === manifestPath,
        action: {kind: 'status' as const, status: 503},
        times,
      },
    ]
    const clean = await sweep(s.config)
    assert.equal(clean.code, 1, clean.stderr)
    proxy.setRules(rule(2))
    const transient = await sweep(s.config)
    assert.equal(proxy.fired('manifest-503'), 2)
    assert.equal(transient.code, 1, transient.stderr)
    for (const field of ['markComplete', 'candidates', 'referenced', 'scanned'] as const)
      assert.deepEqual(transient.json[field], clean.json[field], field)
    assert.equal(clean.json.candidates.count, orphans.length)

    proxy.setRules(rule())
    const refused = await sweep(s.config, '--delete')
    proxy.setRules([])
    assert.equal(refused.code, 4, refused.stdout + refused.stderr)
    assert.match(refused.json.error.message, /mark is incomplete/)
    assert.ok(
      refused.json.error.details.problems.some((p: {key: string}) => p.key === blob(s.image.manifestDigest)),
      'the unreadable manifest is named',
    )
    assert.deepEqual(await present(s.direct, orphans), orphans, 'nothing deleted')
    assert.equal((await s.db.query(`SELECT count(*)::int AS n FROM regops_journal`)).rows[0].n, 0)
  })

  test('DeleteObjects names two keys as failed: exit 3, the job failed, those two still there; --resume finishes them, each journaled once done', async () => {
    const s = await s3Store('partial-delete')
    const orphans = await writeOrphans(s.w, 'partial-delete', [], 6)
    await settle()
    const failing = [orphans[1], orphans[4]]
    const body =
      '<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
      failing
        .map(
          (d) => `<Error><Key>${PREFIX}/${blob(d)}</Key><Code>InternalError</Code><Message>injected</Message></Error>`,
        )
        .join('') +
      '</DeleteResult>'
    // The canned reply stands in for the request: the other keys are deleted just before it (at the
    // hook after the intents), as the server would have deleted them in the same request.
    const run = await sweepBlobs({
      strategy: 'storage',
      minAgeMs: 0,
      quarantinePrefix: '_regops/quarantine',
      allowMassDelete: true,
      logger,
      driver: s.driver,
      db: s.db,
      mode: 'delete',
      hooks: {
        afterIntents: async ({kind}) => {
          if (kind !== 'blob') return
          for (const d of orphans.filter((o) => !failing.includes(o))) await s.direct.deleteMany([blob(d)])
          proxy.setRules([
            {
              name: 'partial',
              match: (r) => r.method === 'POST' && r.query.has('delete'),
              action: {kind: 'reply', status: 200, body},
              times: 1,
            },
          ])
        },
      },
    })
    proxy.setRules([])
    assert.equal(proxy.fired('partial'), 1)
    assert.equal(sweepExitCode(run), 3)
    assert.deepEqual(run.acted, {deleted: 4, quarantined: 0, manifestsDeleted: 0, bytes: run.acted.bytes, failed: 2})
    const job = (await s.db.query(`SELECT id, status FROM regops_jobs`)).rows[0]
    assert.equal(job.status, 'failed')
    const first = await journalCounts(s.db, job.id)
    assert.deepEqual(
      [...first].filter(([, [, , f]]) => f > 0).map(([d]) => d),
      [...failing].sort(),
    )
    assert.deepEqual(
      await present(s.direct, orphans),
      [...failing].sort(),
      'exactly the two named keys are still there',
    )

    const resumed = await sweep(s.config, '--resume', String(job.id))
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr)
    assert.deepEqual(await present(s.direct, orphans), [], 'every orphan deleted')
    const counts = await journalCounts(s.db, job.id)
    assert.deepEqual([...counts.keys()], orphans)
    for (const [digest, [intents, done, failed]] of counts) {
      assert.equal(done, 1, `${digest} done exactly once`)
      assert.deepEqual([intents, failed], failing.includes(digest) ? [2, 1] : [1, 0], `${digest}: intents and failures`)
    }
    assert.equal((await s.db.query(`SELECT status FROM regops_jobs WHERE id = $1`, [job.id])).rows[0].status, 'done')
  })

  test('quarantine on S3, metrics file equal to --json, restore through the CLI byte for byte; purge through the CLI', async () => {
    const s = await s3Store('quarantine')
    const orphans = await writeOrphans(s.w, 'quarantine', [], 4)
    await settle()
    const bytes = new Map<string, Buffer>()
    for (const d of orphans) bytes.set(d, await s.direct.readSmall(blob(d), 1 << 20))
    const metrics = join(dir, 'quarantine.prom')
    const q = await sweep(s.config, '--quarantine', '--metrics-file', metrics)
    assert.equal(q.code, 0, q.stdout + q.stderr)
    assert.equal(q.json.acted.quarantined, orphans.length)
    assert.deepEqual(await present(s.direct, orphans), [])
    for (const d of orphans)
      assert.ok(
        await s.direct.stat(`_regops/quarantine/job-${q.json.jobId}/${blob(d)}`),
        `${d} in the job's quarantine`,
      )
    const samples = parsePrometheus(await readFile(metrics, 'utf8'))
    const series = (name: string, labels: Record<string, string> = {}) =>
      valueOf(samples, `regops_sweep_${name}`, {region: 'eu', mode: 'quarantine', ...labels})
    assert.deepEqual(
      {
        objects_scanned: series('objects_scanned_total'),
        bytes_scanned: series('bytes_scanned_total'),
        candidates: series('candidates'),
        candidate_bytes: series('candidate_bytes'),
        deleted: series('deleted_total', {type: 'blob'}),
        quarantined: series('quarantined_total', {type: 'blob'}),
        acted_bytes: series('acted_bytes_total'),
        errors: series('errors_total'),
        runs: series('runs_total', {outcome: 'success'}),
      },
      {
        objects_scanned: q.json.scanned.blobs,
        bytes_scanned: q.json.scanned.bytes,
        candidates: q.json.candidates.count,
        candidate_bytes: q.json.candidates.bytes,
        deleted: 0,
        quarantined: orphans.length,
        acted_bytes: q.json.acted.bytes,
        errors: 0,
        runs: 1,
      },
    )
    assert.ok(series('duration_seconds') >= q.json.durationMs / 1000)

    const dry = await runCli(['sweep', 'restore', '--config', s.config, '--job', q.json.jobId, '--dry-run', '--json'])
    assert.equal(dry.code, 0, dry.stderr)
    assert.deepEqual(
      dry.json.items.map((i: {digest: string}) => i.digest),
      orphans,
    )
    assert.deepEqual(await present(s.direct, orphans), [], 'a dry-run restores nothing')
    const restored = await runCli(['sweep', 'restore', '--config', s.config, '--job', q.json.jobId, '--json'])
    assert.equal(restored.code, 0, restored.stdout + restored.stderr)
    assert.equal(restored.json.restored, orphans.length)
    for (const d of orphans)
      assert.ok((await s.direct.readSmall(blob(d), 1 << 20)).equals(bytes.get(d)!), `${d} restored byte for byte`)
    const left: string[] = []
    for await (const o of s.direct.list('_regops/')) left.push(o.key)
    assert.deepEqual(left, [], 'the quarantine is empty')

    // Quarantined again; one is referenced by a new image while it sits there; purge rescues it, deletes the rest.
    await settle()
    const q2 = await sweep(s.config, '--quarantine')
    assert.equal(q2.json.acted.quarantined, orphans.length)
    const revived = orphans[0]
    await s.w.writeImage({
      repository: 'team/app',
      tag: 'revived',
      seed: 'quarantine-revived',
      layers: 0,
      layerSize: 1,
      sharedLayers: [bytes.get(revived)!],
    })
    const purge = await runCli([
      'sweep',
      'purge',
      '--config',
      s.config,
      '--hold-for',
      '0s',
      '--force',
      '--delete',
      '--json',
    ])
    assert.equal(purge.code, 0, purge.stdout + purge.stderr)
    assert.deepEqual([purge.json.rescued, purge.json.purged], [1, orphans.length - 1])
    assert.deepEqual(await present(s.direct, orphans), [revived])
    assert.ok((await s.direct.readSmall(blob(revived), 1 << 20)).equals(bytes.get(revived)!))
  })

  test('a failed manifest deletion (--delete-untagged) keeps what that manifest references; the job exits 3', async () => {
    const s = await s3Store('manifest-fails')
    const untagged: WrittenImage = await s.w.writeImage({
      repository: 'team/app',
      seed: 'manifest-fails-untagged',
      layers: 2,
      layerSize: 500,
    })
    await settle()
    const revision = pathFor({kind: 'manifest-revision-link', repository: 'team/app', digest: untagged.manifestDigest})
    const body =
      '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>injected</Message></Error>'
    // The one untagged manifest is deleted alone: one DELETE of its revision link, refused here.
    const manifestDelete = (r: {method: string; path: string}) =>
      r.method === 'DELETE' && r.path.endsWith(`/${PREFIX}/${revision}`)
    proxy.setRules([
      {name: 'manifest-delete', match: manifestDelete, action: {kind: 'reply', status: 403, body}, times: 1},
    ])
    const run = await sweep(s.config, '--delete', '--delete-untagged')
    proxy.setRules([])
    assert.equal(proxy.fired('manifest-delete'), 1)
    assert.equal(run.code, 3, run.stdout + run.stderr)
    assert.equal(run.json.acted.manifestsDeleted, 0)
    assert.equal(run.json.acted.failed, 1)
    assert.ok(await s.direct.stat(revision), 'the manifest is still there')
    assert.deepEqual(
      (await present(s.direct, untagged.blobs)).sort(),
      [...untagged.blobs].sort(),
      'and so is everything it references',
    )
    const kept = await s.db.query(
      `SELECT digest FROM regops_sweep_candidates WHERE kind = 'blob' AND state = 'skipped' AND note = 'referenced by a kept manifest' ORDER BY digest`,
    )
    assert.deepEqual(
      kept.rows.map((r) => r.digest),
      [...untagged.blobs].sort(),
    )
  })
})

describe('the sweep on a filesystem store: re-check, resume and refusals', () => {
  const base = {
    strategy: 'storage' as const,
    minAgeMs: DAY,
    quarantinePrefix: '_regops/quarantine',
    logger,
    allowMassDelete: true,
  }

  async function fsStore(label: string) {
    const root = await tempDir(label)
    const driver = new FilesystemDriver('local', root)
    const w = new LayoutWriter(driver)
    const image = await w.writeImage({
      repository: 'team/app',
      tag: 'v1',
      seed: `${label}-image`,
      layers: 1,
      layerSize: 300,
    })
    return {root, driver, w, image}
  }

  test('the pre-act re-check: one orphan referenced again, one changed, one gone, between plan and act: exact counts, the rest deleted', async () => {
    const {root, driver, w} = await fsStore('recheck')
    const {db} = await freshDb()
    const orphans = await writeOrphans(w, 'recheck', [], 6)
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    const stop = new Error('stopped at the first re-check')
    await assert.rejects(
      sweepBlobs({...base, driver, db, mode: 'delete', hooks: {afterRecheck: () => Promise.reject(stop)}}),
      /stopped at the first re-check/,
    )
    const job = (await db.query(`SELECT id FROM regops_jobs`)).rows[0].id as string
    assert.deepEqual(await present(driver, orphans), orphans, 'the first run stopped before acting')
    const [referenced, changed, gone] = orphans
    // referenced again: a new image uses it; changed: rewritten with other bytes (a new upload); gone: deleted by someone else.
    await w.writeImage({
      repository: 'team/app',
      tag: 'new',
      seed: 'recheck-new',
      layers: 0,
      layerSize: 1,
      sharedLayers: [await driver.readSmall(blob(referenced), 1 << 20)],
    })
    await driver.write(blob(changed), Buffer.from('a different upload at the same key'))
    await driver.deleteMany([blob(gone)])
    const resumed = await sweepBlobs({driver, db, logger, resume: job})
    assert.deepEqual(resumed.skipped, {referencedAgain: 1, changed: 1, gone: 1})
    assert.deepEqual(resumed.acted, {
      deleted: 3,
      quarantined: 0,
      manifestsDeleted: 0,
      bytes: resumed.acted.bytes,
      failed: 0,
    })
    assert.deepEqual(await present(driver, orphans), [referenced, changed].sort())
    const notes = await db.query(
      `SELECT digest, note FROM regops_sweep_candidates WHERE job_id = $1 AND state = 'skipped' ORDER BY digest`,
      [job],
    )
    assert.deepEqual(
      notes.rows.map((r) => [r.digest, r.note]),
      [
        [referenced, 'referenced again'],
        [changed, 'changed'],
        [gone, 'gone'],
      ].sort(),
    )
    assert.deepEqual([...(await journalCounts(db, job)).keys()], orphans.slice(3))
  })

  test('resume from a plan-phase checkpoint: the planned prefixes are not planned again, and the end state is that of one run', async () => {
    const {root, driver, w} = await fsStore('plan-resume')
    const {db} = await freshDb()
    const orphans = await writeOrphans(w, 'plan-resume', ['00', '3f', '80', 'c1', 'ff'], 20)
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    const stop = new AbortController()
    // Stopped once 200 prefixes are merged (a fixed point: the plan's own progress).
    const stopped = sweepBlobs({
      ...base,
      driver,
      db,
      mode: 'delete',
      signal: stop.signal,
      onProgress: (p) => void (p.phase === 'plan' && p.shardsDone === 200 && stop.abort(new Error('SIGTERM'))),
    })
    await assert.rejects(stopped)
    const row = (await db.query(`SELECT id, status, checkpoint FROM regops_jobs`)).rows[0]
    assert.equal(row.checkpoint.phase, 'plan')
    const planned: string[] = row.checkpoint.planned
    // Checkpoints are written behind the merges, so how many made it before the stop varies with load;
    // what follows is decided by the checkpoint row as written.
    assert.ok(planned.length >= 1 && planned.length <= 200, `${planned.length} prefixes planned`)
    assert.deepEqual(
      planned,
      Array.from({length: planned.length}, (_, i) => i.toString(16).padStart(2, '0')),
      'in listing order',
    )
    assert.deepEqual(await present(driver, orphans), orphans, 'nothing acted on in the plan phase')
    const firstProgress: number[] = []
    const resumed = await sweepBlobs({
      driver,
      db,
      logger,
      resume: row.id,
      onProgress: (p) => void (p.phase === 'plan' && firstProgress.push(p.shardsDone)),
    })
    assert.equal(firstProgress[0], planned.length, 'the resume starts after the checkpoint')
    assert.equal(resumed.acted.deleted, orphans.length)
    assert.deepEqual(await present(driver, orphans), [])
    const counts = await journalCounts(db, row.id)
    assert.deepEqual([...counts.keys()], orphans)
    for (const [digest, c] of counts) assert.deepEqual(c, [1, 1, 0], `${digest} journaled once`)
    const candidates = await db.query(
      `SELECT digest, count(*)::int AS n FROM regops_sweep_candidates WHERE job_id = $1 GROUP BY digest HAVING count(*) > 1`,
      [row.id],
    )
    assert.deepEqual(candidates.rows, [])
  })

  test('resume on the wrong region is refused (exit 2) and leaves the job untouched; quarantine locations are refused naming sweep.quarantine', async () => {
    const {root, w} = await fsStore('region')
    const other = await tempDir('region-other')
    await writeOrphans(w, 'region', [], 2)
    await ageTree(root, new Date(Date.now() - 3 * DAY))
    const {db, url} = await freshDb()
    const config = join(root, '..', `region-${process.pid}.yaml`)
    cleanups.push(() => rm(config, {force: true}))
    const write = (quarantine: string) =>
      writeFile(
        config,
        `regions:\n  eu: {url: "file://${root}"}\n  us: {url: "file://${other}"}\nprimary: eu\ndatabase:\n  url: ${url}\nsweep: {quarantine: "${quarantine}"}\n`,
      )
    await write('eu:_regops/quarantine')
    const report = join(other, 'r.jsonl')
    const stopped = await runCli([
      'sweep',
      'blobs',
      '--config',
      config,
      '--delete',
      '--max-deletes',
      '1',
      '--report',
      report,
      '--json',
    ])
    assert.equal(stopped.code, 4, stopped.stdout + stopped.stderr)
    const before = (await db.query(`SELECT * FROM regops_jobs`)).rows
    assert.equal(before.length, 1)
    const wrong = await runCli([
      'sweep',
      'blobs',
      '--config',
      config,
      '--region',
      'us',
      '--resume',
      String(before[0].id),
      '--report',
      report,
      '--json',
    ])
    assert.equal(wrong.code, 2, wrong.stdout + wrong.stderr)
    assert.match(wrong.json.error.message, /ran on region 'eu', not 'us'/)
    assert.deepEqual((await db.query(`SELECT * FROM regops_jobs`)).rows, before, 'the job row is untouched')

    for (const [quarantine, why] of [
      ['eu:docker/blobs/../blobs/q', /\.\./],
      ['eu:blobs/quarantine', /inside the registry layout/],
      ['us:_regops/quarantine', /names region 'us' but the sweep runs in 'eu'/],
    ] as const) {
      await write(quarantine)
      const run = await runCli([
        'sweep',
        'blobs',
        '--config',
        config,
        '--quarantine',
        '--allow-mass-delete',
        '--report',
        report,
        '--json',
      ])
      assert.equal(run.code, 2, `${quarantine}: ${run.stdout}${run.stderr}`)
      assert.match(run.json.error.message, /sweep\.quarantine/, `${quarantine}: the field is named`)
      assert.match(run.json.error.message, why, quarantine)
    }
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM regops_jobs`)).rows[0].n, 1, 'no job started')
  })
})
