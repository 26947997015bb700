// The act lock: two jobs that want the same region at the same moment. Each tries 256 prefix locks in
// one statement; unserialized, the two statements interleave, each gets some prefixes and misses
// others, and both are refused (the reliability suite's racing sweeps saw it: exit 4 and 4). Exactly one
// must get the lock, every time.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {sharedPostgres} from '../../helpers/postgres.js'
import {openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {acquireJobLock, regionLockScope, type HeldLock} from '../../../src/lib/jobs/lock.js'
import {RefusedError} from '../../../src/lib/errors.js'
import {ALL_SHARDS} from '../../../src/lib/storage/layout.js'

let a: Db
let b: Db
before(async () => {
  const url = await (await sharedPostgres()).createDatabase()
  a = openDatabase(url, {max: 2})
  b = openDatabase(url, {max: 2})
})
after(async () => {
  await a?.close()
  await b?.close()
})

const attempt = (db: Db, prefixes: string[]): Promise<{held?: HeldLock}> =>
  acquireJobLock(db, regionLockScope('racing', prefixes)).then(
    (held) => ({held}),
    (error: unknown) => {
      assert.ok(error instanceof RefusedError, String(error))
      return {}
    },
  )

test('two jobs racing for the same region: exactly one gets it, every time', async () => {
  const all = [...ALL_SHARDS]
  for (let trial = 0; trial < 60; trial++) {
    const outcomes = await Promise.all([attempt(a, all), attempt(b, all)])
    const holders = outcomes.filter((o) => o.held)
    assert.equal(holders.length, 1, `trial ${trial}: ${holders.length} of 2 got the lock`)
    await holders[0]!.held!.release()
  }
})

test('shards of one region on disjoint prefixes both get it; overlapping ones, one of them', async () => {
  const low = ALL_SHARDS.slice(0, 128)
  const high = ALL_SHARDS.slice(128)
  const both = await Promise.all([attempt(a, low), attempt(b, high)])
  assert.ok(both.every((o) => o.held))
  for (const o of both) await o.held!.release()
  const overlapping = await Promise.all([attempt(a, ALL_SHARDS.slice(0, 200)), attempt(b, ALL_SHARDS.slice(100))])
  assert.equal(overlapping.filter((o) => o.held).length, 1)
  for (const o of overlapping) await o.held?.release()
})
