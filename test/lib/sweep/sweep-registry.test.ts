// The sweep against Debian's docker-registry (distribution 2.8), on filesystem and on S3 (radosgw),
// with the registry's own `garbage-collect --dry-run` as the oracle.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {startRegistry, startRegistryWithRegion, type RegistryServer} from '../../helpers/registry.js'
import {deleteManifest, pullImage, pushImage, pushIndex, randomBlob, uploadOrphanBlob} from '../../helpers/images.js'
import {runCli, startCli, reportDigests} from '../../helpers/cli.js'
import {ageTree} from '../../../src/lib/quickstart/sample.js'
import {openDatabase} from '../../../src/lib/metadata/db.js'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  return dir
}

interface Scenario {
  tags: Array<{repo: string; tag: string}>
  orphansByApi: string[]
  /** an untagged image that is no index's child: what --delete-untagged removes */
  untagged: string
  /** untagged children of the tagged index team/multi:latest: kept by regops, condemned by GC 2.8 -m */
  indexChildren: string[]
}

/** Images with shared layers, a multi-arch index, a manifest deleted through the API, and orphan uploads. */
async function populate(url: string): Promise<Scenario> {
  const shared = randomBlob(3000, 'shared-base')
  await pushImage(url, 'library/web', 'v1', {layers: [shared, randomBlob(2000, 'web-v1')], seed: 'web-v1'})
  await pushImage(url, 'library/web', 'v2', {
    layers: [shared, randomBlob(2000, 'web-v2')],
    seed: 'web-v2',
    mediaType: 'oci',
  })
  const amd = await pushImage(url, 'team/multi', undefined, {
    layers: [shared, randomBlob(1500, 'amd')],
    seed: 'amd',
    platform: {os: 'linux', architecture: 'amd64'},
  })
  const arm = await pushImage(url, 'team/multi', undefined, {
    layers: [shared, randomBlob(1500, 'arm')],
    seed: 'arm',
    platform: {os: 'linux', architecture: 'arm64'},
  })
  await pushIndex(url, 'team/multi', 'latest', [amd, arm], 'oci')
  const untagged = await pushImage(url, 'library/web', undefined, {
    layers: [shared, randomBlob(900, 'web-untagged')],
    seed: 'web-untagged',
  })
  const doomed = await pushImage(url, 'team/old', 'gone', {
    layers: [shared, randomBlob(2500, 'doomed')],
    seed: 'doomed',
  })
  await pushImage(url, 'team/old', 'kept', {layers: [randomBlob(800, 'kept')], seed: 'kept'})
  await deleteManifest(url, 'team/old', doomed.manifestDigest)
  const o1 = await uploadOrphanBlob(url, 'library/web', 4000, 'orphan-1')
  const o2 = await uploadOrphanBlob(url, 'team/old', 4100, 'orphan-2')
  return {
    tags: [
      {repo: 'library/web', tag: 'v1'},
      {repo: 'library/web', tag: 'v2'},
      {repo: 'team/multi', tag: 'latest'},
      {repo: 'team/old', tag: 'kept'},
    ],
    orphansByApi: [doomed.manifestDigest, doomed.configDigest, doomed.layerDigests[1], o1.digest, o2.digest].sort(),
    untagged: untagged.manifestDigest,
    indexChildren: [amd.manifestDigest, arm.manifestDigest].sort(),
  }
}

async function assertAllPull(url: string, tags: Scenario['tags']): Promise<void> {
  for (const {repo, tag} of tags) {
    const pulled = await pullImage(url, repo, tag)
    assert.ok(pulled.ok, `${repo}:${tag} pulls in full: ${pulled.errors.join('; ')}`)
  }
}

for (const kind of ['filesystem', 's3'] as const) {
  describe(`sweep vs docker-registry garbage-collect (${kind})`, () => {
    let registry: RegistryServer
    let config: string
    let dir: string
    let scenario: Scenario

    before(async () => {
      dir = await tempDir(`regops-oracle-${kind}-`)
      const dbUrl = await (await sharedPostgres()).createDatabase()
      const started = await startRegistryWithRegion(kind, dir, 'sweep-oracle')
      registry = started.registry
      const region = started.region
      cleanups.push(() => registry.stop())
      config = join(dir, 'regops.yaml')
      await writeFile(config, `regions:\n  main: ${region}\ndatabase:\n  url: ${dbUrl}\n`)
      scenario = await populate(registry.url)
      const migrated = await runCli(['db', 'migrate', 'up', '--config', config, '--json'])
      assert.equal(migrated.code, 0, migrated.stderr)
    })

    test('dry-run finds exactly what garbage-collect --dry-run would delete', async () => {
      const gc = await registry.garbageCollect({dryRun: true})
      assert.equal(gc.exitCode, 0, gc.output)
      assert.deepEqual(gc.eligibleBlobs, scenario.orphansByApi, 'the oracle agrees with the scenario')
      const report = join(dir, 'storage-strategy.jsonl')
      const res = await runCli([
        'sweep',
        'blobs',
        '--config',
        config,
        '--min-age',
        '0',
        '--force',
        '--report',
        report,
        '--json',
      ])
      assert.equal(res.code, 1, res.stderr)
      assert.equal(res.json.markComplete, true)
      assert.deepEqual(await reportDigests(report), gc.eligibleBlobs)
    })

    test("--delete-untagged: the untagged manifests are what garbage-collect --delete-untagged names, less a tagged index's children", async () => {
      const gc = await registry.garbageCollect({dryRun: true, deleteUntagged: true})
      assert.equal(gc.exitCode, 0, gc.output)
      // distribution 2.8 condemns the children of a tagged index (its issue #3178); regops keeps them
      assert.deepEqual(gc.eligibleManifests, [scenario.untagged, ...scenario.indexChildren].sort())
      const report = join(dir, 'untagged.jsonl')
      const res = await runCli([
        'sweep',
        'blobs',
        '--config',
        config,
        '--delete-untagged',
        '--min-age',
        '0',
        '--force',
        '--report',
        report,
        '--json',
      ])
      assert.equal(res.code, 1, res.stdout + res.stderr)
      const manifests = (await readFile(report, 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
        .filter((c) => c.kind === 'manifest')
      assert.deepEqual(
        manifests.map((c) => c.digest),
        gc.eligibleManifests.filter((d) => !scenario.indexChildren.includes(d)),
      )
    })

    test('after an import, --strategy metadata finds the same set', async () => {
      const gc = await registry.garbageCollect({dryRun: true})
      const imported = await runCli(['import', '--config', config, '--json'])
      assert.equal(imported.code, 0, imported.stdout + imported.stderr)
      const report = join(dir, 'metadata-strategy.jsonl')
      const res = await runCli([
        'sweep',
        'blobs',
        '--config',
        config,
        '--strategy',
        'metadata',
        '--min-age',
        '0',
        '--force',
        '--report',
        report,
        '--json',
      ])
      assert.equal(res.code, 1, res.stdout + res.stderr)
      assert.deepEqual(await reportDigests(report), gc.eligibleBlobs)
    })

    test('--delete removes them; every tag still pulls; garbage-collect finds nothing more', async () => {
      const res = await runCli([
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
        join(dir, 'delete.jsonl'),
        '--json',
      ])
      assert.equal(res.code, 0, res.stdout + res.stderr)
      assert.equal(res.json.acted.deleted, scenario.orphansByApi.length)
      await assertAllPull(registry.url, scenario.tags)
      const gc = await registry.garbageCollect({dryRun: true})
      assert.equal(gc.exitCode, 0, gc.output)
      assert.deepEqual(gc.eligibleBlobs, [])
      const journal = await runCli(['journal', '--config', config, '--job', res.json.jobId, '--json'])
      assert.equal(
        journal.json.entries.filter((e: {phase: string}) => e.phase === 'done').length,
        scenario.orphansByApi.length,
      )
    })
  })
}

describe('sweep while the registry takes pushes (filesystem)', () => {
  test('images pushed during --delete pull in full; a fresh upload without a manifest is untouched', async () => {
    const dir = await tempDir('regops-live-')
    const root = join(dir, 'storage')
    const registry = await startRegistry({storage: {kind: 'filesystem', root}})
    cleanups.push(() => registry.stop())
    const dbUrl = await (await sharedPostgres()).createDatabase()
    const config = join(dir, 'regops.yaml')
    await writeFile(
      config,
      `regions:\n  main: {url: "file://${join(root, 'docker', 'registry', 'v2')}"}\ndatabase:\n  url: ${dbUrl}\n`,
    )
    assert.equal((await runCli(['db', 'migrate', 'up', '--config', config])).code, 0)

    const scenario = await populate(registry.url)
    // Many old orphans, so the delete phase lasts while pushes go on.
    const bulk = []
    for (let i = 0; i < 300; i++) bulk.push(await uploadOrphanBlob(registry.url, 'bulk/orphans', 64, `bulk-${i}`))
    await ageTree(root, new Date(Date.now() - 3 * 86_400_000))
    const fresh = await uploadOrphanBlob(registry.url, 'library/web', 999, 'fresh-upload')

    const planted = [...scenario.orphansByApi, ...bulk.map((b) => b.digest)].sort()
    const sweep = startCli([
      'sweep',
      'blobs',
      '--config',
      config,
      '--delete',
      '--allow-mass-delete',
      '--report',
      join(dir, 'live.jsonl'),
      '--json',
    ])
    // A deterministic interleaving: once the act phase has journaled its first intents, the sweep is frozen
    // (SIGSTOP) while images are pushed, then let go; every push lands between its plan and its deletes.
    const db = openDatabase(dbUrl, {max: 1})
    cleanups.push(() => db.close())
    let exited = false
    const ended = () => (exited = true)
    void sweep.done.then(ended, ended)
    for (
      const deadline = Date.now() + 60_000;
      !exited && Date.now() < deadline;
      await new Promise((r) => setTimeout(r, 5))
    ) {
      const rows = await db.query(`SELECT count(*)::int AS n FROM regops_journal WHERE phase = 'intent'`)
      if (rows.rows[0].n > 0) break
    }
    assert.equal(exited, false, 'the sweep ended before its act phase could be caught')
    sweep.child.kill('SIGSTOP')
    const pushed: Scenario['tags'] = []
    try {
      // Pushes that reuse the shared base layer (whose blob is old) race the sweep.
      for (let i = 0; i < 8; i++) {
        await pushImage(registry.url, `live/app${i % 4}`, `t${i}`, {
          layers: [randomBlob(3000, 'shared-base'), randomBlob(700, `live-${i}`)],
          seed: `live-${i}`,
        })
        pushed.push({repo: `live/app${i % 4}`, tag: `t${i}`})
      }
    } finally {
      sweep.child.kill('SIGCONT')
    }
    const res = await sweep.done
    assert.equal(res.code, 0, res.stdout + res.stderr)
    assert.equal(res.json.acted.deleted, planted.length)
    assert.deepEqual(await reportDigests(join(dir, 'live.jsonl')), planted)
    const journaled = await db.query(
      `SELECT digest FROM regops_journal WHERE job_id = $1 AND phase = 'done' ORDER BY digest`,
      [res.json.jobId],
    )
    assert.deepEqual(
      journaled.rows.map((r) => r.digest),
      planted,
    )
    await assertAllPull(registry.url, [...scenario.tags, ...pushed])
    const freshRes = await fetch(`${registry.url}/v2/library/web/blobs/${fresh.digest}`, {method: 'HEAD'})
    assert.equal(freshRes.status, 200, 'the fresh upload is still there')
  })
})
