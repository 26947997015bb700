// bench/sweep: regops sweep blobs (dry-run) vs docker-registry garbage-collect --dry-run vs a bare
// sequential listing of the same keys, on the same store, at two sizes, on the filesystem and on S3
// (radosgw). Run: node --import tsx bench/sweep.ts [--sizes 10000,100000] [--backends fs,s3]
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {startRadosgw, type RadosgwServer} from '../test/helpers/radosgw.js'
import {FilesystemDriver} from '../src/lib/storage/filesystem.js'
import {S3Driver} from '../src/lib/storage/s3.js'
import type {StorageDriver} from '../src/lib/storage/driver.js'
import {LayoutWriter} from '../src/lib/sample/layout-writer.js'
import {ageTree} from '../src/lib/quickstart/sample.js'
import {envWithoutAws, measure, table} from './common.js'

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : fallback
}
const sizes = arg('sizes', '10000,100000').split(',').map(Number)
const backends = arg('backends', 'fs,s3').split(',')
const BIN = fileURLToPath(new URL('../bin/run.js', import.meta.url))

/** A store of about `blobs` blobs: images of 5 blobs (manifest, config, 3 layers, one shared per repository) in repositories of 20 images, plus 10% orphans. */
async function writeStore(
  driver: StorageDriver,
  blobs: number,
): Promise<{orphans: number; images: number; repositories: number}> {
  const w = new LayoutWriter(driver, 64)
  const images = Math.floor((blobs * 0.9) / 4.75)
  const repositories = Math.max(1, Math.ceil(images / 20))
  const shared = Array.from({length: repositories}, (_, r) => Buffer.from(`shared base layer of repository ${r}`))
  const orphans = blobs - images * 4 - repositories
  const jobs: Array<Promise<unknown>> = []
  const flush = async () => {
    await Promise.all(jobs.splice(0))
  }
  for (let i = 0; i < images; i++) {
    const r = i % repositories
    jobs.push(
      w.writeImage({
        repository: `bench/repo${r}`,
        tag: `t${i}`,
        seed: `img-${i}`,
        layers: 2,
        layerSize: 96,
        sharedLayers: [shared[r]],
      }),
    )
    if (jobs.length >= 256) await flush()
  }
  for (let i = 0; i < orphans; i++) {
    jobs.push(w.writeOrphan(i % 2 ? `bench/repo${i % repositories}` : undefined, `orphan-${i}`, 80))
    if (jobs.length >= 256) await flush()
  }
  await flush()
  return {orphans, images, repositories}
}

interface Row {
  backend: string
  blobs: number
  regops: number
  gc: number
  floor: number
  regopsMiB: number
  gcMiB: number
  candidates: number
  gcEligible: number
}

const rows: Row[] = []
let rgw: RadosgwServer | undefined
const work = await mkdtemp(join(tmpdir(), 'regops-bench-sweep-'))
try {
  for (const backend of backends) {
    if (backend === 's3') rgw = await startRadosgw({memstoreBytes: 8 * 1024 ** 3})
    for (const size of sizes) {
      const dir = join(work, `${backend}-${size}`)
      await mkdir(dir, {recursive: true})
      let driver: StorageDriver
      let region: string
      let storage: string
      let floorCmd: [string, string[]]
      if (backend === 'fs') {
        const root = join(dir, 'storage')
        driver = new FilesystemDriver('bench', join(root, 'docker/registry/v2'), 64)
        region = `{url: "file://${join(root, 'docker/registry/v2')}"}`
        storage = `  filesystem: {rootdirectory: "${root}"}`
        floorCmd = ['find', [join(root, 'docker/registry/v2'), '-type', 'f']]
      } else {
        const bucket = `bench${size}`
        await rgw!.createBucket(bucket)
        driver = new S3Driver({
          kind: 's3',
          name: 'bench',
          url: `s3://${bucket}/docker/registry/v2`,
          bucket,
          prefix: 'docker/registry/v2',
          region: 'us-east-1',
          endpoint: rgw!.endpoint,
          forcePathStyle: true,
          checksums: 'when_required',
          concurrency: 64,
          accessKeyId: rgw!.accessKeyId,
          secretAccessKey: rgw!.secretAccessKey,
        })
        region = `{url: "s3://${bucket}/docker/registry/v2", endpoint: "${rgw!.endpoint}", accessKeyId: "${rgw!.accessKeyId}", secretAccessKey: "${rgw!.secretAccessKey}", checksums: when_required}`
        storage = `  s3: {accesskey: "${rgw!.accessKeyId}", secretkey: "${rgw!.secretAccessKey}", region: us-east-1, regionendpoint: "${rgw!.endpoint}", bucket: ${bucket}, secure: false, v4auth: true}`
        floorCmd = [
          process.execPath,
          [
            '--import',
            'tsx',
            fileURLToPath(new URL('./list-s3.ts', import.meta.url)),
            rgw!.endpoint,
            bucket,
            'docker/registry/v2/',
            rgw!.accessKeyId,
            rgw!.secretAccessKey,
          ],
        ]
      }
      const t0 = performance.now()
      const store = await writeStore(driver, size)
      if (backend === 'fs') await ageTree(join(dir, 'storage'), new Date(Date.now() - 3 * 86_400_000))
      await driver.close()
      console.error(
        `${backend} ${size}: wrote ${store.images} images in ${store.repositories} repositories, ${store.orphans} orphans in ${((performance.now() - t0) / 1000).toFixed(1)}s`,
      )
      const regopsConfig = join(dir, 'regops.yaml')
      await writeFile(regopsConfig, `regions:\n  bench: ${region}\n`)
      const registryConfig = join(dir, 'registry.yml')
      await writeFile(
        registryConfig,
        `version: 0.1\nlog: {level: error}\nstorage:\n${storage}\n  delete: {enabled: true}\nhttp: {addr: "127.0.0.1:0"}\n`,
      )

      const regops = await measure(process.execPath, [
        BIN,
        'sweep',
        'blobs',
        '--config',
        regopsConfig,
        '--min-age',
        '0',
        '--force',
        '--report',
        join(dir, 'candidates.jsonl'),
        '--json',
        '--log-level',
        'warn',
      ])
      const gc = await measure(
        '/usr/bin/docker-registry',
        ['garbage-collect', '--dry-run', registryConfig],
        envWithoutAws(),
      )
      const floor = await measure(floorCmd[0], floorCmd[1])
      const result = JSON.parse(regops.stdout)
      const gcEligible = (gc.stdout + gc.stderr)
        .split('\n')
        .filter((l) => l.includes('blob eligible for deletion')).length
      rows.push({
        backend,
        blobs: result.scanned.blobs,
        regops: regops.seconds,
        gc: gc.seconds,
        floor: floor.seconds,
        regopsMiB: regops.peakMiB,
        gcMiB: gc.peakMiB,
        candidates: result.candidates.count,
        gcEligible,
      })
      console.error(
        `  regops ${regops.seconds}s ${regops.peakMiB} MiB (${result.candidates.count} candidates) | gc ${gc.seconds}s ${gc.peakMiB} MiB (${gcEligible} eligible) | bare listing ${floor.seconds}s`,
      )
      await rm(dir, {recursive: true, force: true})
    }
    await rgw?.stop()
    rgw = undefined
  }
} finally {
  await rgw?.stop()
  await rm(work, {recursive: true, force: true})
}

console.log(
  table(
    [
      'backend',
      'blobs',
      'regops s',
      'gc s',
      'listing s',
      'gc/regops',
      'regops/listing',
      'regops MiB',
      'gc MiB',
      'candidates',
      'gc eligible',
    ],
    rows.map((r) => [
      r.backend,
      r.blobs,
      r.regops.toFixed(2),
      r.gc.toFixed(2),
      r.floor.toFixed(2),
      (r.gc / r.regops).toFixed(1) + 'x',
      (r.regops / r.floor).toFixed(2) + 'x',
      r.regopsMiB,
      r.gcMiB,
      r.candidates,
      r.gcEligible,
    ]),
  ),
)
