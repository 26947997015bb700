// `report usage` against Debian's docker-registry 2.8, on the filesystem and on radosgw (S3): two
// namespaces sharing a layer, a manifest deleted through the API (its blobs are orphans), an abandoned
// upload (on S3 its data is a pending multipart upload), a quarantined blob and a stray key. The
// categories must add up to what a direct listing of the storage holds.
import {after, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdir, mkdtemp, readdir, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {ListObjectsV2Command, PutObjectCommand, type S3Client} from '@aws-sdk/client-s3'
import {runCli} from '../../helpers/cli.js'
import {startRegistryWithRegion} from '../../helpers/registry.js'
import {deleteManifest, digestOf, pushImage, randomBlob, startAbandonedUpload} from '../../helpers/images.js'

const cleanups: Array<() => Promise<unknown>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

const ROOT = 'docker/registry/v2'

/** Writes and lists the registry's storage directly, not through regops. */
interface Storage {
  put(key: string, body: Buffer): Promise<void>
  total(): Promise<{objects: number; bytes: number}>
}

function filesystemStorage(root: string): Storage {
  const walk = async (dir: string): Promise<{objects: number; bytes: number}> => {
    const sum = {objects: 0, bytes: 0}
    for (const entry of await readdir(dir, {withFileTypes: true})) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) {
        const inner = await walk(path)
        sum.objects += inner.objects
        sum.bytes += inner.bytes
      } else {
        sum.objects++
        sum.bytes += (await stat(path)).size
      }
    }
    return sum
  }
  return {
    async put(key, body) {
      await mkdir(dirname(join(root, key)), {recursive: true})
      await writeFile(join(root, key), body)
    },
    total: () => walk(root),
  }
}

function s3Storage(s3: S3Client, bucket: string): Storage {
  return {
    async put(key, body) {
      await s3.send(new PutObjectCommand({Bucket: bucket, Key: `${ROOT}/${key}`, Body: body}))
    },
    async total() {
      const sum = {objects: 0, bytes: 0}
      let token: string | undefined
      do {
        const page = await s3.send(
          new ListObjectsV2Command({Bucket: bucket, Prefix: `${ROOT}/`, ContinuationToken: token}),
        )
        for (const object of page.Contents ?? []) {
          sum.objects++
          sum.bytes += object.Size ?? 0
        }
        token = page.NextContinuationToken
      } while (token)
      return sum
    },
  }
}

interface Figures {
  objects: number
  bytes: number
}

for (const kind of ['filesystem', 's3'] as const) {
  describe(`report usage on ${kind}`, () => {
    test('per namespace figures, shared layers counted once, categories add up to the listing', async () => {
      const dir = await mkdtemp(join(tmpdir(), `regops-usage-${kind}-`))
      cleanups.push(() => rm(dir, {recursive: true, force: true}))
      const {registry, region} = await startRegistryWithRegion(kind, dir, 'usage')
      cleanups.push(() => registry.stop())
      let storage: Storage
      if (kind === 'filesystem') storage = filesystemStorage(join(registry.storageRoot!, ROOT))
      else {
        const {sharedRadosgw} = await import('../../helpers/radosgw.js')
        const bucket = /s3:\/\/([^/]+)\//.exec(region)![1]
        storage = s3Storage((await sharedRadosgw()).s3Client(), bucket)
      }
      const config = join(dir, 'regops.yaml')
      await writeFile(config, `regions:\n  main: ${region}\n`)

      const shared = randomBlob(4096, 'usage-shared')
      const web = await pushImage(registry.url, 'alpha/web', 'v1', {
        layers: [shared, randomBlob(1000, 'usage-web')],
        seed: 'usage-web',
      })
      const api = await pushImage(registry.url, 'alpha/api', 'v1', {
        layers: [randomBlob(700, 'usage-api')],
        seed: 'api',
      })
      const db = await pushImage(registry.url, 'beta/db', 'v1', {
        layers: [shared, randomBlob(1300, 'usage-db')],
        seed: 'usage-db',
      })
      const solo = await pushImage(registry.url, 'solo', 'v1', {layers: [randomBlob(500, 'usage-solo')], seed: 'solo'})
      const old = await pushImage(registry.url, 'beta/old', 'v1', {layers: [randomBlob(900, 'usage-old')], seed: 'old'})
      await deleteManifest(registry.url, 'beta/old', old.manifestDigest)
      const partial = 2048
      await startAbandonedUpload(registry.url, 'alpha/web', randomBlob(partial, 'usage-upload'))
      const quarantined = randomBlob(333, 'usage-quarantined')
      const hex = digestOf(quarantined).slice(7)
      await storage.put(`_regops/quarantine/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`, quarantined)
      const stray = Buffer.from('left here by hand\n')
      await storage.put('stray/notes.txt', stray)

      const run = await runCli(['report', 'usage', '--config', config, '--json'])
      assert.equal(run.code, 0, run.stdout + run.stderr)
      const usage = run.json
      const totals = usage.totals
      const listed = await storage.total()
      assert.deepEqual(totals.listing, listed, 'the listing regops saw is the storage')
      const categories = ['referenced', 'orphaned', 'undecidedBlobs', 'metadata', 'uploads', 'quarantined', 'outside']
      const sum = categories.reduce(
        (a, name) => ({objects: a.objects + totals[name].objects, bytes: a.bytes + totals[name].bytes}),
        {objects: 0, bytes: 0},
      )
      assert.deepEqual(sum, listed, 'the categories partition the listing')
      assert.match(totals.invariant, /listing = referenced \+ orphaned/)

      const imageBytes = (image: {size: number; blobBytes: number}) => image.size + image.blobBytes
      const byName = new Map<string, {attributed: Figures; exclusive: Figures; uploads: Figures; multipart: Figures}>(
        usage.groups.map((g: {name: string}) => [g.name, g]),
      )
      assert.deepEqual([...byName.keys()].sort(), ['alpha', 'beta', 'solo'])
      const alpha = byName.get('alpha')!
      const beta = byName.get('beta')!
      assert.deepEqual(alpha.attributed, {objects: 2 + 2 + 3, bytes: imageBytes(web) + imageBytes(api)})
      assert.deepEqual(alpha.exclusive, {objects: 6, bytes: imageBytes(web) + imageBytes(api) - shared.length})
      assert.deepEqual(beta.attributed, {objects: 4, bytes: imageBytes(db)})
      assert.deepEqual(beta.exclusive, {objects: 3, bytes: imageBytes(db) - shared.length})
      assert.deepEqual(byName.get('solo')!.exclusive, {objects: 3, bytes: imageBytes(solo)})
      assert.deepEqual(totals.shared, {objects: 1, bytes: shared.length}, 'the shared layer, once')
      assert.deepEqual(totals.referenced, {
        objects: 4 + 3 + 4 + 3 - 1,
        bytes: imageBytes(web) + imageBytes(api) + imageBytes(db) + imageBytes(solo) - shared.length,
      })
      assert.ok(
        usage.notes.some((n: string) => /more than one namespace/.test(n)),
        usage.notes.join('\n'),
      )
      assert.deepEqual(totals.orphaned, {objects: 3, bytes: imageBytes(old)}, "the deleted manifest's blobs")
      assert.deepEqual(totals.quarantined, {objects: 1, bytes: quarantined.length})
      assert.deepEqual(totals.outside, {objects: 1, bytes: stray.length})
      assert.deepEqual(usage.outsideSample, ['stray/notes.txt'])
      assert.ok(alpha.uploads.objects > 0, 'the abandoned upload leaves _uploads objects')
      assert.deepEqual(totals.uploads, alpha.uploads)
      if (kind === 'filesystem') {
        assert.ok(alpha.uploads.bytes >= partial, `the upload's data is a file (${alpha.uploads.bytes} B)`)
        assert.equal(totals.multipart.uploads, 0)
      } else {
        assert.ok(alpha.uploads.bytes < partial, `the upload's data is not an object (${alpha.uploads.bytes} B)`)
        assert.deepEqual(totals.multipart, {uploads: 1, parts: 1, bytes: partial})
        assert.deepEqual(alpha.multipart, {uploads: 1, parts: 1, bytes: partial})
        assert.ok(usage.notes.some((n: string) => /pending multipart uploads hold 2048 bytes/.test(n)))
      }

      const byRepository = await runCli(['report', 'usage', '--config', config, '--by', 'repository', '--json'])
      assert.equal(byRepository.code, 0, byRepository.stderr)
      const repos = new Map(byRepository.json.groups.map((g: {name: string}) => [g.name, g]))
      assert.deepEqual((repos.get('alpha/api') as {exclusive: Figures}).exclusive, {objects: 3, bytes: imageBytes(api)})
      assert.deepEqual(byRepository.json.totals.listing, listed)

      const human = await runCli(['report', 'usage', '--config', config])
      assert.equal(human.code, 0, human.stderr)
      assert.match(human.stdout, /^alpha\t/m)
      assert.match(human.stdout, /listing total/)
    })
  })
}
