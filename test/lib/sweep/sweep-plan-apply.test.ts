// Plan, review, apply: `sweep blobs --plan-out` on a docker-registry test bed, then `sweep apply`, which
// acts on exactly the plan's candidates and refuses (exit 4) a plan altered by one byte, a plan older
// than --max-age, and a plan whose store changed under it.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {startRegistryWithRegion, type RegistryServer} from '../../helpers/registry.js'
import {deleteManifest, pullImage, pushImage, randomBlob, uploadOrphanBlob} from '../../helpers/images.js'
import {runCli} from '../../helpers/cli.js'
import {sleep} from '../../helpers/tmp.js'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

/** Every blob digest in the filesystem store. */
async function storedBlobs(root: string): Promise<string[]> {
  const digests: string[] = []
  const base = join(root, 'blobs', 'sha256')
  for (const two of await readdir(base)) for (const hex of await readdir(join(base, two))) digests.push(`sha256:${hex}`)
  return digests.sort()
}

async function planCandidates(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line))
    .filter((l) => l.line === 'candidate' && l.kind === 'blob')
    .map((l) => l.digest as string)
    .sort()
}

describe('sweep blobs --plan-out, then sweep apply (docker-registry on the filesystem)', () => {
  let registry: RegistryServer
  let config: string
  let dir: string
  let root: string
  const tags = [
    {repo: 'library/web', tag: 'v1'},
    {repo: 'team/app', tag: 'kept'},
  ]

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'regops-plan-apply-'))
    cleanups.push(() => rm(dir, {recursive: true, force: true}))
    const dbUrl = await (await sharedPostgres()).createDatabase()
    const started = await startRegistryWithRegion('filesystem', dir, 'plan-apply')
    registry = started.registry
    cleanups.push(() => registry.stop())
    root = join(dir, 'storage', 'docker', 'registry', 'v2')
    config = join(dir, 'regops.yaml')
    await writeFile(config, `regions:\n  main: ${started.region}\ndatabase:\n  url: ${dbUrl}\n`)
    const url = registry.url
    const shared = randomBlob(3000, 'shared-base')
    await pushImage(url, 'library/web', 'v1', {layers: [shared, randomBlob(2000, 'web-v1')], seed: 'web-v1'})
    await pushImage(url, 'team/app', 'kept', {layers: [shared, randomBlob(800, 'kept')], seed: 'kept'})
    const doomed = await pushImage(url, 'team/app', 'gone', {layers: [shared, randomBlob(2500, 'doomed')], seed: 'x'})
    await deleteManifest(url, 'team/app', doomed.manifestDigest)
    await uploadOrphanBlob(url, 'library/web', 4000, 'orphan-1')
    await uploadOrphanBlob(url, 'team/app', 4100, 'orphan-2')
    const migrated = await runCli(['db', 'migrate', 'up', '--config', config, '--json'])
    assert.equal(migrated.code, 0, migrated.stderr)
  })

  const plan = async (name: string) => {
    const file = join(dir, name)
    const res = await runCli([
      'sweep',
      'blobs',
      '--config',
      config,
      '--min-age',
      '0',
      '--force',
      '--allow-mass-delete',
      '--report',
      join(dir, `${name}.report.jsonl`),
      '--plan-out',
      file,
      '--json',
    ])
    assert.equal(res.code, 1, res.stdout + res.stderr)
    assert.equal(res.json.plan.file, file)
    assert.match(res.json.plan.hash, /^sha256:[0-9a-f]{64}$/)
    return {file, sweep: res.json}
  }
  const apply = (file: string, ...flags: string[]) =>
    runCli(['sweep', 'apply', file, '--config', config, '--json', ...flags])

  test('--plan-out is refused with --delete or --quarantine', async () => {
    for (const acting of ['--delete', '--quarantine']) {
      const res = await runCli(['sweep', 'blobs', '--config', config, '--plan-out', join(dir, 'x.jsonl'), acting])
      assert.equal(res.code, 2, res.stdout + res.stderr)
      assert.match(res.stderr, /plan-out/)
    }
  })

  test('a plan altered by one byte is refused (exit 4), naming the mismatch; the plan as written verifies', async () => {
    const {file} = await plan('altered.jsonl')
    const dry = await apply(file)
    assert.equal(dry.code, 1, dry.stdout + dry.stderr)
    assert.equal(dry.json.kind, 'sweep-apply')
    assert.equal(dry.json.mode, 'dry-run')
    const bytes = await readFile(file)
    // One byte of a candidate's size: 4000 → 5000, still valid JSON.
    const at = bytes.indexOf('"size":4000')
    assert.ok(at > 0)
    const altered = Buffer.from(bytes)
    altered[at + '"size":'.length] = '5'.charCodeAt(0)
    const alteredFile = join(dir, 'altered-copy.jsonl')
    await writeFile(alteredFile, altered)
    const res = await apply(alteredFile, '--delete')
    assert.equal(res.code, 4, res.stdout + res.stderr)
    assert.equal(res.json.error.code, 'PLAN_ALTERED')
    assert.match(res.json.error.message, /its body hashes to sha256:[0-9a-f]{64}, its seal says sha256:[0-9a-f]{64}/)
    // A byte after the seal, or one in the seal itself, is an alteration too.
    await writeFile(alteredFile, Buffer.concat([bytes, Buffer.from(' ')]))
    assert.equal((await apply(alteredFile)).code, 4)
    const sealed = Buffer.from(bytes)
    sealed[sealed.length - 3] = sealed[sealed.length - 3] === 0x61 ? 0x62 : 0x61
    await writeFile(alteredFile, sealed)
    assert.equal((await apply(alteredFile)).code, 4)
  })

  test('a plan older than --max-age is refused (exit 4)', async () => {
    const {file} = await plan('old.jsonl')
    await sleep(1500)
    const res = await apply(file, '--max-age', '1s', '--delete')
    assert.equal(res.code, 4, res.stdout + res.stderr)
    assert.equal(res.json.error.code, 'PLAN_STALE')
    assert.match(res.json.error.message, /longer than --max-age 1s/)
    assert.equal((await apply(file)).code, 1, 'the default --max-age (24h) takes it')
  })

  test('apply --delete acts on exactly the candidates of the plan; every tag still pulls', async () => {
    const {file, sweep} = await plan('exact.jsonl')
    const candidates = await planCandidates(file)
    assert.equal(candidates.length, 5)
    assert.equal(candidates.length, sweep.candidates.count)
    const before = await storedBlobs(root)
    const res = await apply(file, '--delete')
    assert.equal(res.code, 0, res.stdout + res.stderr)
    assert.equal(res.json.acted.deleted, candidates.length)
    assert.ok(res.json.jobId)
    const afterApply = await storedBlobs(root)
    const removed = before.filter((d) => !afterApply.includes(d))
    assert.deepEqual(removed, candidates)
    for (const {repo, tag} of tags) assert.ok((await pullImage(registry.url, repo, tag)).ok, `${repo}:${tag} pulls`)
    // The journal holds one done delete per candidate, under the apply's job.
    const journal = await runCli(['journal', '--config', config, '--job', res.json.jobId, '--json'])
    assert.equal(journal.code, 0, journal.stderr)
  })

  test('a push after the plan (a new tag on a candidate layer) makes apply refuse (exit 4); nothing is deleted', async () => {
    const layer = randomBlob(3300, 'revived')
    const orphan = await uploadOrphanBlob(registry.url, 'team/app', layer.length, 'revived')
    const {file} = await plan('pushed.jsonl')
    assert.ok((await planCandidates(file)).includes(orphan.digest))
    await pushImage(registry.url, 'team/app', 'revived', {layers: [layer], seed: 'revived'})
    const before = await storedBlobs(root)
    const res = await apply(file, '--delete')
    assert.equal(res.code, 4, res.stdout + res.stderr)
    assert.equal(res.json.error.code, 'PLAN_STORE_CHANGED')
    assert.match(res.json.error.message, /repositories\/ held \d+ objects/)
    assert.deepEqual(await storedBlobs(root), before)
    assert.ok((await pullImage(registry.url, 'team/app', 'revived')).ok)
  })
})
