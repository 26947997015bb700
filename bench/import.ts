// Benchmark of `regops import`: a store written straight into the distribution layout (LayoutWriter) on
// the filesystem and on S3 (a radosgw of its own), imported by the real CLI into a throwaway PostgreSQL
// (64 hash partitions, as in production). Per store: manifests/s, the peak RSS of the import process
// (/usr/bin/time -v, else VmHWM polled from /proc), a second run that must write nothing, and on S3 the
// floor measured in the same run: listing every key plus one GET per manifest at the driver's
// concurrency (what any import must at least do).
//
//   npm run build && node --import tsx bench/import.ts [--sizes 10000,100000] [--backends fs,s3]
//
// Also measured in the same run: the storage walk alone (`import --dry-run`: every listing, link and
// manifest read, no database), the part of an import no database change can speed up.
//
// Goals (issue 11): at least 5,000 manifests/s from the filesystem at 10k and 100k; peak RSS at 100k
// within 1.2x of 10k; the second run writes nothing; on S3 at least 0.8x the floor's rate.
//
// Each repository holds 10 manifests: 8 tagged images (2 own layers + 1 of 20 shared base layers), an
// untagged image, and a 2-platform index over two of the images.
import {spawn} from 'node:child_process'
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import pg from 'pg'
import pLimit from 'p-limit'
import {FilesystemDriver} from '../src/lib/storage/filesystem.js'
import {S3Driver} from '../src/lib/storage/s3.js'
import type {StorageDriver} from '../src/lib/storage/driver.js'
import {parseKey, pathFor} from '../src/lib/storage/layout.js'
import {startRadosgw, type RadosgwServer} from '../test/helpers/radosgw.js'
import {LayoutWriter, seededBytes} from '../src/lib/sample/layout-writer.js'
import {openDatabase} from '../src/lib/metadata/db.js'
import {migrateUp} from '../src/lib/metadata/migrations.js'
import {startEmbeddedDatabase} from '../src/lib/metadata/embedded.js'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const BIN = path.join(ROOT, 'bin/run.js')
const MANIFESTS_PER_REPO = 10

async function startPg(): Promise<{adminUrl: string; dir: string; stop: () => Promise<void>}> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'regops-bench-pg-'))
  const server = await startEmbeddedDatabase(dir)
  return {
    adminUrl: server.adminUrl,
    dir,
    stop: async () => {
      await server.stop()
      await rm(dir, {recursive: true, force: true})
    },
  }
}

async function createDatabase(adminUrl: string, name: string): Promise<string> {
  const client = new pg.Client({connectionString: adminUrl})
  await client.connect()
  await client.query(`CREATE DATABASE ${name}`)
  // production's 64 partitions per partitioned table
  await client.end()
  const u = new URL(adminUrl)
  u.pathname = `/${name}`
  return u.toString()
}

async function writeStore(driver: StorageDriver, manifests: number): Promise<{repositories: number; files: number}> {
  const writer = new LayoutWriter(driver, 64)
  const bases = Array.from({length: 20}, (_, i) => seededBytes(`bench-base-${i}`, 4096))
  const repositories = Math.ceil(manifests / MANIFESTS_PER_REPO)
  let next = 0
  const writeRepo = async (r: number): Promise<void> => {
    const repository = `team-${r % 50}/service-${r}`
    const images = []
    for (let i = 0; i < MANIFESTS_PER_REPO - 1; i++) {
      images.push(
        await writer.writeImage({
          repository,
          tag: i < MANIFESTS_PER_REPO - 2 ? `v${i}` : undefined,
          seed: `${repository}:${i}`,
          layers: 2,
          layerSize: 256,
          sharedLayers: [bases[(r + i) % bases.length]],
          oci: i % 2 === 1,
          platform: {os: 'linux', architecture: i % 2 ? 'arm64' : 'amd64'},
        }),
      )
    }
    await writer.writeIndex(repository, 'multi', images.slice(0, 2), [
      {os: 'linux', architecture: 'amd64'},
      {os: 'linux', architecture: 'arm64'},
    ])
  }
  const workers = Array.from({length: 8}, async () => {
    for (;;) {
      const r = next++
      if (r >= repositories) return
      await writeRepo(r)
    }
  })
  await Promise.all(workers)
  return {repositories, files: repositories * (MANIFESTS_PER_REPO - 1) * 10}
}

interface Run {
  code: number | null
  result: {
    manifests: number
    blobs: number
    repositories: number
    tags: number
    layers: number
    durationMs: number
    problemCount: number
    written: Record<string, number | Record<string, number>>
  }
  wallMs: number
  peakRssKiB: number
  /** CPU seconds of the import process (user + system), when /usr/bin/time is there */
  cpuSeconds: number
}

/**
 * CPU seconds PostgreSQL has used so far: its postmaster's own and that of its exited backends (a
 * run's backends exit when the CLI does). With the machine shared, CPU time says more than wall time.
 */
function postgresCpuSeconds(dataDir: string): number {
  const ticks = 100 // USER_HZ on Linux
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      if (!cmdline.includes('postgres') || !cmdline.includes(dataDir)) continue
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
      // utime, stime, cutime, cstime are fields 14..17 of stat; [0] here is field 3
      return fields.slice(11, 15).reduce((sum, f) => sum + Number(f), 0) / ticks
    } catch {
      // gone
    }
  }
  return NaN
}

function runImport(args: string[]): Promise<Run> {
  const useTime = existsSync('/usr/bin/time')
  const [cmd, argv] = useTime
    ? ['/usr/bin/time', ['-v', process.execPath, BIN, ...args]]
    : [process.execPath, [BIN, ...args]]
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, {stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, REGOPS_LOG_LEVEL: 'warn'}})
    let stdout = ''
    let stderr = ''
    let hwm = 0
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    // Fallback without /usr/bin/time: poll the node process's VmHWM (peak RSS).
    const poll = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))
        if (m) hwm = Math.max(hwm, Number(m[1]))
      } catch {
        // gone
      }
    }, 50)
    child.on('error', reject)
    child.on('close', (code) => {
      clearInterval(poll)
      const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)
      const user = /User time \(seconds\): ([\d.]+)/.exec(stderr)
      const system = /System time \(seconds\): ([\d.]+)/.exec(stderr)
      try {
        resolve({
          code,
          result: JSON.parse(stdout),
          wallMs: Date.now() - started,
          peakRssKiB: m ? Number(m[1]) : hwm,
          cpuSeconds: user && system ? Number(user[1]) + Number(system[1]) : NaN,
        })
      } catch {
        reject(new Error(`import failed (${code}):\n${stdout}\n${stderr}`))
      }
    })
  })
}

/** Rows written (inserted, updated, deleted) by a run: 0 when it wrote nothing. */
function rowsWritten(written: Run['result']['written']): number {
  let n = 0
  for (const v of Object.values(written)) n += typeof v === 'number' ? v : rowsWritten(v)
  return n
}

/** The S3 floor: every key listed, then one GET per manifest revision's blob at the driver's concurrency. */
async function s3Floor(driver: StorageDriver, concurrency: number): Promise<{seconds: number; manifests: number}> {
  const started = performance.now()
  const manifests: string[] = []
  for await (const object of driver.list('')) {
    const spec = parseKey(object.key)
    if (spec?.kind === 'manifest-revision-link') manifests.push(spec.digest)
  }
  const limit = pLimit(concurrency)
  await Promise.all(
    manifests.map((digest) => limit(() => driver.readSmall(pathFor({kind: 'blob-data', digest}), 4 * 1024 * 1024))),
  )
  return {seconds: (performance.now() - started) / 1000, manifests: manifests.length}
}

function option(name: string, fallback: string): string[] {
  const i = process.argv.indexOf(`--${name}`)
  return (i > 0 ? process.argv[i + 1] : fallback).split(',').filter(Boolean)
}

async function main(): Promise<void> {
  if (!existsSync(path.join(ROOT, 'dist/commands/import.js'))) throw new Error('build first: npm run build')
  const sizes = option('sizes', '10000,100000').map(Number)
  const backends = option('backends', 'fs,s3')
  const pgServer = await startPg()
  let rgw: RadosgwServer | undefined
  const rss = new Map<number, number>()
  let allGoalsMet = true
  try {
    for (const backend of backends) {
      if (backend === 's3') rgw = await startRadosgw({memstoreBytes: 8 * 1024 ** 3})
      for (const size of sizes) {
        const work = await mkdtemp(path.join(os.tmpdir(), `regops-bench-import-${backend}-${size}-`))
        try {
          let driver: StorageDriver
          let region: string
          const concurrency = 64
          if (backend === 'fs') {
            driver = new FilesystemDriver('bench', work, 64)
            region = `{url: "file://${work}"}`
          } else {
            const bucket = `import${size}`
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
              concurrency,
              accessKeyId: rgw!.accessKeyId,
              secretAccessKey: rgw!.secretAccessKey,
            })
            region = `{url: "s3://${bucket}/docker/registry/v2", endpoint: "${rgw!.endpoint}", accessKeyId: "${rgw!.accessKeyId}", secretAccessKey: "${rgw!.secretAccessKey}", checksums: when_required, concurrency: ${concurrency}}`
          }
          const t0 = Date.now()
          const written = await writeStore(driver, size)
          const writeMs = Date.now() - t0
          const url = await createDatabase(pgServer.adminUrl, `bench_${backend}_${size}_${Date.now().toString(36)}`)
          const db = openDatabase(url)
          await migrateUp(db)
          await db.close()
          const configFile = path.join(work, 'regops.yaml')
          await writeFile(configFile, `regions:\n  bench: ${region}\n`)
          const args = ['import', '--json', '--config', configFile, '--database-url', url]
          const pgBefore = postgresCpuSeconds(pgServer.dir)
          const first = await runImport(args)
          const pgCpu = postgresCpuSeconds(pgServer.dir) - pgBefore
          const again = await runImport(args)
          // The same walk without a database (every listing, link and manifest read): what the storage
          // side of an import costs on its own, in the same run.
          const walk = await runImport(['import', '--dry-run', '--json', '--config', configFile])
          const floor = backend === 's3' ? await s3Floor(driver, concurrency) : undefined
          await driver.close()
          const r = first.result
          const s = r.durationMs / 1000
          const rate = r.manifests / s
          const secondWrites = rowsWritten(again.result.written)
          if (backend === 'fs') rss.set(size, first.peakRssKiB)
          const goals: string[] = []
          if (backend === 'fs') goals.push(rate >= 5000 ? 'rate goal met' : 'rate goal NOT met (5,000/s)')
          if (floor) {
            const floorRate = floor.manifests / floor.seconds
            goals.push(
              `floor (list all + 1 GET per manifest at ${concurrency}) ${floor.seconds.toFixed(2)}s = ${Math.round(floorRate)} manifests/s; import/floor ${(rate / floorRate).toFixed(2)}x (goal 0.8x)`,
            )
            if (rate / floorRate < 0.8) allGoalsMet = false
          }
          if (backend === 'fs' && rate < 5000) allGoalsMet = false
          if (secondWrites !== 0 || first.code !== 0 || again.code !== 0) allGoalsMet = false
          console.log(
            [
              `${backend} ${String(size).padStart(6)} manifests`,
              `${written.repositories} repos`,
              `write ${(writeMs / 1000).toFixed(1)}s`,
              `import ${s.toFixed(2)}s (exit ${first.code})`,
              `${Math.round(rate)} manifests/s`,
              `${r.layers} layers, ${r.tags} tags, ${r.problemCount} problems`,
              `peak RSS ${(first.peakRssKiB / 1024).toFixed(0)} MiB`,
              // what the two cores would give the import alone: regops and PostgreSQL each on a core at best
              `CPU regops ${first.cpuSeconds.toFixed(1)}s + PostgreSQL ${pgCpu.toFixed(1)}s (${Math.round(r.manifests / Math.max(first.cpuSeconds, pgCpu, (first.cpuSeconds + pgCpu) / 2))} manifests/s on 2 idle cores)`,
              `second run ${(again.result.durationMs / 1000).toFixed(2)}s (exit ${again.code}), ${secondWrites === 0 ? 'wrote nothing' : `WROTE ${secondWrites} rows`}`,
              `storage walk alone (--dry-run) ${(walk.result.durationMs / 1000).toFixed(2)}s = ${Math.round(walk.result.manifests / (walk.result.durationMs / 1000))} manifests/s, CPU ${walk.cpuSeconds.toFixed(1)}s`,
              ...goals,
            ].join(' | '),
          )
        } finally {
          await rm(work, {recursive: true, force: true})
        }
      }
    }
  } finally {
    await rgw?.stop()
    await pgServer.stop()
  }
  const [small, large] = [Math.min(...rss.keys()), Math.max(...rss.keys())]
  if (rss.size >= 2) {
    const ratio = rss.get(large)! / rss.get(small)!
    if (ratio > 1.2) allGoalsMet = false
    console.log(`fs peak RSS ${large}/${small}: ${ratio.toFixed(2)}x (goal at most 1.2x)`)
  }
  console.log(allGoalsMet ? 'every goal met' : 'some goals NOT met (see above)')
}

await main()
