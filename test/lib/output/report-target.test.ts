// Report targets: a sweep's candidates on stdout (the summary on stderr), in an s3:// object written with the
// configured region's endpoint and keys, and in $REGOPS_REPORT_DIR when the current directory is read-only.
// Real filesystem stores, the shared radosgw, and the built CLI (as user nobody for the read-only case).
import {after, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {GetObjectCommand} from '@aws-sdk/client-s3'
import {sharedRadosgw} from '../../helpers/radosgw.js'
import {BIN, runCli} from '../../helpers/cli.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {LayoutWriter} from '../../../src/lib/sample/layout-writer.js'
import {ageTree} from '../../../src/lib/quickstart/sample.js'
import {parseReportTarget} from '../../../src/lib/output/report-target.js'
import {UsageError} from '../../../src/lib/errors.js'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

const DAY = 86_400_000
const NOBODY = 65534

async function tempDir(label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `regops-${label}-`))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  return dir
}

/** A filesystem store with one image and three day-old orphans; returns the orphans' digests, sorted. */
async function storeWithOrphans(): Promise<{root: string; orphans: string[]}> {
  const root = await tempDir('report-store')
  const writer = new LayoutWriter(new FilesystemDriver('local', root))
  await writer.writeImage({repository: 'app/web', tag: 'v1', seed: 'report-web', layers: 2, layerSize: 128})
  const orphans: string[] = []
  for (let i = 0; i < 3; i++) orphans.push(await writer.writeOrphan(undefined, `report-${i}`, 100))
  await ageTree(root, new Date(Date.now() - 3 * DAY))
  return {root, orphans: orphans.sort()}
}

function blobDigests(jsonLines: string): string[] {
  return jsonLines
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line))
    .filter((c) => c.kind === 'blob')
    .map((c) => c.digest as string)
    .sort()
}

describe('parsing a report target', () => {
  test('-, paths, file:// and s3:// URLs; an s3 bucket takes its configured region; other schemes are refused', () => {
    assert.deepEqual(parseReportTarget('-'), {kind: 'stdout', location: '-'})
    assert.deepEqual(parseReportTarget('out/r.jsonl'), {kind: 'file', path: 'out/r.jsonl', location: 'out/r.jsonl'})
    assert.equal((parseReportTarget('file:///var/r%20x.jsonl') as {path: string}).path, '/var/r x.jsonl')
    const region = {kind: 's3', name: 'eu', bucket: 'reg.eu', prefix: ''} as never
    const s3 = parseReportTarget('s3://reg.eu/reports/r.jsonl', [region])
    assert.deepEqual(s3, {
      kind: 's3',
      bucket: 'reg.eu',
      key: 'reports/r.jsonl',
      location: 's3://reg.eu/reports/r.jsonl',
      region,
    })
    assert.equal((parseReportTarget('s3://other/r.jsonl', [region]) as {region?: unknown}).region, undefined)
    for (const bad of ['s3://bucket', 's3://bucket/dir/', 'https://example.com/r', 'file://host/r'])
      assert.throws(() => parseReportTarget(bad), UsageError, bad)
  })
})

describe('sweep blobs --report', () => {
  test('- : the candidates as JSON Lines on stdout, the summary on stderr; with --json refused (exit 2)', async () => {
    const {root, orphans} = await storeWithOrphans()
    const config = join(await tempDir('report-config'), 'regops.yaml')
    await writeFile(config, `regions:\n  local: {url: "file://${root}"}\n`)
    const run = await runCli(['sweep', 'blobs', '--config', config, '--report', '-'])
    assert.equal(run.code, 1, run.stderr)
    assert.deepEqual(blobDigests(run.stdout), orphans)
    assert.match(run.stderr, /would remove 3 blobs/)
    const both = await runCli(['sweep', 'blobs', '--config', config, '--report', '-', '--json'])
    assert.equal(both.code, 2, both.stdout + both.stderr)
    assert.match(both.stdout + both.stderr, /both want stdout/)
  })

  test('s3://bucket/key: written with the configured region of that bucket, the same lines as a file report', async () => {
    const rgw = await sharedRadosgw()
    const bucket = await rgw.newBucket('report')
    const {root, orphans} = await storeWithOrphans()
    const dir = await tempDir('report-s3')
    const config = join(dir, 'regops.yaml')
    // The report's bucket is another region's; without its endpoint and keys the write could not reach radosgw.
    await writeFile(
      config,
      `primary: local\nregions:\n  local: {url: "file://${root}"}\n` +
        `  rgw: {url: "s3://${bucket}/docker/registry/v2", endpoint: "${rgw.endpoint}", region: us-east-1, checksums: when_required, ` +
        `accessKeyId: "${rgw.accessKeyId}", secretAccessKey: "${rgw.secretAccessKey}"}\n`,
    )
    const key = 'reports/sweep.jsonl'
    const run = await runCli(['sweep', 'blobs', '--config', config, '--report', `s3://${bucket}/${key}`, '--json'], {
      env: {AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_PROFILE: undefined},
    })
    assert.equal(run.code, 1, run.stdout + run.stderr)
    assert.equal(run.json.reportFile, `s3://${bucket}/${key}`)
    const got = await rgw.s3Client().send(new GetObjectCommand({Bucket: bucket, Key: key}))
    const text = await got.Body!.transformToString()
    assert.deepEqual(blobDigests(text), orphans)
    const file = join(dir, 'sweep.jsonl')
    await runCli(['sweep', 'blobs', '--config', config, '--report', `file://${file}`, '--json'])
    assert.deepEqual(
      text.split('\n').filter(Boolean).sort(),
      (await readFile(file, 'utf8')).split('\n').filter(Boolean).sort(),
    )
  })

  test('default location in a read-only current directory: $REGOPS_REPORT_DIR, named in the output', async () => {
    const {root, orphans} = await storeWithOrphans()
    const dir = await tempDir('report-ro')
    // Root writes to a 0555 directory regardless: the CLI runs as nobody, who can read the store and config only.
    await chmod(dir, 0o755)
    const readOnly = join(dir, 'cwd')
    await mkdir(readOnly, {mode: 0o555})
    await chmod(readOnly, 0o555)
    const reportDir = join(dir, 'reports')
    await mkdir(reportDir)
    await chmod(reportDir, 0o777)
    await chmod(root, 0o755)
    const config = join(dir, 'regops.yaml')
    await writeFile(config, `regions:\n  local: {url: "file://${root}"}\n`, {mode: 0o644})
    const run = await runAsNobody(['sweep', 'blobs', '--config', config], readOnly, {REGOPS_REPORT_DIR: reportDir})
    assert.equal(run.code, 1, run.stdout + run.stderr)
    const files = await readdir(reportDir)
    assert.equal(files.length, 1, `one report in ${reportDir}: ${files.join(', ')}`)
    assert.match(files[0], /^regops-sweep-.*\.jsonl$/)
    const report = join(reportDir, files[0])
    assert.ok(run.stdout.includes(`candidates in ${report}`), run.stdout)
    assert.deepEqual(blobDigests(await readFile(report, 'utf8')), orphans)
    assert.deepEqual(await readdir(readOnly), [])
  })
})

function runAsNobody(
  args: string[],
  cwd: string,
  env: Record<string, string>,
): Promise<{code: number | null; stdout: string; stderr: string}> {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd,
    uid: NOBODY,
    gid: NOBODY,
    env: {PATH: process.env.PATH, HOME: '/tmp', ...env},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => resolve({code, stdout, stderr}))
  })
}
