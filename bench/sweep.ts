// bench/sweep: regops sweep blobs (dry-run) against its floors and peers, measured in the same run on the
// same store, and the ratios issue 11 asks for.
//   filesystem, per size: the sweep at its default settings; docker-registry garbage-collect --dry-run;
//     the floors (listing the blobs, listing everything, listing plus one read per manifest).
//   S3 (radosgw), one size: the floors (the GET floor at each concurrency); the storage strategy at its
//     default (adaptive) limit and at fixed concurrencies, straight and behind a throttling proxy (503
//     SlowDown above a set number in flight, latency growing with those in flight); the metadata strategy
//     after an import, against the bare blob listing.
// Every row is printed as soon as it is measured (a run stopped half way still leaves its figures); the
// goals come last. Run after a build:
//   node --import tsx bench/sweep.ts [--sizes 10000,100000] [--s3-size 10000] [--backends fs,s3]
//     [--fixed 4,8,16,32,64] [--throttle-in-flight 12] [--s3-gc] [--metadata-only]
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {existsSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import pg from 'pg'
import {startRadosgw, type RadosgwServer} from '../test/helpers/radosgw.js'
import {startFaultProxy, type FaultProxy} from '../test/helpers/fault-proxy.js'
import {FilesystemDriver} from '../src/lib/storage/filesystem.js'
import {S3Driver} from '../src/lib/storage/s3.js'
import type {StorageDriver} from '../src/lib/storage/driver.js'
import {LayoutWriter} from '../src/lib/sample/layout-writer.js'
import {ageTree} from '../src/lib/quickstart/sample.js'
import {startEmbeddedDatabase, type EmbeddedDatabase} from '../src/lib/metadata/embedded.js'
import {envWithoutAws, measure, type Measured} from './common.js'

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : fallback
}
const sizes = arg('sizes', '10000,100000').split(',').map(Number)
const s3Size = Number(arg('s3-size', '10000'))
const backends = arg('backends', 'fs,s3').split(',')
const fixed = arg('fixed', '4,8,16,32,64').split(',').map(Number)
const throttleInFlight = Number(arg('throttle-in-flight', '12'))
const s3Gc = process.argv.includes('--s3-gc')
const metadataOnly = process.argv.includes('--metadata-only')
const BIN = fileURLToPath(new URL('../bin/run.js', import.meta.url))
const FLOOR = fileURLToPath(new URL('./floor.mjs', import.meta.url))
if (!existsSync(fileURLToPath(new URL('../dist/commands/sweep/blobs.js', import.meta.url))))
  throw new Error('build first: npm run build')

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

/** Every figure measured, by a name like `fs 10000 gc`, for the goals at the end. */
const figures = new Map<string, {seconds: number; peakMiB: number}>()

function row(name: string, measured: Measured, extra = ''): void {
  figures.set(name, measured)
  console.log(
    `${name.padEnd(44)} ${measured.seconds.toFixed(2).padStart(7)} s ${String(measured.peakMiB).padStart(5)} MiB  ${extra}`,
  )
}

interface SweepFigures {
  candidates: number
  /** problems (storage errors after every retry among them) and whether the mark was complete */
  failed: number
  markComplete: boolean
}

async function sweep(config: string, dir: string, extra: string[] = []): Promise<[Measured, SweepFigures]> {
  const measured = await measure(process.execPath, [
    BIN,
    'sweep',
    'blobs',
    '--config',
    config,
    '--min-age',
    '0',
    '--force',
    '--report',
    join(dir, 'candidates.jsonl'),
    '--json',
    '--log-level',
    'warn',
    ...extra,
  ])
  if (measured.code !== 0 && measured.code !== 1)
    throw new Error(`sweep ${extra.join(' ')} exited ${measured.code}: ${measured.stderr.slice(-800)}`)
  const result = JSON.parse(measured.stdout)
  return [
    measured,
    {candidates: result.candidates.count, failed: result.problemCount, markComplete: result.markComplete},
  ]
}

const sweepNote = (f: SweepFigures, expected: number) =>
  `${f.candidates} candidates${f.candidates === expected ? '' : ` (EXPECTED ${expected})`}, objects failed: ${f.failed}${f.markComplete ? '' : ', MARK INCOMPLETE'}`

async function filesystemRows(work: string, size: number): Promise<void> {
  const dir = join(work, `fs-${size}`)
  const root = join(dir, 'storage')
  const registryRoot = join(root, 'docker/registry/v2')
  await mkdir(dir, {recursive: true})
  const driver = new FilesystemDriver('bench', registryRoot, 64)
  const t0 = performance.now()
  const store = await writeStore(driver, size)
  await ageTree(root, new Date(Date.now() - 3 * 86_400_000))
  console.error(
    `fs ${size}: wrote ${store.images} images, ${store.orphans} orphans in ${((performance.now() - t0) / 1000).toFixed(1)}s`,
  )
  const config = join(dir, 'regops.yaml')
  await writeFile(config, `regions:\n  bench: {url: "file://${registryRoot}"}\n`)
  const registryConfig = join(dir, 'registry.yml')
  await writeFile(
    registryConfig,
    `version: 0.1\nlog: {level: error}\nstorage:\n  filesystem: {rootdirectory: "${root}"}\n  delete: {enabled: true}\nhttp: {addr: "127.0.0.1:0"}\n`,
  )
  const name = `fs ${size}`
  const [regops, found] = await sweep(config, dir)
  row(`${name} sweep (default)`, regops, sweepNote(found, store.orphans))
  const gc = await measure(
    '/usr/bin/docker-registry',
    ['garbage-collect', '--dry-run', registryConfig],
    envWithoutAws(),
  )
  const eligible = (gc.stdout + gc.stderr).split('\n').filter((l) => l.includes('blob eligible for deletion')).length
  row(`${name} gc`, gc, `${eligible} eligible`)
  row(`${name} floor: find blobs/`, await measure('find', [join(registryRoot, 'blobs'), '-type', 'f']))
  row(`${name} floor: find everything`, await measure('find', [registryRoot, '-type', 'f']))
  const read = await measure(process.execPath, [FLOOR, 'fs', registryRoot, 'manifests'])
  row(`${name} floor: listing + read per manifest`, read, `${read.stdout.trim().split(' ')[1]} manifests read`)
  await rm(dir, {recursive: true, force: true})
}

async function s3Rows(work: string, rgw: RadosgwServer, size: number): Promise<void> {
  const dir = join(work, `s3-${size}`)
  await mkdir(dir, {recursive: true})
  const bucket = `bench${size}`
  await rgw.createBucket(bucket)
  const s3Region = (endpoint: string) => ({
    kind: 's3' as const,
    name: 'bench',
    url: `s3://${bucket}/docker/registry/v2`,
    bucket,
    prefix: 'docker/registry/v2',
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    checksums: 'when_required' as const,
    concurrency: 64,
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
  })
  const driver = new S3Driver(s3Region(rgw.endpoint))
  const t0 = performance.now()
  const store = await writeStore(driver, size)
  await driver.close()
  console.error(
    `s3 ${size}: wrote ${store.images} images, ${store.orphans} orphans in ${((performance.now() - t0) / 1000).toFixed(1)}s`,
  )
  const regionYaml = (endpoint: string) =>
    `{url: "s3://${bucket}/docker/registry/v2", endpoint: "${endpoint}", accessKeyId: "${rgw.accessKeyId}", secretAccessKey: "${rgw.secretAccessKey}", checksums: when_required}`
  const config = join(dir, 'regops.yaml')
  await writeFile(config, `regions:\n  bench: ${regionYaml(rgw.endpoint)}\n`)
  const name = `s3 ${size}`
  const floorArgs = (mode: string, concurrency = 1) => [
    '--import',
    'tsx',
    FLOOR,
    's3',
    rgw.endpoint,
    bucket,
    'docker/registry/v2/',
    rgw.accessKeyId,
    rgw.secretAccessKey,
    mode,
    String(concurrency),
  ]
  row(`${name} floor: list blobs/`, await measure(process.execPath, floorArgs('blobs')))
  row(`${name} floor: list everything`, await measure(process.execPath, floorArgs('all')))
  // The storage strategy's rows (minutes at 100k): left out with --metadata-only.
  if (!metadataOnly) {
    for (const concurrency of fixed) {
      const read = await measure(process.execPath, floorArgs('manifests', concurrency))
      row(
        `${name} floor: list + GET per manifest @${concurrency}`,
        read,
        `${read.stdout.trim().split(' ')[1]} manifests read`,
      )
    }

    const [adaptive, found] = await sweep(config, dir)
    row(`${name} sweep (default)`, adaptive, sweepNote(found, store.orphans))
    for (const concurrency of fixed) {
      const [measured, f] = await sweep(config, dir, ['--concurrency', String(concurrency)])
      row(`${name} sweep @${concurrency}`, measured, sweepNote(f, store.orphans))
    }

    // The throttling proxy: a server that answers 503 SlowDown past a number of requests in flight and
    // slows down as it fills, as S3 does per prefix.
    let proxy: FaultProxy | undefined
    try {
      proxy = await startFaultProxy({
        target: rgw.endpoint,
        seed: 11,
        throttle: {maxInFlight: throttleInFlight, baseLatencyMs: 2, latencyPerInFlightMs: 1},
      })
      const throttledConfig = join(dir, 'throttled.yaml')
      await writeFile(throttledConfig, `regions:\n  bench: ${regionYaml(proxy.endpoint)}\n`)
      const throttled = `${name} throttled@${throttleInFlight}`
      for (const concurrency of [undefined, ...fixed]) {
        proxy.setThrottle({maxInFlight: throttleInFlight, baseLatencyMs: 2, latencyPerInFlightMs: 1})
        const [measured, f] = await sweep(
          throttledConfig,
          dir,
          concurrency ? ['--concurrency', String(concurrency)] : [],
        )
        const stats = proxy.throttleStats()
        row(
          `${throttled} sweep ${concurrency ? `@${concurrency}` : '(default)'}`,
          measured,
          `${sweepNote(f, store.orphans)}, ${stats.throttled} answered 503, peak ${stats.peakInFlight} in flight`,
        )
      }
    } finally {
      await proxy?.close()
    }
  }
  let database: EmbeddedDatabase | undefined
  // Its own directory under the system's: PostgreSQL runs as its own user, who cannot enter this run's.
  const pgDir = await mkdtemp(join(tmpdir(), 'regops-bench-pg-'))
  try {
    database = await startEmbeddedDatabase(pgDir)
    const url = new URL(database.adminUrl)
    const client = new pg.Client({connectionString: database.adminUrl})
    await client.connect()
    await client.query('CREATE DATABASE bench_sweep')
    await client.end()
    url.pathname = '/bench_sweep'
    const withDb = ['--database-url', url.toString()]
    const migrated = await measure(process.execPath, [
      BIN,
      'db',
      'migrate',
      'up',
      '--config',
      config,
      '--json',
      ...withDb,
    ])
    if (migrated.code !== 0) throw new Error(`migrate exited ${migrated.code}: ${migrated.stderr.slice(-500)}`)
    const imported = await measure(process.execPath, [
      BIN,
      'import',
      '--config',
      config,
      '--json',
      '--log-level',
      'warn',
      ...withDb,
    ])
    row(`${name} import`, imported, `exit ${imported.code}`)
    const [authoritative, a] = await sweep(config, dir, [
      '--strategy',
      'metadata',
      '--metadata-authoritative',
      ...withDb,
    ])
    row(`${name} sweep --strategy metadata --metadata-authoritative`, authoritative, sweepNote(a, store.orphans))
    const [rewalk, m] = await sweep(config, dir, ['--strategy', 'metadata', ...withDb])
    row(`${name} sweep --strategy metadata`, rewalk, sweepNote(m, store.orphans))
  } finally {
    await database?.stop()
    await rm(pgDir, {recursive: true, force: true})
  }

  if (s3Gc) {
    const registryConfig = join(dir, 'registry.yml')
    await writeFile(
      registryConfig,
      `version: 0.1\nlog: {level: error}\nstorage:\n  s3: {accesskey: "${rgw.accessKeyId}", secretkey: "${rgw.secretAccessKey}", region: us-east-1, regionendpoint: "${rgw.endpoint}", bucket: ${bucket}, secure: false, v4auth: true}\n  delete: {enabled: true}\nhttp: {addr: "127.0.0.1:0"}\n`,
    )
    row(
      `${name} gc`,
      await measure('/usr/bin/docker-registry', ['garbage-collect', '--dry-run', registryConfig], envWithoutAws()),
    )
  }
  await rm(dir, {recursive: true, force: true})
}

/** The goals of issue 11, each as `measured / limit` against its bound; a figure not measured is left out. */
function printGoals(): void {
  const s = (name: string) => figures.get(name)?.seconds
  const lines: string[] = []
  const goal = (what: string, ratio: number | undefined, bound: number) => {
    if (ratio === undefined || !Number.isFinite(ratio)) return
    lines.push(
      `${what.padEnd(64)} ${ratio.toFixed(2).padStart(6)}x  (goal <= ${bound}x) ${ratio <= bound ? 'met' : 'NOT MET'}`,
    )
  }
  for (const size of sizes)
    goal(`fs ${size}: sweep / registry GC`, s(`fs ${size} sweep (default)`)! / s(`fs ${size} gc`)!, 1.0)
  const rss = sizes.map((size) => figures.get(`fs ${size} sweep (default)`)?.peakMiB)
  for (const [i, size] of sizes.entries())
    if (rss[i] !== undefined)
      lines.push(
        `fs ${size}: sweep peak RSS`.padEnd(64) +
          ` ${rss[i]} MiB (goal <= 100 MiB) ${rss[i]! <= 100 ? 'met' : 'NOT MET'}`,
      )
  if (sizes.length >= 2 && rss[0] && rss[sizes.length - 1])
    goal(`fs: peak RSS ${sizes[sizes.length - 1]} / ${sizes[0]}`, rss[sizes.length - 1]! / rss[0]!, 1.2)
  const name = `s3 ${s3Size}`
  goal(
    `${name}: metadata (authoritative) / bare blob listing`,
    s(`${name} sweep --strategy metadata --metadata-authoritative`)! / s(`${name} floor: list blobs/`)!,
    1.3,
  )
  const floors = fixed.map((c) => s(`${name} floor: list + GET per manifest @${c}`)).filter((x) => x !== undefined)
  goal(
    `${name}: storage (default) / best listing-plus-GET floor`,
    s(`${name} sweep (default)`)! / Math.min(...floors),
    1.5,
  )
  for (const target of [name, `${name} throttled@${throttleInFlight}`]) {
    const fixedTimes = fixed.map((c) => s(`${target} sweep @${c}`)).filter((x) => x !== undefined)
    goal(`${target}: default / best fixed concurrency`, s(`${target} sweep (default)`)! / Math.min(...fixedTimes), 1.2)
  }
  console.log(`\ngoals (issue 11)\n${lines.join('\n')}`)
}

let rgw: RadosgwServer | undefined
const work = await mkdtemp(join(tmpdir(), 'regops-bench-sweep-'))
try {
  if (backends.includes('fs')) for (const size of sizes) await filesystemRows(work, size)
  if (backends.includes('s3')) {
    rgw = await startRadosgw({memstoreBytes: 8 * 1024 ** 3})
    await s3Rows(work, rgw, s3Size)
  }
} finally {
  printGoals()
  await rgw?.stop()
  await rm(work, {recursive: true, force: true})
}
