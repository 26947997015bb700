// A job's requests in flight each add an abort listener to the job's signal: an import reads 8
// repositories at once, each listing its _layers links and tags while it reads its manifests. Past Node's
// threshold of 10 that is no leak, and --log-level debug must not show "Possible EventTarget memory leak".
import {after, test} from 'node:test'
import assert from 'node:assert/strict'
import {setImmediate as tick} from 'node:timers/promises'
import {sharedPostgres} from '../../helpers/postgres.js'
import {openDatabase} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {runJob} from '../../../src/lib/jobs/runner.js'
import {Logger} from '../../../src/lib/output/logger.js'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

test("a job's signal takes a listener per request in flight without a leak warning", async () => {
  const db = openDatabase(await (await sharedPostgres()).createDatabase(), {max: 4})
  cleanups.push(() => db.close())
  await migrateUp(db)
  const warnings: string[] = []
  const onWarning = (warning: Error) => warnings.push(warning.name)
  process.on('warning', onWarning)
  cleanups.push(async () => void process.off('warning', onWarning))
  const listeners = await runJob(
    db,
    {kind: 'signal-test', params: {}, region: 'main', logger: new Logger('silent')},
    async (job) => {
      assert.ok(job.id !== null)
      for (let i = 0; i < 64; i++) job.signal.addEventListener('abort', () => {})
      await tick()
      await tick()
      return {result: 64, stats: {}}
    },
  )
  assert.equal(listeners, 64)
  assert.deepEqual(warnings, [])
})
