// Errors are never "nothing there": an unreadable spill file, a listing that ends without its
// continuation, an undated or unsorted listing, a symlinked repository, and an unreachable region
// must stop the sweep (or make the mark incomplete), never make a blob look unreferenced.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {createServer, type Server} from 'node:http'
import {mkdir, mkdtemp, rename, rm, symlink, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {runCli} from '../../helpers/cli.js'
import {startRadosgw, type RadosgwServer} from '../../helpers/radosgw.js'
import {ShardLines} from '../../../src/lib/sweep/spill.js'
import {S3Driver} from '../../../src/lib/storage/s3.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {keyBefore} from '../../../src/lib/storage/driver.js'
import {writeSampleRegistry} from '../../../src/lib/quickstart/sample.js'
import {sweepBlobs} from '../../../src/lib/sweep/sweep-blobs.js'
import {Logger} from '../../../src/lib/output/logger.js'
import {RegopsError, StorageError} from '../../../src/lib/errors.js'
import type {S3RegionConfig} from '../../../src/lib/config/config.js'

const logger = new Logger('silent')
const DAY = 86_400_000
const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

async function tempDir(label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `regops-${label}-`))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  return dir
}

async function drain(it: AsyncIterable<unknown>): Promise<number> {
  let n = 0
  for await (const _ of it) n++
  return n
}

test('spill: a missing shard file is empty; any other read failure throws (exit 3), never "no marks"', async () => {
  // Spilling from the first line: the files are what is read.
  const lines = ShardLines.create(['00', '01'], 'errtest', 0)
  cleanups.push(() => lines.dispose())
  assert.deepEqual(await lines.read('00'), [])
  // A directory where the marks file should be: EISDIR, as EIO or EMFILE would be.
  await mkdir(join(lines.dir, '01'))
  await assert.rejects(
    lines.read('01'),
    (e: unknown) => e instanceof RegopsError && e.exitCode === 3 && /EISDIR/.test(e.message),
  )
})

test('keyBefore is UTF-8 byte order, also where UTF-16 code units disagree', () => {
  assert.equal(keyBefore('a', 'b'), true)
  assert.equal(keyBefore('a', 'a'), false)
  assert.equal(keyBefore('a', 'a/'), true)
  // U+FF5E sorts before U+1F600 in UTF-8 (ef bd 9e < f0 9f 98 80), after its surrogates in UTF-16.
  assert.equal(keyBefore('\uff5e', '\u{1f600}'), true)
  assert.equal(keyBefore('\u{1f600}', '\uff5e'), false)
})

describe('S3 listing answers that must not end or date a listing silently (a stand-in S3 on loopback)', () => {
  let server: Server
  let endpoint: string
  let body = ''
  before(async () => {
    server = createServer((req, res) => {
      req.resume()
      res.writeHead(200, {'content-type': 'application/xml'})
      res.end(body)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const address = server.address() as {port: number}
    endpoint = `http://127.0.0.1:${address.port}`
  })
  after(() => new Promise<void>((resolve) => server.close(() => resolve())))

  const driver = () => {
    const region: S3RegionConfig = {
      kind: 's3',
      name: 'fake',
      url: 's3://fake/',
      bucket: 'fake',
      prefix: '',
      region: 'us-east-1',
      endpoint,
      forcePathStyle: true,
      checksums: 'when_required',
      concurrency: 4,
      accessKeyId: 'k',
      secretAccessKey: 's',
    }
    return new S3Driver(region, {maxAttempts: 1})
  }
  const entry = (key: string, modified: string | null = '2026-01-02T03:04:05.000Z', size = '1') =>
    `<Contents><Key>${key}</Key>${modified === null ? '' : `<LastModified>${modified}</LastModified>`}<Size>${size}</Size></Contents>`
  const page = (entries: string, tail = '<IsTruncated>false</IsTruncated>') =>
    `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>fake</Name>${tail}${entries}</ListBucketResult>`

  test('a well-formed page lists (the stand-in answers as S3 does)', async () => {
    body = page(entry('a') + entry('b'))
    const d = driver()
    assert.equal(await drain(d.list('')), 2)
    await d.close()
  })

  test('IsTruncated true without a continuation token is an error, not the end of the listing', async () => {
    body = page(entry('a'), '<IsTruncated>true</IsTruncated>')
    const d = driver()
    await assert.rejects(
      drain(d.list('')),
      (e: unknown) => e instanceof StorageError && /NextContinuationToken/.test(e.message),
    )
    await d.close()
  })

  test('a missing or unparsable LastModified is an error, not an old date', async () => {
    const d = driver()
    body = page(entry('a', null))
    await assert.rejects(
      drain(d.list('')),
      (e: unknown) => e instanceof StorageError && /no LastModified/.test(e.message),
    )
    body = page(entry('a', 'yesterday-ish'))
    await assert.rejects(
      drain(d.list('')),
      (e: unknown) => e instanceof StorageError && /unparsable LastModified 'yesterday-ish'/.test(e.message),
    )
    body = page(entry('a', undefined, 'lots'))
    await assert.rejects(
      drain(d.list('')),
      (e: unknown) => e instanceof StorageError && /unparsable Size 'lots'/.test(e.message),
    )
    await d.close()
  })

  test('a listing out of byte order stops, naming both keys', async () => {
    const d = driver()
    body = page(entry('blobs/b') + entry('blobs/a'))
    await assert.rejects(
      drain(d.list('')),
      (e: unknown) =>
        e instanceof StorageError &&
        e.code === 'UNSORTED_LISTING' &&
        /'blobs\/a' came after 'blobs\/b'/.test(e.message),
    )
    body = page(entry('x') + entry('x'))
    await assert.rejects(drain(d.list('')), /out of order/, 'a repeated key is not strictly increasing')
    await d.close()
  })
})

describe('filesystem: symbolic links are followed as distribution follows them', () => {
  test('a symlinked repository directory is marked: its blobs are not candidates', async () => {
    const dir = await tempDir('symlink')
    const root = join(dir, 'store')
    const {orphans} = await writeSampleRegistry(new FilesystemDriver('local', root), root)
    // tools/ci lives elsewhere, linked in (as an operator moving a namespace to another disk would do).
    await mkdir(join(dir, 'elsewhere'))
    await rename(join(root, 'repositories', 'tools', 'ci'), join(dir, 'elsewhere', 'ci'))
    await symlink(join(dir, 'elsewhere', 'ci'), join(root, 'repositories', 'tools', 'ci'))
    // and a whole namespace linked in too
    await rename(join(root, 'repositories', 'library'), join(dir, 'elsewhere', 'library'))
    await symlink(join(dir, 'elsewhere', 'library'), join(root, 'repositories', 'library'))
    const report = join(dir, 'r.jsonl')
    const result = await sweepBlobs({
      driver: new FilesystemDriver('local', root),
      strategy: 'storage',
      mode: 'dry-run',
      minAgeMs: DAY,
      quarantinePrefix: '_regops/quarantine',
      logger,
      reportFile: report,
    })
    assert.equal(result.marked.repositories, 3, 'all three repositories seen')
    assert.equal(result.problemCount, 0, JSON.stringify(result.problems))
    assert.equal(
      result.candidates.count,
      orphans.length,
      'only the planted orphans; nothing the linked repositories use',
    )
  })

  test('a symlink loop and a dangling symlink are errors that make the mark incomplete', async () => {
    const dir = await tempDir('symloop')
    const root = join(dir, 'store')
    await writeSampleRegistry(new FilesystemDriver('local', root), root)
    await symlink(join(root, 'repositories', 'team'), join(root, 'repositories', 'team', 'api', 'loop'))
    const driver = new FilesystemDriver('local', root)
    await assert.rejects(
      drain(driver.list('repositories/team/')),
      (e: unknown) => e instanceof StorageError && e.code === 'SYMLINK_LOOP',
    )
    const looped = await sweepBlobs({
      driver,
      strategy: 'storage',
      mode: 'dry-run',
      minAgeMs: DAY,
      quarantinePrefix: 'q',
      logger,
      reportFile: join(dir, 'a.jsonl'),
    })
    assert.equal(looped.markComplete, false)
    assert.ok(
      looped.problems.some((p) => /symbolic link loop/.test(p.message)),
      JSON.stringify(looped.problems),
    )

    await rm(join(root, 'repositories', 'team', 'api', 'loop'))
    await symlink(join(dir, 'gone'), join(root, 'repositories', 'moved'))
    const dangling = await sweepBlobs({
      driver,
      strategy: 'storage',
      mode: 'dry-run',
      minAgeMs: DAY,
      quarantinePrefix: 'q',
      logger,
      reportFile: join(dir, 'b.jsonl'),
    })
    assert.equal(dangling.markComplete, false)
    assert.ok(
      dangling.problems.some((p) => /repositories\/moved.*target does not exist/.test(p.message)),
      JSON.stringify(dangling.problems),
    )
  })
})

describe('an outage is not a finding (radosgw)', () => {
  let rgw: RadosgwServer
  let dir: string
  before(async () => {
    rgw = await startRadosgw({buckets: ['reg']})
    dir = await tempDir('outage')
    const region: S3RegionConfig = {
      kind: 's3',
      name: 'rgw',
      url: 's3://reg/docker/registry/v2',
      bucket: 'reg',
      prefix: 'docker/registry/v2',
      region: 'us-east-1',
      endpoint: rgw.endpoint,
      forcePathStyle: true,
      checksums: 'when_required',
      concurrency: 16,
      accessKeyId: rgw.accessKeyId,
      secretAccessKey: rgw.secretAccessKey,
    }
    const driver = new S3Driver(region)
    await writeSampleRegistry(driver, undefined)
    await driver.close()
  })
  after(async () => {
    await rgw?.stop()
  })

  const configFor = async (bucket: string) => {
    const file = join(dir, `${bucket}.yaml`)
    await writeFile(
      file,
      `regions:\n  rgw: {url: "s3://${bucket}/docker/registry/v2", endpoint: "${rgw.endpoint}", region: us-east-1, checksums: when_required, ` +
        `accessKeyId: "${rgw.accessKeyId}", secretAccessKey: "${rgw.secretAccessKey}"}\n`,
    )
    return file
  }
  const sweep = async (bucket: string) => {
    const started = Date.now()
    const run = await runCli([
      'sweep',
      'blobs',
      '--config',
      await configFor(bucket),
      '--min-age',
      '1d',
      '--report',
      join(dir, `${bucket}.jsonl`),
    ])
    return {...run, seconds: (Date.now() - started) / 1000}
  }

  test('the sweep runs on this region while the gateway is up', async () => {
    const run = await sweep('reg')
    assert.equal(run.code, 0, run.stdout + run.stderr)
    assert.match(run.stdout, /would remove 0 blobs/)
  })

  test('a wrong bucket exits 3 with one line naming the bucket and the 404', async () => {
    const run = await sweep('no-such-reg')
    assert.equal(run.code, 3, run.stdout + run.stderr)
    const errors = run.stderr.split('\n').filter((l) => l.startsWith('error:'))
    assert.equal(errors.length, 1, run.stderr)
    assert.match(errors[0], /bucket 'no-such-reg'/)
    assert.match(errors[0], /404/)
    assert.match(errors[0], new RegExp(rgw.endpoint.replace(/\./g, '\\.')))
    assert.doesNotMatch(run.stderr, /"level":"warn"/, 'no per-prefix problems')
  })

  test('with the gateway down the sweep exits 3 within the retry budget, with one line naming endpoint and bucket', async () => {
    await rgw.killGateway()
    const run = await sweep('reg')
    assert.equal(run.code, 3, run.stdout + run.stderr)
    assert.ok(run.seconds < 30, `took ${run.seconds}s`)
    const errors = run.stderr.split('\n').filter((l) => l.startsWith('error:'))
    assert.equal(errors.length, 1, run.stderr)
    assert.match(errors[0], /bucket 'reg'/)
    assert.match(errors[0], new RegExp(rgw.endpoint.replace(/\./g, '\\.')))
    assert.match(errors[0], /ECONNREFUSED/)
    assert.doesNotMatch(run.stderr, /"level":"warn"/, 'the outage is one error, not a problem per prefix')
    assert.doesNotMatch(run.stdout, /would remove/, 'no result that reads like a finding')
  })
})
