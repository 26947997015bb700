// regops audit regions vs rclone check on the same two buckets (two radosgw clusters, one run):
//   --level size      vs  rclone check --size-only (with and without --fast-list)
//   --level checksum  vs  rclone check --download
// Both tools must report the same differences. Prints time, peak RSS, the 1-minute load average when each
// run began, and ratios. Two floor runs (bench/audit-floor.mjs: plain JavaScript on undici and aws4, no
// CLI) show what the buckets allow: listing both, and reading every blob at the same concurrency.
//   npm run build && node --import tsx bench/audit.ts 10000 [100000] [--skip size-only,download,floor]
// --skip leaves out the slow peer runs (rclone check --size-only without --fast-list took 510 s at 100k,
// --download 787 s) or the floor runs; their ratios are then not printed.
import {writeFile, readFile, mkdtemp, rm} from 'node:fs/promises'
import {loadavg, tmpdir} from 'node:os'
import {join} from 'node:path'
import {createHash, randomBytes} from 'node:crypto'
import {fileURLToPath} from 'node:url'
import pLimit from 'p-limit'
import {S3Driver} from '../src/lib/storage/s3.js'
import {startRadosgw, type RadosgwServer} from '../test/helpers/radosgw.js'
import {measure, table} from './common.js'

const ROOT = 'docker/registry/v2'
const DRIFT = 10
const sizes = process.argv
  .slice(2)
  .map(Number)
  .filter((n) => n > 0)
if (sizes.length === 0) sizes.push(10_000)
const skipAt = process.argv.indexOf('--skip')
const skipped = new Set(skipAt > 0 ? process.argv[skipAt + 1]!.split(',') : [])
const bin = fileURLToPath(new URL('../bin/run.js', import.meta.url))
const floorScript = fileURLToPath(new URL('./audit-floor.mjs', import.meta.url))

function driverFor(rgw: RadosgwServer, bucket: string): S3Driver {
  return new S3Driver({
    kind: 's3',
    name: bucket,
    url: `s3://${bucket}/${ROOT}`,
    bucket,
    prefix: ROOT,
    region: 'us-east-1',
    endpoint: rgw.endpoint,
    forcePathStyle: true,
    checksums: 'when_required',
    concurrency: 64,
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
  })
}

const keyOf = (body: Buffer) => {
  const hex = createHash('sha256').update(body).digest('hex')
  return `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`
}

/** Writes `count` blobs into both buckets, then drifts b: DRIFT deleted, DRIFT resized, DRIFT altered at the same size. */
async function populate(
  a: S3Driver,
  b: S3Driver,
  count: number,
): Promise<{missing: string[]; resized: string[]; altered: string[]}> {
  const limit = pLimit(64)
  const keys: string[] = []
  const bodies = new Map<string, Buffer>()
  await Promise.all(
    Array.from({length: count}, () =>
      limit(async () => {
        const body = randomBytes(512)
        const key = keyOf(body)
        keys.push(key)
        if (keys.length <= 3 * DRIFT) bodies.set(key, body)
        await Promise.all([a.write(key, body, body.length), b.write(key, body, body.length)])
      }),
    ),
  )
  const drifted = [...bodies.keys()]
  const missing = drifted.slice(0, DRIFT)
  const resized = drifted.slice(DRIFT, 2 * DRIFT)
  const altered = drifted.slice(2 * DRIFT)
  await b.deleteMany(missing)
  for (const key of resized) await b.write(key, bodies.get(key)!.subarray(0, 100), 100)
  for (const key of altered) {
    const body = Buffer.from(bodies.get(key)!)
    body[0] ^= 0xff
    await b.write(key, body, body.length)
  }
  return {missing, resized, altered}
}

function rcloneEnv(rgwA: RadosgwServer, rgwB: RadosgwServer): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AWS_')))
  for (const [name, rgw] of [
    ['A', rgwA],
    ['B', rgwB],
  ] as const) {
    Object.assign(env, {
      [`RCLONE_CONFIG_${name}_TYPE`]: 's3',
      [`RCLONE_CONFIG_${name}_PROVIDER`]: 'Ceph',
      [`RCLONE_CONFIG_${name}_ENDPOINT`]: rgw.endpoint,
      [`RCLONE_CONFIG_${name}_ACCESS_KEY_ID`]: rgw.accessKeyId,
      [`RCLONE_CONFIG_${name}_SECRET_ACCESS_KEY`]: rgw.secretAccessKey,
      [`RCLONE_CONFIG_${name}_FORCE_PATH_STYLE`]: 'true',
    })
  }
  return env
}

/** rclone --combined lines: '+ ' only in source, '* ' differs, '- ' only in destination, '! ' error. */
async function rcloneDifferences(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter((line) => /^[+*!-] /.test(line))
    .map((line) => `blobs/${line.slice(2)}`)
    .sort()
}

async function regopsDifferences(file: string): Promise<string[]> {
  return [
    ...new Set(
      (await readFile(file, 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((line) => (JSON.parse(line) as {key: string}).key),
    ),
  ].sort()
}

const rows: Array<Array<string | number>> = []
for (const count of sizes) {
  const [rgwA, rgwB] = await Promise.all([
    startRadosgw({buckets: ['bench-a'], memstoreBytes: 4 * 1024 ** 3}),
    startRadosgw({buckets: ['bench-b'], memstoreBytes: 4 * 1024 ** 3}),
  ])
  const dir = await mkdtemp(join(tmpdir(), 'regops-bench-audit-'))
  try {
    const [a, b] = [driverFor(rgwA, 'bench-a'), driverFor(rgwB, 'bench-b')]
    const t0 = performance.now()
    const drift = await populate(a, b, count)
    process.stderr.write(
      `${count} blobs written to both buckets in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
    )
    await Promise.all([a.close(), b.close()])
    const config = join(dir, 'regops.yaml')
    const region = (rgw: RadosgwServer, bucket: string) =>
      `{url: "s3://${bucket}/${ROOT}", endpoint: "${rgw.endpoint}", accessKeyId: "${rgw.accessKeyId}", secretAccessKey: "${rgw.secretAccessKey}", checksums: when_required}`
    await writeFile(config, `regions:\n  a: ${region(rgwA, 'bench-a')}\n  b: ${region(rgwB, 'bench-b')}\nprimary: a\n`)
    const sizeExpected = [...drift.missing, ...drift.resized].sort()
    const allExpected = [...sizeExpected, ...drift.altered].sort()
    const env = rcloneEnv(rgwA, rgwB)
    const run = async (
      label: string,
      cmd: string,
      args: string[],
      differences: () => Promise<string[]>,
      expected: string[],
    ) => {
      const load = loadavg()[0].toFixed(1)
      const m = await measure(cmd, args, cmd === 'rclone' ? env : process.env)
      const found = await differences()
      const same = JSON.stringify(found) === JSON.stringify(expected)
      if (!same)
        process.stderr.write(
          `${label}: found ${found.length} differences, expected ${expected.length} (exit ${m.code})\n${m.stderr.slice(-2000)}\n`,
        )
      rows.push([count, label, m.seconds.toFixed(2), m.peakMiB, load, found.length, same ? 'yes' : 'NO'])
      return m
    }
    const floor = async (mode: 'list' | 'get') => {
      if (skipped.has('floor')) return undefined
      const load = loadavg()[0].toFixed(1)
      const args = [floorScript, mode, '32', `${ROOT}/`]
      for (const [rgw, bucket] of [
        [rgwA, 'bench-a'],
        [rgwB, 'bench-b'],
      ] as const)
        args.push(rgw.endpoint, bucket, rgw.accessKeyId, rgw.secretAccessKey)
      const m = await measure(process.execPath, args)
      if (m.code !== 0) throw new Error(`floor ${mode} failed: ${m.stderr.slice(-2000)}`)
      rows.push([count, `floor: ${mode} (${m.stdout.trim()})`, m.seconds.toFixed(2), m.peakMiB, load, '-', '-'])
      return m
    }
    const audit = (level: string) => [
      bin,
      'audit',
      'regions',
      '--config',
      config,
      '--level',
      level,
      '--in-flight',
      '0s',
      '--findings',
      join(dir, `regops-${level}.jsonl`),
      '--json',
      '--concurrency',
      '32',
    ]
    const rclone = (name: string, extra: string[]) => [
      'check',
      `A:bench-a/${ROOT}/blobs`,
      `B:bench-b/${ROOT}/blobs`,
      '--combined',
      join(dir, `${name}.txt`),
      '--checkers',
      '32',
      ...extra,
    ]
    const size = await run(
      'regops --level size',
      process.execPath,
      audit('size'),
      () => regopsDifferences(join(dir, 'regops-size.jsonl')),
      sizeExpected,
    )
    const sizeOnly = skipped.has('size-only')
      ? undefined
      : await run(
          'rclone --size-only',
          'rclone',
          rclone('size-only', ['--size-only']),
          () => rcloneDifferences(join(dir, 'size-only.txt')),
          sizeExpected,
        )
    const fastList = await run(
      'rclone --size-only --fast-list',
      'rclone',
      rclone('fast-list', ['--size-only', '--fast-list']),
      () => rcloneDifferences(join(dir, 'fast-list.txt')),
      sizeExpected,
    )
    const listFloor = await floor('list')
    const checksum = await run(
      'regops --level checksum',
      process.execPath,
      audit('checksum'),
      () => regopsDifferences(join(dir, 'regops-checksum.jsonl')),
      allExpected,
    )
    const download = skipped.has('download')
      ? undefined
      : await run(
          'rclone --download',
          'rclone',
          rclone('download', ['--download']),
          () => rcloneDifferences(join(dir, 'download.txt')),
          allExpected,
        )
    const getFloor = await floor('get')
    const ratio = (a: {seconds: number} | undefined, b: {seconds: number} | undefined) =>
      a && b ? `${(a.seconds / b.seconds).toFixed(2)}x` : 'skipped'
    process.stderr.write(
      `${count}: size: regops/fast-list time ${ratio(size, fastList)}, RSS ${(size.peakMiB / fastList.peakMiB).toFixed(2)}x (floor ${ratio(listFloor, fastList)}); regops/size-only time ${ratio(size, sizeOnly)}; checksum: regops/download time ${ratio(checksum, download)} (floor ${ratio(getFloor, download)})\n`,
    )
  } finally {
    await rm(dir, {recursive: true, force: true})
    await Promise.all([rgwA.stop(), rgwB.stop()])
  }
}
console.log(table(['objects', 'run', 'seconds', 'peak RSS MiB', 'load', 'differences', 'as expected'], rows))
