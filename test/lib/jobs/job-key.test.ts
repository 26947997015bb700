// Job keys, time boxes and --fail-on through the real CLI: a killed keyed run re-run with its key resumes
// the same job; a done one returns its result; a time-boxed sweep stops at its deadline (exit 3) and
// resumes to the end state of an uninterrupted run (S3 through a stalling proxy, so the run is long).
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {sharedRadosgw} from '../../helpers/radosgw.js'
import {startFaultProxy} from '../../helpers/fault-proxy.js'
import {runCli, startCli} from '../../helpers/cli.js'
import {openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {S3Driver} from '../../../src/lib/storage/s3.js'
import type {StorageDriver} from '../../../src/lib/storage/driver.js'
import {LayoutWriter} from '../../../src/lib/sample/layout-writer.js'
import {ageTree} from '../../../src/lib/quickstart/sample.js'

const DAY = 86_400_000
const PREFIX = 'docker/registry/v2'
const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

async function tempDir(label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `regops-jobkey-${label}-`))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  return dir
}

async function freshDb(): Promise<{db: Db; url: string}> {
  const url = await (await sharedPostgres()).createDatabase()
  const db = openDatabase(url, {max: 2})
  cleanups.push(() => db.close())
  await migrateUp(db)
  return {db, url}
}

/** Every blob digest the store holds, sorted. */
async function blobDigests(driver: StorageDriver): Promise<string[]> {
  const digests: string[] = []
  for await (const object of driver.list('blobs/'))
    if (object.key.endsWith('/data')) digests.push(`sha256:${object.key.split('/').at(-2)}`)
  return digests.sort()
}

const jobRows = (db: Db) =>
  db.query<{id: string; status: string; job_key: string | null}>(
    'SELECT id::text, status, job_key FROM regops_jobs ORDER BY id',
  )

describe('job keys and --fail-on on a filesystem store', () => {
  let root: string
  let config: string
  let db: Db
  let url: string

  before(async () => {
    root = await tempDir('fs')
    ;({db, url} = await freshDb())
    config = join(root, 'regops.yaml')
    await writeFile(config, `regions:\n  local: {url: "file://${join(root, 'store')}"}\ndatabase:\n  url: ${url}\n`)
    const w = new LayoutWriter(new FilesystemDriver('local', join(root, 'store')), 64)
    await w.writeImage({repository: 'app/web', tag: 'v1', seed: 'web', layers: 3, layerSize: 256})
    await Promise.all(Array.from({length: 3000}, (_, i) => w.writeOrphan(undefined, `bulk-${i}`, 64)))
    await ageTree(join(root, 'store'), new Date(Date.now() - 3 * DAY))
  })

  test('--fail-on never: a dry-run that finds orphans exits 0; usage errors keep exit 2', async () => {
    const found = await runCli(['sweep', 'blobs', '--config', config, '--report', join(root, 'a.jsonl'), '--json'])
    assert.equal(found.code, 1, found.stderr)
    assert.ok(found.json.candidates.count >= 3000)
    const scheduled = await runCli([
      'sweep',
      'blobs',
      '--config',
      config,
      '--report',
      join(root, 'b.jsonl'),
      '--fail-on',
      'never',
      '--json',
    ])
    assert.equal(scheduled.code, 0, scheduled.stderr)
    assert.equal(scheduled.json.candidates.count, found.json.candidates.count, 'the same findings, reported')
    const usage = await runCli(['sweep', 'blobs', '--config', config, '--fail-on', 'never', '--min-age', '48'])
    assert.equal(usage.code, 2, usage.stderr)
    const uploads = await runCli(['sweep', 'uploads', '--config', config, '--fail-on', 'never', '--json'])
    assert.equal(uploads.code, 0, uploads.stderr)
  })

  test('a keyed sweep killed midway and re-run with its key resumes the same job; done, the key returns its result', async () => {
    const key = 'wf-sweep-x7k2p-0'
    const sweep = (...extra: string[]) => [
      'sweep',
      'blobs',
      '--config',
      config,
      '--delete',
      '--allow-mass-delete',
      '--report',
      join(root, `r-${extra.join('')}.jsonl`),
      '--job-key',
      key,
      '--json',
      ...extra,
    ]
    const run = startCli(sweep())
    // The kill point: some deletions journaled (a fixed count, not a time).
    let exited = false
    void run.done.then(() => (exited = true))
    for (const deadline = Date.now() + 60_000; Date.now() < deadline && !exited;) {
      const rows = await db.query(`SELECT count(*)::int AS n FROM regops_journal WHERE phase = 'done'`)
      if (rows.rows[0].n > 200) break
      await new Promise((r) => setTimeout(r, 10))
    }
    assert.equal(exited, false, 'the sweep ended before it could be killed: make the store larger')
    run.child.kill('SIGKILL')
    assert.equal((await run.done).signal, 'SIGKILL')
    const killed = (await jobRows(db)).rows
    assert.deepEqual(
      killed.map((j) => [j.status, j.job_key]),
      [['running', key]],
    )
    // The dead worker's heartbeat is aged by hand, as a minute would pass before Argo's retry.
    await db.query(`UPDATE regops_jobs SET heartbeat_at = now() - interval '5 minutes'`)

    // Other settings under the same key: refused, and the job is left as it was.
    const other = await runCli(sweep('--max-deletes', '5'))
    assert.equal(other.code, 4, other.stdout + other.stderr)
    assert.match(other.json.error.message, new RegExp(`job key '${key}' names job ${killed[0].id}.*maxDeletes`))
    assert.deepEqual((await jobRows(db)).rows, killed, 'the job untouched')

    const resumed = await runCli(sweep())
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr)
    assert.equal(resumed.json.jobId, killed[0].id, 'the same job resumed')
    const list = await runCli(['jobs', 'list', '--config', config, '--json'])
    assert.deepEqual(
      list.json.jobs.map((j: {id: string; status: string; key: string}) => [j.id, j.status, j.key]),
      [[killed[0].id, 'done', key]],
      'one job, done',
    )
    const journaled = await db.query(
      `SELECT count(*)::int AS n, count(DISTINCT digest)::int AS d FROM regops_journal WHERE action = 'delete' AND phase = 'done'`,
    )
    assert.equal(journaled.rows[0].n, journaled.rows[0].d, 'each deletion journaled once')
    assert.equal(journaled.rows[0].n, resumed.json.acted.deleted)

    // Done: the key returns the stored result, and nothing runs (no new job, no journal row).
    const journalBefore = (await db.query('SELECT count(*)::int AS n FROM regops_journal')).rows[0].n
    const again = await runCli(sweep())
    assert.equal(again.code, 0, again.stderr)
    assert.equal(again.json.jobId, killed[0].id)
    assert.deepEqual(again.json.acted, resumed.json.acted)
    assert.equal((await db.query('SELECT count(*)::int AS n FROM regops_journal')).rows[0].n, journalBefore)
    assert.equal((await jobRows(db)).rows.length, 1)

    // The key of a sweep job named by an import: refused (exit 4).
    const wrongKind = await runCli(['import', '--config', config, '--job-key', key, '--json'])
    assert.equal(wrongKind.code, 4, wrongKind.stdout + wrongKind.stderr)
    assert.match(wrongKind.json.error.message, /is a sweep-blobs job, not import/)
    const both = await runCli(['import', '--config', config, '--job-key', key, '--resume', killed[0].id])
    assert.equal(both.code, 2, both.stderr)
  })

  test('--window: outside it the run is refused (exit 4) before any job exists, saying when it opens', async () => {
    const hour = (new Date().getUTCHours() + 2) % 24
    const window = `${String(hour).padStart(2, '0')}:00-${String((hour + 1) % 24).padStart(2, '0')}:00`
    const jobsBefore = (await jobRows(db)).rows.length
    const refused = await runCli(['import', '--config', config, '--window', window, '--json'])
    assert.equal(refused.code, 4, refused.stdout + refused.stderr)
    assert.equal(refused.json.error.code, 'OUTSIDE_WINDOW')
    assert.match(refused.json.error.message, new RegExp(`outside the window ${window} UTC: it opens at `))
    assert.equal((await jobRows(db)).rows.length, jobsBefore, 'no job created')
  })
})

describe('a time-boxed sweep on S3 (radosgw behind a stalling proxy)', () => {
  test('--max-duration 5s stops at about 5 s with exit 3; --resume reaches the end state of an uninterrupted run', async () => {
    const rgw = await sharedRadosgw()
    const proxy = await startFaultProxy({target: rgw.endpoint, seed: 14})
    cleanups.push(() => proxy.close())
    const dir = await tempDir('s3')
    const stores: Array<{bucket: string; config: string; db: Db; direct: StorageDriver}> = []
    for (const label of ['boxed', 'whole']) {
      const bucket = await rgw.newBucket(`timebox-${label}`)
      const direct = new S3Driver({
        kind: 's3',
        name: 'eu',
        url: `s3://${bucket}/${PREFIX}`,
        bucket,
        prefix: PREFIX,
        region: 'us-east-1',
        endpoint: rgw.endpoint,
        forcePathStyle: true,
        checksums: 'when_required',
        concurrency: 16,
        accessKeyId: rgw.accessKeyId,
        secretAccessKey: rgw.secretAccessKey,
      })
      cleanups.push(() => direct.close())
      const w = new LayoutWriter(direct)
      await w.writeImage({repository: 'team/app', tag: 'v1', seed: 'timebox-image', layers: 2, layerSize: 400})
      for (let i = 0; i < 40; i++) await w.writeOrphan('team/app', `timebox-${i}`, 300 + i)
      const {db, url} = await freshDb()
      const config = join(dir, `${label}.yaml`)
      await writeFile(
        config,
        `regions:\n  eu: {url: "s3://${bucket}/${PREFIX}", endpoint: "${proxy.endpoint}", region: us-east-1, checksums: when_required, accessKeyId: "${rgw.accessKeyId}", secretAccessKey: "${rgw.secretAccessKey}"}\ndatabase:\n  url: ${url}\n`,
      )
      stores.push({bucket, config, db, direct})
    }
    const [boxed, whole] = stores
    assert.deepEqual(await blobDigests(boxed.direct), await blobDigests(whole.direct), 'two identical stores')
    await new Promise((r) => setTimeout(r, 1100))
    // S3 objects cannot be back-dated: --min-age 0 (everything written before the sweep is old).
    const sweep = (config: string, ...extra: string[]) =>
      runCli([
        'sweep',
        'blobs',
        '--config',
        config,
        '--min-age',
        '0',
        '--force',
        '--allow-mass-delete',
        '--concurrency',
        '2',
        '--report',
        join(dir, `r-${Date.now()}.jsonl`),
        '--json',
        ...extra,
      ])
    // Every listing of the blob store holds 30 s: the sweep cannot end before its 5 s box, and a stop that
    // waited for the requests in flight would take 30 s.
    proxy.setRules([
      {
        name: 'slow-blob-listing',
        match: (r) => r.method === 'GET' && (r.query.get('prefix') ?? '').startsWith(`${PREFIX}/blobs`),
        action: {kind: 'stall', ms: 30_000},
      },
    ])
    const started = Date.now()
    const stopped = await sweep(boxed.config, '--delete', '--max-duration', '5s')
    const elapsed = Date.now() - started
    proxy.setRules([])
    assert.equal(stopped.code, 3, stopped.stdout + stopped.stderr)
    assert.equal(stopped.json.error.code, 'TIME_BOX')
    assert.equal(stopped.json.error.details.stoppedBy, 'max-duration')
    assert.ok(elapsed >= 5000 && elapsed < 15_000, `stopped after ${elapsed} ms`)
    assert.ok(proxy.fired('slow-blob-listing') > 0, 'the listing was held')
    const outcomes = await boxed.db.query(`SELECT count(*)::int AS n FROM regops_journal WHERE phase = 'done'`)
    assert.ok(outcomes.rows[0].n < 40, `stopped before the end (${outcomes.rows[0].n} of 40 deleted)`)
    const job = (await jobRows(boxed.db)).rows
    assert.deepEqual(
      job.map((j) => j.status),
      ['interrupted'],
    )
    assert.match(stopped.json.error.hint, new RegExp(`--resume ${job[0].id}`))

    const resumed = await sweep(boxed.config, '--resume', job[0].id)
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr)
    const uninterrupted = await sweep(whole.config, '--delete')
    assert.equal(uninterrupted.code, 0, uninterrupted.stdout + uninterrupted.stderr)
    assert.equal(resumed.json.acted.deleted, uninterrupted.json.acted.deleted)
    assert.equal(uninterrupted.json.acted.deleted, 40)
    assert.deepEqual(await blobDigests(boxed.direct), await blobDigests(whole.direct), 'the same end state')
  })
})
