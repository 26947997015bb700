// A PostgreSQL failure in the middle of an acting sweep: the job stops with JobFailedError (exit 3),
// stays resumable, and --resume ends in the same state as an uninterrupted run.
import {after, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import pg from 'pg'
import {sharedPostgres} from '../../helpers/postgres.js'
import {openDatabase} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {LayoutWriter} from '../../../src/lib/sample/layout-writer.js'
import {ageTree} from '../../../src/lib/quickstart/sample.js'
import {sweepBlobs} from '../../../src/lib/sweep/sweep-blobs.js'
import {Logger} from '../../../src/lib/output/logger.js'
import {ExitCode, JobFailedError} from '../../../src/lib/errors.js'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

const DAY = 86_400_000

test('PostgreSQL going away between batches of --delete: JobFailedError (exit 3); --resume finishes with each action journaled once', async () => {
  const server = await sharedPostgres()
  const url = await server.createDatabase()
  const name = new URL(url).pathname.slice(1)
  const admin = new pg.Client({connectionString: server.adminUrl})
  await admin.connect()
  // Closed inside the test, not in an `after` hook: the shared server's own stop (registered first)
  // may already be under way then, and this session is not one it waits for.
  try {
    await sweepAgainstFailingDatabase(url, name, admin)
  } finally {
    await admin.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`).catch(() => undefined)
    await admin.end()
  }
})

async function sweepAgainstFailingDatabase(url: string, name: string, admin: pg.Client): Promise<void> {
  const setup = openDatabase(url, {max: 2})
  await migrateUp(setup)
  await setup.close()

  const root = await mkdtemp(join(tmpdir(), 'regops-sweep-dbfail-'))
  cleanups.push(() => rm(root, {recursive: true, force: true}))
  const store = new FilesystemDriver('local', root)
  const writer = new LayoutWriter(store, 16)
  await writer.writeImage({repository: 'app/web', tag: 'v1', seed: 'web', layers: 2, layerSize: 64})
  const orphans = await Promise.all(
    Array.from({length: 20}, (_, i) => writer.writeOrphan(undefined, `orphan-${i}`, 32)),
  )
  await ageTree(root, new Date(Date.now() - 3 * DAY))

  // The second batch's delete reaches storage, then the database refuses every connection and drops
  // the open ones: recording the outcomes fails. Deterministic: it happens inside the sweep's own call.
  let deletes = 0
  const failing = Object.create(store) as FilesystemDriver
  failing.deleteMany = async (keys: string[]) => {
    if (++deletes === 2) {
      await admin.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS false`)
      await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [name],
      )
    }
    return store.deleteMany(keys)
  }
  const logger = new Logger('silent')
  const settings = {
    strategy: 'storage' as const,
    minAgeMs: DAY,
    quarantinePrefix: '_regops/quarantine',
    logger,
    batchSize: 5,
    allowMassDelete: true,
  }
  const db = openDatabase(url, {max: 4})
  cleanups.push(() => db.close())
  let failure: unknown
  await sweepBlobs({...settings, driver: failing, db, mode: 'delete'}).catch((error: unknown) => (failure = error))
  assert.ok(failure instanceof JobFailedError, `JobFailedError, got ${String(failure)}`)
  assert.equal(failure.exitCode, ExitCode.Partial)
  assert.match(failure.hint ?? '', /--resume/)

  await admin.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`)
  const check = openDatabase(url, {max: 2})
  cleanups.push(() => check.close())
  const job = (await check.query(`SELECT id, status FROM regops_jobs WHERE kind = 'sweep-blobs'`)).rows[0]
  assert.equal(String(job.id), failure.jobId)
  // The dead worker could not mark its job: a resume waits for its heartbeat to go stale (aged here by hand).
  await check.query(`UPDATE regops_jobs SET heartbeat_at = now() - interval '5 minutes' WHERE id = $1`, [job.id])

  const resumed = await sweepBlobs({driver: store, db: check, resume: failure.jobId, logger, batchSize: 5})
  assert.equal(resumed.jobId, failure.jobId)
  assert.equal(resumed.acted.deleted, orphans.length, 'the summary counts the whole job, both runs')
  assert.equal(resumed.acted.failed, 0)
  const left: string[] = []
  for await (const o of store.list('blobs/')) left.push(o.key)
  assert.equal(left.length, 4, 'only the image (manifest, config, two layers) is left')
  const journal = await check.query(
    `SELECT digest, count(*) FILTER (WHERE phase = 'intent')::int AS intents, count(*) FILTER (WHERE phase = 'done')::int AS done
     FROM regops_journal WHERE job_id = $1 GROUP BY digest`,
    [job.id],
  )
  assert.equal(journal.rows.length, orphans.length)
  for (const row of journal.rows)
    assert.deepEqual([row.intents, row.done], [1, 1], `${row.digest} journaled exactly once`)
  assert.equal((await check.query(`SELECT status FROM regops_jobs WHERE id = $1`, [job.id])).rows[0].status, 'done')
}
