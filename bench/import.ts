// Benchmark of `regops import`: a store written straight into the distribution layout (LayoutWriter on
// the filesystem) at two sizes an order of magnitude apart, imported by the real CLI into a throwaway
// PostgreSQL; prints manifests/s, blobs/s and the peak RSS of the import process (/usr/bin/time -v,
// else VmHWM polled from /proc). Memory must stay flat across sizes: the import streams.
//
//   npx tsc -p tsconfig.json && node --import tsx bench/import.ts [manifests ...]   (default: 1000 10000)
//
// Each repository holds 10 manifests: 8 tagged images (2 own layers + 1 of 20 shared base layers), an
// untagged image, and a 2-platform index over two of the images.
import {spawn} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import pg from 'pg'
import {FilesystemDriver} from '../src/lib/storage/filesystem.js'
import {LayoutWriter, seededBytes} from '../src/lib/sample/layout-writer.js'
import {openDatabase} from '../src/lib/metadata/db.js'
import {migrateUp} from '../src/lib/metadata/migrations.js'
import {startEmbeddedDatabase} from '../src/lib/metadata/embedded.js'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const BIN = path.join(ROOT, 'bin/run.js')
const MANIFESTS_PER_REPO = 10

async function startPg(): Promise<{adminUrl: string; stop: () => Promise<void>}> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'regops-bench-pg-'))
  const server = await startEmbeddedDatabase(dir)
  return {
    adminUrl: server.adminUrl,
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

async function writeStore(root: string, manifests: number): Promise<{repositories: number; files: number}> {
  const writer = new LayoutWriter(new FilesystemDriver('bench', root, 64), 64)
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
    written: {blobs: number}
  }
  wallMs: number
  peakRssKiB: number
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
      try {
        resolve({code, result: JSON.parse(stdout), wallMs: Date.now() - started, peakRssKiB: m ? Number(m[1]) : hwm})
      } catch {
        reject(new Error(`import failed (${code}):\n${stdout}\n${stderr}`))
      }
    })
  })
}

async function main(): Promise<void> {
  if (!existsSync(path.join(ROOT, 'dist/commands/import.js'))) throw new Error('build first: npx tsc -p tsconfig.json')
  const sizes = process.argv
    .slice(2)
    .map(Number)
    .filter((n) => n > 0)
  if (sizes.length === 0) sizes.push(1000, 10_000)
  const pgServer = await startPg()
  const rows: string[] = []
  try {
    for (const size of sizes) {
      const root = await mkdtemp(path.join(os.tmpdir(), `regops-bench-store-${size}-`))
      try {
        const t0 = Date.now()
        const written = await writeStore(root, size)
        const writeMs = Date.now() - t0
        const url = await createDatabase(pgServer.adminUrl, `bench_${size}_${Date.now().toString(36)}`)
        const db = openDatabase(url)
        await migrateUp(db)
        await db.close()
        const configFile = path.join(root, '..', `${path.basename(root)}.yaml`)
        await writeFile(configFile, `regions:\n  bench:\n    url: file://${root}\n`)
        const args = ['import', '--json', '--config', configFile, '--database-url', url]
        const first = await runImport(args)
        const again = await runImport(args)
        await rm(configFile, {force: true})
        const r = first.result
        const s = r.durationMs / 1000
        const line = [
          `${String(size).padStart(6)} manifests`,
          `${written.repositories} repos`,
          `write ${(writeMs / 1000).toFixed(1)}s`,
          `import ${s.toFixed(2)}s (exit ${first.code})`,
          `${Math.round(r.manifests / s)} manifests/s`,
          `${Math.round(r.written.blobs / s)} blobs/s (${r.written.blobs} blobs)`,
          `${r.layers} layers, ${r.tags} tags, ${r.problemCount} problems`,
          `peak RSS ${(first.peakRssKiB / 1024).toFixed(0)} MiB`,
          `re-run (no change) ${(again.result.durationMs / 1000).toFixed(2)}s, ${Math.round(again.result.manifests / (again.result.durationMs / 1000))} manifests/s, peak RSS ${(again.peakRssKiB / 1024).toFixed(0)} MiB`,
        ].join(' | ')
        console.log(line)
        rows.push(line)
      } finally {
        await rm(root, {recursive: true, force: true})
      }
    }
  } finally {
    await pgServer.stop()
  }
}

await main()
