// doctor shows what the registry caches blob descriptors in, and reaches a redis one: a sweep evicts
// through it, so an unreachable redis must show before a sweep needs it.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {startRedis, type RedisServer} from '../../helpers/redis.js'
import {loadConfigFromText} from '../../../src/lib/config/config.js'
import {runDoctor} from '../../../src/lib/doctor/doctor.js'

let redis: RedisServer
let dir: string
before(async () => {
  redis = await startRedis()
  dir = await mkdtemp(join(tmpdir(), 'regops-doctor-cache-'))
})
after(async () => {
  await redis?.stop()
  await rm(dir, {recursive: true, force: true})
})

async function cacheRow(cache: string | undefined) {
  const dbUrl = await (await sharedPostgres()).createDatabase()
  const text = [
    `database:\n  url: ${dbUrl}`,
    `regions:\n  local: {url: "file://${dir}", empty: true}`,
    ...(cache ? [`registry:\n  url: http://127.0.0.1:1\n  cache: "${cache}"`] : []),
  ].join('\n')
  const result = await runDoctor(loadConfigFromText(text + '\n', 'test.yaml', {}), {
    writeCheck: false,
    timeoutMs: 10_000,
  })
  const row = result.checks.find((c) => c.component === 'registry-cache')
  assert.ok(row, JSON.stringify(result.checks))
  return row
}

test('a reachable redis is ok, an unreachable one fails without showing its password', async () => {
  const ok = await cacheRow(redis.url)
  assert.deepEqual([ok.status, /PONG/.test(ok.detail)], ['ok', true], ok.detail)
  const down = await cacheRow('redis://:cache-s3cret@127.0.0.1:1/0')
  assert.equal(down.status, 'fail', down.detail)
  assert.match(down.detail, /127\.0\.0\.1:1/)
  assert.doesNotMatch(JSON.stringify(down), /cache-s3cret/)
})

test('an in-process cache warns that acting needs the registry read-only; none is skipped', async () => {
  const inmemory = await cacheRow('inmemory')
  assert.equal(inmemory.status, 'warn')
  assert.match(inmemory.detail, /--registry-read-only/)
  assert.equal((await cacheRow(undefined)).status, 'skip')
})
