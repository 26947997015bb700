// A tagged index whose child was deleted by digest through the registry API: its revision link is gone,
// its manifest blob stays. The registry's GC keeps that blob (its mark follows an index's children by
// digest, linked or not), and so must both strategies, also once the manifests are older than the import
// (so the metadata strategy's catch-up walk no longer re-reads the index).
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {startRadosgw, type RadosgwServer} from '../../helpers/radosgw.js'
import {startRegistry, type RegistryServer, s3RegionYaml} from '../../helpers/registry.js'
import {deleteManifest, pullImage, pushImage, pushIndex, randomBlob} from '../../helpers/images.js'
import {runCli, reportDigests} from '../../helpers/cli.js'
import {startFaultProxy} from '../../helpers/fault-proxy.js'
import {ageTree} from '../../../src/lib/quickstart/sample.js'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

for (const kind of ['filesystem', 's3'] as const) {
  describe(`a tagged index's deleted child (${kind})`, () => {
    let registry: RegistryServer
    let rgw: RadosgwServer | undefined
    let dir: string
    let config: string
    let dbUrl: string
    let deletedChild: string

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), `regops-index-child-${kind}-`))
      cleanups.push(() => rm(dir, {recursive: true, force: true}))
      dbUrl = await (await sharedPostgres()).createDatabase()
      let region: string
      if (kind === 's3') {
        rgw = await startRadosgw({buckets: ['registry']})
        cleanups.push(() => rgw!.stop())
        registry = await startRegistry({
          storage: {
            kind: 's3',
            endpoint: rgw.endpoint,
            bucket: 'registry',
            accessKeyId: rgw.accessKeyId,
            secretAccessKey: rgw.secretAccessKey,
            region: rgw.region,
          },
        })
        // S3 objects cannot be back-dated: regops reads radosgw through a proxy whose listings show every
        // object three days older (the S3 counterpart of ageTree below); the registry talks to radosgw directly.
        const proxy = await startFaultProxy({target: rgw.endpoint})
        cleanups.push(() => proxy.close())
        proxy.setRules([
          {
            name: 'age',
            match: (r) => r.method === 'GET' && r.query.get('list-type') === '2',
            action: {kind: 'shift-clock', ms: -3 * 86_400_000},
          },
        ])
        region = s3RegionYaml({...rgw, bucket: 'registry', endpoint: proxy.endpoint})
      } else {
        registry = await startRegistry({storage: {kind: 'filesystem', root: join(dir, 'storage')}})
        region = `{url: "file://${join(dir, 'storage', 'docker', 'registry', 'v2')}"}`
      }
      cleanups.push(() => registry.stop())
      config = join(dir, 'regops.yaml')
      await writeFile(config, `regions:\n  main: ${region}\ndatabase:\n  url: ${dbUrl}\n`)

      const shared = randomBlob(2000, 'child-shared')
      const amd = await pushImage(registry.url, 'team/multi', undefined, {
        layers: [shared, randomBlob(1500, 'c-amd')],
        seed: 'c-amd',
        platform: {os: 'linux', architecture: 'amd64'},
      })
      const arm = await pushImage(registry.url, 'team/multi', undefined, {
        layers: [shared, randomBlob(1500, 'c-arm')],
        seed: 'c-arm',
        platform: {os: 'linux', architecture: 'arm64'},
      })
      await pushIndex(registry.url, 'team/multi', 'latest', [amd, arm], 'oci')
      await pushImage(registry.url, 'team/single', 'v1', {layers: [randomBlob(900, 'c-single')], seed: 'c-single'})
      await deleteManifest(registry.url, 'team/multi', arm.manifestDigest)
      deletedChild = arm.manifestDigest

      assert.equal((await runCli(['db', 'migrate', 'up', '--config', config])).code, 0)
      if (kind === 'filesystem') await ageTree(join(dir, 'storage'), new Date(Date.now() - 3 * 86_400_000))
      const imported = await runCli(['import', '--config', config, '--json'])
      // Import reports the index's edge to a child that is not a manifest of the repository (exit 1: found something).
      assert.equal(imported.code, 1, imported.stdout + imported.stderr)
      assert.deepEqual(
        imported.json.problems.map((p: {kind: string; message: string}) => [p.kind, p.message.includes(deletedChild)]),
        [['missing-child', true]],
      )
    })

    test('garbage-collect, --strategy storage and --strategy metadata name the same candidates, and keep the child manifest blob', async () => {
      const gc = await registry.garbageCollect({dryRun: true})
      assert.equal(gc.exitCode, 0, gc.output)
      assert.ok(!gc.eligibleBlobs.includes(deletedChild), 'the oracle keeps the deleted child manifest blob')
      assert.ok(gc.eligibleBlobs.length > 0, 'the child-only config and layer are eligible')

      const storageReport = join(dir, 'storage.jsonl')
      const storage = await runCli([
        'sweep',
        'blobs',
        '--config',
        config,
        '--min-age',
        '0',
        '--force',
        '--report',
        storageReport,
        '--json',
      ])
      assert.equal(storage.code, 1, storage.stdout + storage.stderr)
      assert.deepEqual(await reportDigests(storageReport), gc.eligibleBlobs)

      const metadataReport = join(dir, 'metadata.jsonl')
      const metadata = await runCli([
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
        metadataReport,
        '--json',
      ])
      assert.equal(metadata.code, 1, metadata.stdout + metadata.stderr)
      assert.deepEqual(await reportDigests(metadataReport), gc.eligibleBlobs)
      assert.equal((await pullImage(registry.url, 'team/single', 'v1')).ok, true)
    })
  })
}
