// The cross-region audit on real parts: two S3 regions (two radosgw clusters) and a filesystem region, made
// identical through the registry and `replicate`, then drifted on purpose. Then --repair, a replicate to an
// empty region killed midway and resumed, and the same audit from an S3 Inventory report.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {gzipSync} from 'node:zlib'
import {mkdtemp, mkdir, readFile, rm, truncate, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3'
import pg from 'pg'
import {sharedPostgres} from '../../helpers/postgres.js'
import {startRadosgw, type RadosgwServer} from '../../helpers/radosgw.js'
import {startRegistry} from '../../helpers/registry.js'
import {startFaultProxy, type FaultProxy} from '../../helpers/fault-proxy.js'
import {digestOf, pullImage, pushImage, randomBlob} from '../../helpers/images.js'
import {runCli, startCli} from '../../helpers/cli.js'
import {sleep} from '../../helpers/tmp.js'
import {freePort} from '../../helpers/ports.js'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

const ROOT = 'docker/registry/v2'
const blobKey = (digest: string) => `blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}/data`

/** A region as the test drifts it: raw writes under the registry root, bypassing regops and the registry. */
interface TestRegion {
  name: string
  put(key: string, body: Buffer | string): Promise<void>
  remove(key: string): Promise<void>
  get(key: string): Promise<Buffer>
  keys(): Promise<Array<{key: string; size: number; lastModified: Date}>>
}

function s3Region(name: string, client: S3Client, bucket: string): TestRegion {
  return {
    name,
    put: async (key, body) =>
      void (await client.send(new PutObjectCommand({Bucket: bucket, Key: `${ROOT}/${key}`, Body: body}))),
    remove: async (key) => void (await client.send(new DeleteObjectCommand({Bucket: bucket, Key: `${ROOT}/${key}`}))),
    get: async (key) =>
      Buffer.from(
        await (
          await client.send(new GetObjectCommand({Bucket: bucket, Key: `${ROOT}/${key}`}))
        ).Body!.transformToByteArray(),
      ),
    keys: async () => {
      const out: Array<{key: string; size: number; lastModified: Date}> = []
      let token: string | undefined
      do {
        const page = await client.send(new ListObjectsV2Command({Bucket: bucket, ContinuationToken: token}))
        for (const o of page.Contents ?? []) out.push({key: o.Key!, size: o.Size!, lastModified: o.LastModified!})
        token = page.NextContinuationToken
      } while (token)
      return out
    },
  }
}

function fsRegion(name: string, root: string): TestRegion {
  return {
    name,
    put: async (key, body) => {
      await mkdir(dirname(join(root, key)), {recursive: true})
      await writeFile(join(root, key), body)
    },
    remove: (key) => rm(join(root, key), {force: true}),
    get: (key) => readFile(join(root, key)),
    keys: async () => [],
  }
}

interface FindingLine {
  kind: string
  region: string
  key: string
}

async function findingsOf(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8')
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as FindingLine)
    .map((f) => `${f.kind} ${f.region} ${f.key}`)
    .sort()
}

describe('audit regions: eu and us on radosgw, lab on a filesystem', () => {
  let dir: string
  let config: string
  let dbUrl: string
  let rgwA: RadosgwServer
  let rgwB: RadosgwServer
  let proxy: FaultProxy
  let eu: TestRegion
  let us: TestRegion
  let lab: TestRegion
  let fresh: TestRegion
  const tags = [
    {repo: 'library/web', tag: 'v1'},
    {repo: 'library/web', tag: 'v2'},
    {repo: 'team/app', tag: 'latest'},
  ]
  const expected: string[] = []
  const checksumOnly: string[] = []
  let lostBlob: {key: string; body: Buffer}
  let extraKey: string
  let freshKey: string

  const cli = (args: string[]) => runCli([...args, '--config', config, '--json'])
  /** The object "written a moment ago": rewritten before each audit that expects it pending (--in-flight 3s). */
  const writePending = () => eu.put(freshKey, randomBlob(600, 'pending'))

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'regops-audit-'))
    cleanups.push(() => rm(dir, {recursive: true, force: true}))
    dbUrl = await (await sharedPostgres()).createDatabase()
    ;[rgwA, rgwB] = await Promise.all([
      startRadosgw({buckets: ['reg-eu']}),
      startRadosgw({buckets: ['reg-us', 'reg-fresh']}),
    ])
    cleanups.push(
      () => rgwA.stop(),
      () => rgwB.stop(),
    )
    // The empty region replicate fills is reached through a proxy that can stall one write: a kill at a known point.
    proxy = await startFaultProxy({target: rgwB.endpoint})
    cleanups.push(() => proxy.close())
    const s3 = (bucket: string, rgw: RadosgwServer, endpoint = rgw.endpoint) =>
      `{url: "s3://${bucket}/${ROOT}", endpoint: "${endpoint}", accessKeyId: "${rgw.accessKeyId}", secretAccessKey: "${rgw.secretAccessKey}", checksums: when_required}`
    const labRoot = join(dir, 'lab', ROOT)
    // A region nothing listens for: the audit's region that does not answer.
    const gone = s3('reg-gone', rgwA, `http://127.0.0.1:${await freePort()}`)
    config = join(dir, 'regops.yaml')
    await writeFile(
      config,
      `regions:\n  eu: ${s3('reg-eu', rgwA)}\n  us: ${s3('reg-us', rgwB)}\n  lab: {url: "file://${labRoot}"}\n  fresh: ${s3('reg-fresh', rgwB, proxy.endpoint)}\n  gone: ${gone}\nprimary: eu\ndatabase:\n  url: ${dbUrl}\n`,
    )
    eu = s3Region('eu', rgwA.s3Client(), 'reg-eu')
    us = s3Region('us', rgwB.s3Client(), 'reg-us')
    lab = fsRegion('lab', labRoot)
    fresh = s3Region('fresh', rgwB.s3Client(), 'reg-fresh')
    assert.equal((await cli(['db', 'migrate', 'up'])).code, 0)

    const registry = await startRegistry({
      storage: {
        kind: 's3',
        endpoint: rgwA.endpoint,
        bucket: 'reg-eu',
        accessKeyId: rgwA.accessKeyId,
        secretAccessKey: rgwA.secretAccessKey,
        region: rgwA.region,
      },
    })
    const base = randomBlob(3000, 'base')
    const v1 = await pushImage(registry.url, 'library/web', 'v1', {layers: [base, randomBlob(2000, 'v1')], seed: 'v1'})
    const v2 = await pushImage(registry.url, 'library/web', 'v2', {layers: [base, randomBlob(2100, 'v2')], seed: 'v2'})
    const app = await pushImage(registry.url, 'team/app', 'latest', {layers: [randomBlob(2200, 'app')], seed: 'app'})
    const lost = await pushImage(registry.url, 'team/lost', 'x', {layers: [randomBlob(900, 'lost')], seed: 'lost'})
    await registry.stop()
    for (const to of ['us', 'lab']) {
      const copied = await cli(['replicate', '--from', 'eu', '--to', to, '--apply'])
      assert.equal(copied.code, 0, copied.stdout + copied.stderr)
    }
    const clean = await cli([
      'audit',
      'regions',
      '--regions',
      'eu,us,lab',
      '--in-flight',
      '0s',
      '--findings',
      join(dir, 'clean.jsonl'),
    ])
    assert.equal(clean.code, 0, `identical after replicate: ${clean.stdout}`)

    // Drift, part one: what must look old by the time of the audit.
    const deleted = blobKey(v1.layerDigests[1])
    await us.remove(deleted)
    expected.push(`missing us ${deleted}`)
    const extra = randomBlob(700, 'extra')
    extraKey = blobKey(digestOf(extra))
    await lab.put(extraKey, extra)
    expected.push(`extra lab ${extraKey}`)
    lostBlob = {key: blobKey(lost.layerDigests[0]), body: await eu.get(blobKey(lost.layerDigests[0]))}
    for (const region of [eu, us, lab]) {
      await region.remove(lostBlob.key)
      expected.push(
        `dangling_link ${region.name} repositories/team/lost/_layers/sha256/${lost.layerDigests[0].slice(7)}/link`,
      )
    }
    await sleep(3000)
    // Part two: rewritten in place (present everywhere, so their age does not matter), and one written a moment ago.
    const truncated = blobKey(v2.layerDigests[1])
    await truncate(join(dir, 'lab', ROOT, truncated), 1000)
    expected.push(`size_mismatch lab ${truncated}`)
    const altered = blobKey(app.layerDigests[0])
    const body = await us.get(altered)
    body[10] ^= 0xff
    await us.put(altered, body)
    checksumOnly.push(`corrupt us ${altered}`)
    const tagKey = 'repositories/library/web/_manifests/tags/v1/current/link'
    await us.put(tagKey, v2.manifestDigest)
    expected.push(`tag_mismatch us ${tagKey}`)
    freshKey = blobKey(digestOf(randomBlob(600, 'pending')))
    await writePending()
    expected.push(`pending eu ${freshKey}`)
  })

  test('--level size reports exactly the drift, each with its kind; the altered blob is not among it', async () => {
    const file = join(dir, 'size.jsonl')
    const res = await cli(['audit', 'regions', '--regions', 'eu,us,lab', '--in-flight', '3s', '--findings', file])
    assert.equal(res.code, 1, res.stdout + res.stderr)
    assert.deepEqual(await findingsOf(file), [...expected].sort())
    assert.equal(res.json.findings.byRegion.us.missing, 1)
  })

  test('--level checksum and --sample 1 also find the blob altered at the same size', async () => {
    for (const args of [
      ['--level', 'checksum'],
      ['--sample', '1'],
    ]) {
      await writePending()
      const file = join(dir, `checksum-${args[0]}.jsonl`)
      const res = await cli([
        'audit',
        'regions',
        '--regions',
        'eu,us,lab',
        '--in-flight',
        '3s',
        '--findings',
        file,
        ...args,
      ])
      assert.equal(res.code, 1, res.stdout + res.stderr)
      assert.deepEqual(await findingsOf(file), [...expected, ...checksumOnly].sort(), args.join(' '))
    }
    await writePending()
    const sampled = await cli([
      'audit',
      'regions',
      '--regions',
      'eu,us,lab',
      '--in-flight',
      '3s',
      '--findings',
      join(dir, 's.jsonl'),
      '--sample',
      '1',
    ])
    assert.match(
      sampled.json.checksum.statement,
      /1 corrupt in \d+ re-hashed copies: no corruption above [\d.]+% at 95% confidence/,
    )
  })

  test('the same audit from an S3 Inventory report of us finds the same drift as from LIST', async () => {
    const objects = (await us.keys()).reverse() // not sorted, as inventories are not
    const csv = objects
      .map((o) =>
        ['reg-us', encodeURIComponent(o.key).replace(/%2F/g, '/'), String(o.size), o.lastModified.toISOString(), 'etag']
          .map((f) => `"${f}"`)
          .join(','),
      )
      .join('\n')
    // The layout S3 writes: <destination prefix>/<source bucket>/<config id>/<date>/manifest.json, data files
    // named by their key in the destination bucket. The report is read with the region's own endpoint and
    // credentials, so it lies in a bucket of the same store (here: under _inventory/ in the us bucket itself).
    const base = '_inventory/us/all/2024-01-01T00-00Z'
    const client = rgwB.s3Client()
    const lines = csv.split('\n')
    const half = Math.ceil(lines.length / 2)
    const files = [lines.slice(0, half), lines.slice(half)].map((part, i) => ({
      key: `_inventory/us/all/data/part-${i}.csv.gz`,
      body: gzipSync(part.join('\n') + '\n'),
    }))
    for (const f of files) await client.send(new PutObjectCommand({Bucket: 'reg-us', Key: f.key, Body: f.body}))
    const manifest = {
      sourceBucket: 'reg-us',
      destinationBucket: 'arn:aws:s3:::reg-us',
      version: '2016-11-30',
      creationTimestamp: String(Date.now()),
      fileFormat: 'CSV',
      fileSchema: 'Bucket, Key, Size, LastModifiedDate, ETag',
      files: files.map((f) => ({key: f.key, size: f.body.length, MD5checksum: 'not checked'})),
    }
    await client.send(
      new PutObjectCommand({Bucket: 'reg-us', Key: `${base}/manifest.json`, Body: JSON.stringify(manifest)}),
    )
    await writePending()
    const file = join(dir, 'inventory.jsonl')
    const res = await cli([
      'audit',
      'regions',
      '--regions',
      'eu,us,lab',
      '--in-flight',
      '3s',
      '--findings',
      file,
      '--inventory',
      `us=s3://reg-us/${base}/manifest.json`,
    ])
    assert.equal(res.code, 1, res.stdout + res.stderr)
    assert.equal(res.json.sources.us, 'inventory')
    assert.deepEqual(await findingsOf(file), [...expected].sort())
  })

  test('--repair --from eu copies missing and corrupt blobs and the moved tag, verified and journaled; then a second audit exits 0', async () => {
    await writePending()
    const res = await cli([
      'audit',
      'regions',
      '--regions',
      'eu,us,lab',
      '--in-flight',
      '3s',
      '--findings',
      join(dir, 'repair.jsonl'),
      '--level',
      'checksum',
      '--repair',
      '--from',
      'eu',
    ])
    assert.equal(res.code, 1, res.stdout + res.stderr)
    assert.equal(res.json.repair.failed, 0)
    const client = new pg.Client({connectionString: dbUrl})
    await client.connect()
    const done = await client.query(
      `SELECT region, key FROM regops_journal WHERE job_id = $1 AND action = 'repair' AND phase = 'done' ORDER BY region, key`,
      [res.json.jobId],
    )
    await client.end()
    const repaired = done.rows.map((r) => `${r.region} ${r.key}`)
    for (const f of [...expected, ...checksumOnly].filter((f) =>
      /^(missing|size_mismatch|corrupt|tag_mismatch) /.test(f),
    )) {
      const [, region, key] = f.split(' ')
      assert.ok(
        repaired.includes(`${region} ${key}`),
        `journal holds the copy of ${key} to ${region}: ${repaired.join(', ')}`,
      )
    }
    // What a copy cannot fix: an extra object (the sweep's business), a blob no region holds, one still arriving.
    await lab.remove(extraKey)
    await eu.remove(freshKey)
    for (const region of [eu, us, lab]) await region.put(lostBlob.key, lostBlob.body)
    const again = await cli([
      'audit',
      'regions',
      '--regions',
      'eu,us,lab',
      '--in-flight',
      '0s',
      '--level',
      'checksum',
      '--findings',
      join(dir, 'after.jsonl'),
    ])
    assert.equal(again.code, 0, again.stdout + again.stderr)
  })

  test('replicate --from eu to an empty region, killed midway and resumed: the audit over all regions exits 0 and a registry on it pulls every tag', async () => {
    const euBlobs = (await eu.keys())
      .filter((o) => o.key.startsWith(`${ROOT}/blobs/`))
      .map((o) => o.key)
      .sort()
    const stallAt = euBlobs[Math.floor(euBlobs.length / 2)]
    proxy.setRules([
      {
        name: 'stall',
        match: (r) => r.method === 'PUT' && r.path.endsWith(stallAt),
        action: {kind: 'stall', ms: 120_000},
        times: 1,
      },
    ])
    const run = startCli([
      'replicate',
      '--from',
      'eu',
      '--to',
      'fresh',
      '--apply',
      '--concurrency',
      '1',
      '--config',
      config,
      '--json',
    ])
    const deadline = Date.now() + 60_000
    while (proxy.fired('stall') === 0 && Date.now() < deadline) await sleep(50)
    assert.equal(proxy.fired('stall'), 1, 'the copy reached the stalled write')
    run.child.kill('SIGKILL')
    const killed = await run.done
    assert.equal(killed.signal, 'SIGKILL')
    const partial = (await fresh.keys()).length
    assert.ok(partial > 0 && partial < euBlobs.length, `killed midway: ${partial} objects in the new region`)
    proxy.setRules([])
    const client = new pg.Client({connectionString: dbUrl})
    await client.connect()
    const job = await client.query(`SELECT id FROM regops_jobs WHERE kind = 'replicate' ORDER BY id DESC LIMIT 1`)
    // The killed worker's heartbeat is fresh: age it, as a minute would pass in production.
    await client.query(`UPDATE regops_jobs SET heartbeat_at = now() - interval '5 minutes' WHERE id = $1`, [
      job.rows[0].id,
    ])
    await client.end()
    const resumed = await cli(['replicate', '--from', 'eu', '--to', 'fresh', '--resume', String(job.rows[0].id)])
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr)
    const audit = await cli([
      'audit',
      'regions',
      '--regions',
      'eu,us,lab,fresh',
      '--in-flight',
      '0s',
      '--level',
      'checksum',
      '--findings',
      join(dir, 'all.jsonl'),
    ])
    assert.equal(audit.code, 0, audit.stdout + audit.stderr)
    const registry = await startRegistry({
      storage: {
        kind: 's3',
        endpoint: rgwB.endpoint,
        bucket: 'reg-fresh',
        accessKeyId: rgwB.accessKeyId,
        secretAccessKey: rgwB.secretAccessKey,
        region: rgwB.region,
      },
    })
    cleanups.push(() => registry.stop())
    for (const {repo, tag} of tags) {
      const pulled = await pullImage(registry.url, repo, tag)
      assert.ok(pulled.ok, `${repo}:${tag} pulls in full from the new region: ${pulled.errors.join('; ')}`)
    }
  })

  test('bad input: a key outside the layout, a listing that fails and a region that does not answer are named, exit 3, the rest audited', async () => {
    const junk = 'blobs/sha256/ab/not-a-digest/data'
    await lab.put(junk, 'junk')
    const extra = randomBlob(500, 'extra-2')
    const extraAt = blobKey(digestOf(extra))
    await lab.put(extraAt, extra)
    await sleep(1100)
    const failing = extraAt.slice(13, 15) === '00' ? '01' : '00'
    const failingPrefix = `${ROOT}/blobs/sha256/${failing}/`
    proxy.setRules([
      {
        // The prefix's own listing, and the range of prefixes sharing its first digit that is listed first.
        name: 'list-500',
        match: (r) =>
          r.method === 'GET' &&
          (r.query.get('prefix') === failingPrefix || r.query.get('prefix') === `${ROOT}/blobs/sha256/${failing[0]}`),
        action: {kind: 'status', status: 500, code: 'InternalError'},
      },
    ])
    try {
      const res = await cli([
        'audit',
        'regions',
        '--regions',
        'eu,lab,fresh,gone',
        '--in-flight',
        '1s',
        '--findings',
        join(dir, 'bad.jsonl'),
      ])
      assert.equal(res.code, 3, res.stdout + res.stderr)
      const named = res.json.problems.map((p: {region: string; where: string}) => `${p.region} ${p.where}`)
      assert.ok(named.includes(`lab ${junk}`), named.join(', '))
      assert.ok(named.includes(`fresh ${failingPrefix.slice(ROOT.length + 1)}`), named.join(', '))
      const gone = res.json.problems.filter((p: {region: string}) => p.region === 'gone')
      assert.equal(gone.length, 1, `the region that does not answer is named once: ${named.join(', ')}`)
      assert.match(gone[0].message, /does not answer/)
      assert.equal(res.json.problemCount, 3, named.join(', '))
      assert.deepEqual(
        await findingsOf(join(dir, 'bad.jsonl')),
        [`extra lab ${extraAt}`],
        'the rest audited: nothing taken as missing in the failed prefix nor in the silent region',
      )
    } finally {
      proxy.setRules([])
      await lab.remove(junk)
      await lab.remove(extraAt)
    }
  })
})
