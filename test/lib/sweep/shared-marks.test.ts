// Sharded storage marks: three `sweep mark` shards read each manifest once between them, and three
// `sweep blobs --marks` shards that read those marks find exactly what one unsharded sweep finds,
// without reading a manifest themselves. A run with a shard missing, or that began before the sweep's
// cutoff, is refused.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {runCli} from '../../helpers/cli.js'
import {openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {LayoutWriter} from '../../../src/lib/sample/layout-writer.js'
import {ageTree} from '../../../src/lib/quickstart/sample.js'
import {sweepBlobs, type SweepBlobsResult} from '../../../src/lib/sweep/sweep-blobs.js'
import {markShard} from '../../../src/lib/sweep/shared-marks.js'
import {Logger} from '../../../src/lib/output/logger.js'
import {RefusedError} from '../../../src/lib/errors.js'

const logger = new Logger('silent')
const HOUR = 3_600_000
let root: string
let db: Db
let dbUrl: string
let manifests: string[]

/** A filesystem driver that counts reads of each blob (a manifest is read as its blob). */
class CountingDriver extends FilesystemDriver {
  readonly reads = new Map<string, number>()
  override async readSmall(key: string, limit: number): Promise<Buffer> {
    if (key.startsWith('blobs/')) this.reads.set(key, (this.reads.get(key) ?? 0) + 1)
    return super.readSmall(key, limit)
  }
  total(): number {
    return [...this.reads.values()].reduce((a, b) => a + b, 0)
  }
}

const driver = () => new CountingDriver('local', join(root, 'docker/registry/v2'))

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'regops-shared-marks-'))
  const writer = new LayoutWriter(driver())
  const shared = Buffer.from('a base layer shared by every repository')
  const written = await Promise.all(
    Array.from({length: 36}, (_, i) =>
      writer.writeImage({
        repository: `team${i % 4}/app${i % 9}`,
        tag: `v${i}`,
        seed: `image-${i}`,
        layers: 2,
        layerSize: 64,
        sharedLayers: [shared],
      }),
    ),
  )
  manifests = written.map((image) => image.manifestDigest)
  for (let i = 0; i < 25; i++)
    await writer.writeOrphan(i % 2 ? `team${i % 4}/app${i % 9}` : undefined, `orphan-${i}`, 50)
  await ageTree(root, new Date(Date.now() - 3 * 86_400_000))
  dbUrl = await (await sharedPostgres()).createDatabase()
  db = openDatabase(dbUrl, {max: 4})
  await migrateUp(db)
})
after(async () => {
  await db?.close()
  await rm(root, {recursive: true, force: true})
})

async function sweep(
  storage: FilesystemDriver,
  opts: {marks?: string; shard?: {index: number; count: number}},
): Promise<{result: SweepBlobsResult; digests: string[]}> {
  const reportFile = join(root, `report-${opts.marks ?? 'walk'}-${opts.shard?.index ?? 'all'}.jsonl`)
  const result = await sweepBlobs({
    driver: storage,
    logger,
    strategy: 'storage',
    mode: 'dry-run',
    db,
    minAgeMs: HOUR,
    quarantinePrefix: '_regops/quarantine',
    reportFile,
    ...opts,
  })
  const digests = (await readFile(reportFile, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line).digest as string)
  return {result, digests}
}

test('three mark shards read each manifest once; three sweep shards on their marks find what one sweep finds', async () => {
  const single = driver()
  const alone = await sweep(single, {})
  assert.equal(alone.result.candidates.count, 25)
  assert.equal(alone.result.markComplete, true)

  const marking = driver()
  const marked = []
  for (let index = 0; index < 3; index++)
    marked.push(
      await markShard({
        db,
        driver: marking,
        runId: 'run-a',
        shard: {index, count: 3},
        minAgeMs: HOUR,
        concurrency: 8,
        logger,
      }),
    )
  assert.ok(marked.every((shard) => shard.complete))
  assert.ok(
    marked.every((shard) => shard.repositories > 0),
    'each shard walked some repositories',
  )
  assert.equal(marked[2].runFinished, true)
  assert.equal(
    marked.reduce((n, shard) => n + shard.manifests, 0),
    manifests.length,
  )
  // Each manifest once, between the three shards: as many reads as the single walk made, none twice.
  assert.equal(marking.total(), manifests.length)
  assert.deepEqual(
    [...marking.reads.values()].filter((n) => n > 1),
    [],
  )
  assert.equal(marking.total(), single.total())

  const sweeping = driver()
  const shards = []
  for (let index = 0; index < 3; index++) shards.push(await sweep(sweeping, {marks: 'run-a', shard: {index, count: 3}}))
  assert.equal(sweeping.total(), 0, 'a sweep on shared marks reads no manifest')
  assert.deepEqual(shards.flatMap((s) => s.digests).sort(), alone.digests.sort())
  assert.equal(
    shards.reduce((n, s) => n + s.result.scanned.blobs, 0),
    alone.result.scanned.blobs,
  )
  assert.equal(
    shards.reduce((n, s) => n + s.result.referenced, 0),
    alone.result.referenced,
  )
  assert.ok(shards.every((s) => s.result.markComplete && s.result.marked.manifests === manifests.length))
})

test('a run with a shard not finished, or begun before the cutoff, is refused', async () => {
  await markShard({
    db,
    driver: driver(),
    runId: 'run-b',
    shard: {index: 0, count: 2},
    minAgeMs: HOUR,
    concurrency: 8,
    logger,
  })
  await assert.rejects(sweep(driver(), {marks: 'run-b'}), (error: Error) => {
    assert.ok(error instanceof RefusedError)
    assert.match(error.message, /shard\(s\) 1\/2 have not finished/)
    return true
  })
  await markShard({
    db,
    driver: driver(),
    runId: 'run-b',
    shard: {index: 1, count: 2},
    minAgeMs: HOUR,
    concurrency: 8,
    logger,
  })
  await sweep(driver(), {marks: 'run-b'})
  // The same run two hours older: a blob written after it began could be older than the grace period.
  await db.query(`UPDATE regops_mark_shards SET started_at = started_at - interval '2 hours' WHERE run_id = 'run-b'`)
  await assert.rejects(sweep(driver(), {marks: 'run-b'}), (error: Error) => {
    assert.ok(error instanceof RefusedError)
    assert.match(error.message, /before this sweep's cutoff/)
    return true
  })
})

test('a new mark run deletes runs of its region older than the retention, with their marks; newer runs and other regions stay', async () => {
  await db.query(
    `INSERT INTO regops_mark_runs (id, region, shard_count, created_at) VALUES
       ('old-local', 'local', 1, now() - interval '8 days'), ('recent-local', 'local', 1, now() - interval '6 days'),
       ('old-elsewhere', 'elsewhere', 1, now() - interval '30 days')`,
  )
  await db.query(
    `INSERT INTO regops_marks (run_id, digest) VALUES ('old-local', 'sha256:${'a'.repeat(64)}'), ('recent-local', 'sha256:${'b'.repeat(64)}')`,
  )
  const result = await markShard({
    db,
    driver: driver(),
    runId: 'run-c',
    shard: {index: 0, count: 1},
    minAgeMs: HOUR,
    concurrency: 8,
    logger,
  })
  assert.deepEqual(result.prunedRuns, ['old-local'])
  const runs = await db.query<{id: string}>(`SELECT id FROM regops_mark_runs WHERE id <> ALL($1) ORDER BY id`, [
    ['run-a', 'run-b'],
  ])
  assert.deepEqual(
    runs.rows.map((row) => row.id),
    ['old-elsewhere', 'recent-local', 'run-c'],
  )
  const marks = await db.query(`SELECT 1 FROM regops_marks WHERE run_id = 'old-local'`)
  assert.equal(marks.rowCount, 0)
  assert.ok(result.marks > 0)
})

test('through the CLI: two sweep mark shards, then sweep blobs --marks finds what a walking sweep finds; an unfinished run is exit 4', async () => {
  const config = join(root, 'regops.yaml')
  await writeFile(
    config,
    `regions:\n  local: {url: "file://${join(root, 'docker/registry/v2')}"}\ndatabase:\n  url: ${dbUrl}\n`,
  )
  const base = ['--config', config, '--json']
  const mark0 = await runCli(['sweep', 'mark', '--mark-run', 'cli-run', '--shard', '0/2', '--min-age', '1h', ...base])
  assert.equal(mark0.code, 0, mark0.stderr)
  assert.equal(JSON.parse(mark0.stdout).runFinished, false)
  const early = await runCli([
    'sweep',
    'blobs',
    '--marks',
    'cli-run',
    '--min-age',
    '1h',
    '--report',
    join(root, 'early.jsonl'),
    ...base,
  ])
  assert.equal(early.code, 4, early.stderr)
  assert.match(early.stderr + early.stdout, /have not finished/)
  const mark1 = await runCli(['sweep', 'mark', '--mark-run', 'cli-run', '--shard', '1/2', '--min-age', '1h', ...base])
  assert.equal(mark1.code, 0, mark1.stderr)
  assert.equal(JSON.parse(mark1.stdout).runFinished, true)
  const onMarks = await runCli([
    'sweep',
    'blobs',
    '--marks',
    'cli-run',
    '--min-age',
    '1h',
    '--report',
    join(root, 'marks.jsonl'),
    ...base,
  ])
  const walking = await runCli(['sweep', 'blobs', '--min-age', '1h', '--report', join(root, 'walk.jsonl'), ...base])
  assert.equal(onMarks.code, 1, onMarks.stderr)
  assert.equal(walking.code, 1, walking.stderr)
  const candidates = async (file: string) =>
    (await readFile(file, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line).digest)
      .sort()
  assert.deepEqual(await candidates(join(root, 'marks.jsonl')), await candidates(join(root, 'walk.jsonl')))
  assert.equal((await candidates(join(root, 'walk.jsonl'))).length, 25)
  // the run's totals, as the walking sweep counted them
  assert.equal(JSON.parse(onMarks.stdout).marked.manifests, JSON.parse(walking.stdout).marked.manifests)
})
