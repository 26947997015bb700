// Thin commands through the built CLI, against real PostgreSQL and a real docker-registry.
import {after, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, rm, utimes, writeFile, readdir} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../helpers/postgres.js'
import {startRegistry} from '../helpers/registry.js'
import {pushImage, startAbandonedUpload, pullImage, randomBlob} from '../helpers/images.js'
import {runCli} from '../helpers/cli.js'
import {ageTree} from '../../src/lib/quickstart/sample.js'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

test('db migrate: dry-run prints SQL and applies nothing; up, status, down, status', async () => {
  const url = await (await sharedPostgres()).createDatabase()
  const env = {DATABASE_URL: url}
  const dry = await runCli(['db', 'migrate', 'up', '--dry-run', '--json'], {env})
  assert.equal(dry.code, 0, dry.stderr)
  assert.equal(dry.json.dryRun, true)
  assert.match(dry.json.sql.join('\n'), /CREATE TABLE blobs/)
  const before = await runCli(['db', 'migrate', 'status', '--json'], {env})
  assert.equal(before.code, 1, 'pending migrations are something found')
  assert.equal(before.json.current, 0)
  const up = await runCli(['db', 'migrate', 'up', '--json'], {env})
  assert.equal(up.code, 0, up.stderr)
  const status = await runCli(['db', 'migrate', 'status', '--json'], {env})
  assert.equal(status.code, 0)
  assert.ok(status.json.migrations.every((m: {state: string}) => m.state === 'applied'))
  const down = await runCli(['db', 'migrate', 'down', '--json'], {env})
  assert.equal(down.code, 0, down.stderr)
  assert.equal(down.json.to, status.json.current - 1)
  // A sweep that needs the schema refuses while it is not current.
  const dir = await mkdtemp(join(tmpdir(), 'regops-db-cli-'))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  await writeFile(join(dir, 'r.yaml'), `regions:\n  local: {url: "file://${dir}"}\n`)
  const refused = await runCli(['sweep', 'blobs', '--config', join(dir, 'r.yaml'), '--delete', '--json'], {env})
  assert.equal(refused.code, 4, refused.stdout)
  assert.match(refused.json.error.hint ?? refused.json.error.message, /migrate up/)
  // Current again, a sweep with --delete runs as a job that jobs and journal show.
  assert.equal((await runCli(['db', 'migrate', 'up'], {env})).code, 0)
  await writeFile(join(dir, 'blobs.txt'), 'not a blob')
  const swept = await runCli(
    ['sweep', 'blobs', '--config', join(dir, 'r.yaml'), '--delete', '--report', join(dir, 'rep.jsonl'), '--json'],
    {env},
  )
  assert.equal(swept.code, 0, swept.stdout + swept.stderr)
  const jobs = await runCli(['jobs', 'list', '--json'], {env})
  assert.equal(jobs.code, 0)
  assert.equal(jobs.json.jobs[0].kind, 'sweep-blobs')
  assert.equal(jobs.json.jobs[0].status, 'done')
  const show = await runCli(['jobs', 'show', swept.json.jobId, '--json'], {env})
  assert.equal(show.json.job.id, swept.json.jobId)
  const missing = await runCli(['jobs', 'show', '999999', '--json'], {env})
  assert.equal(missing.code, 2)
  const badDigest = await runCli(['journal', '--digest', 'sha256:nope', '--json'], {env})
  assert.equal(badDigest.code, 2)
  assert.match(badDigest.json.error.message, /invalid digest/)
})

test('sweep uploads: finds an abandoned upload, deletes it only with --delete, the registry keeps working', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'regops-uploads-'))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  const root = join(dir, 'storage')
  const registry = await startRegistry({storage: {kind: 'filesystem', root}})
  cleanups.push(() => registry.stop())
  const url = await (await sharedPostgres()).createDatabase()
  const config = join(dir, 'regops.yaml')
  await writeFile(
    config,
    `regions:\n  main: {url: "file://${join(root, 'docker', 'registry', 'v2')}"}\ndatabase:\n  url: ${url}\n`,
  )
  assert.equal((await runCli(['db', 'migrate', 'up', '--config', config])).code, 0)
  await pushImage(registry.url, 'app/web', 'v1', {layers: 1, seed: 'uploads'})
  const old = await startAbandonedUpload(registry.url, 'app/web', randomBlob(500, 'partial'))
  // Each signal alone must spare an upload: one started long ago but written to just now (still going),
  // one whose files are old but whose startedat says it began just now.
  const stillWriting = await startAbandonedUpload(registry.url, 'app/web', randomBlob(300, 'still-writing'))
  const justStarted = await startAbandonedUpload(registry.url, 'app/web', randomBlob(200, 'just-started'))
  const uploadsDir = join(root, 'docker/registry/v2/repositories/app/web/_uploads')
  const tenDaysAgo = new Date(Date.now() - 10 * 86_400_000)
  await writeFile(join(uploadsDir, old.uuid, 'startedat'), tenDaysAgo.toISOString())
  await writeFile(join(uploadsDir, stillWriting.uuid, 'startedat'), tenDaysAgo.toISOString())
  await ageTree(root, tenDaysAgo)
  await writeFile(join(uploadsDir, justStarted.uuid, 'startedat'), new Date().toISOString())
  await utimes(join(uploadsDir, justStarted.uuid, 'startedat'), tenDaysAgo, tenDaysAgo)
  await writeFile(
    join(uploadsDir, stillWriting.uuid, 'data'),
    Buffer.concat([randomBlob(300, 'still-writing'), randomBlob(100, 'more')]),
  )
  const fresh = await startAbandonedUpload(registry.url, 'app/web', randomBlob(100, 'fresh'))

  const dry = await runCli(['sweep', 'uploads', '--config', config, '--json'])
  assert.equal(dry.code, 1, dry.stderr)
  assert.deepEqual(
    dry.json.items.map((u: {uuid: string}) => u.uuid),
    [old.uuid],
  )
  assert.equal((await readdir(uploadsDir)).length, 4, 'dry-run deletes nothing')
  const del = await runCli(['sweep', 'uploads', '--config', config, '--delete', '--json'])
  assert.equal(del.code, 0, del.stdout + del.stderr)
  assert.equal(del.json.deleted, 1)
  assert.deepEqual((await readdir(uploadsDir)).sort(), [fresh.uuid, stillWriting.uuid, justStarted.uuid].sort())
  assert.ok((await pullImage(registry.url, 'app/web', 'v1')).ok)
  const tooShort = await runCli(['sweep', 'uploads', '--config', config, '--older-than', '10m', '--json'])
  assert.equal(tooShort.code, 4)
})
