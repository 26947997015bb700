// The injected-faults suite (issue 15): each command that reads or writes storage runs through the seeded
// fault proxy (test/helpers/fault-proxy.ts) answering about 5% of its requests with a fault (503 SlowDown,
// 500, a reset connection, a stall, a truncated body, a lying Content-Length), and its outcome is compared
// with the same command run straight at radosgw on an identical store. The stores are written by
// LayoutWriter from the trial's seed, so the two are identical byte for byte, and the seed also places the
// faults: `npm run reliability -- --suite faults --seed N` replays a trial (the placement follows the order
// in which requests reach the proxy, which concurrency may vary a little).
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../helpers/postgres.js'
import {sharedRadosgw, type SharedRadosgw} from '../helpers/radosgw.js'
import {startRegistry} from '../helpers/registry.js'
import {startFaultProxy, type FaultRule, type ProxiedRequest} from '../helpers/fault-proxy.js'
import {pullImage, pushImage} from '../helpers/images.js'
import {reportDigests, runCli, type CliRun} from '../helpers/cli.js'
import {prng} from '../helpers/scenario.js'
import {openDatabase} from '../../src/lib/metadata/db.js'
import {migrateUp} from '../../src/lib/metadata/migrations.js'
import {S3Driver} from '../../src/lib/storage/s3.js'
import {LayoutWriter, seededBytes} from '../../src/lib/sample/layout-writer.js'
import {pathFor} from '../../src/lib/storage/layout.js'
import {runTrials, type ReliabilityRow, type Suite} from './suite.js'

const ROOT = 'docker/registry/v2'
/** The share of requests the proxy answers with a fault. */
export const FAULT_RATE = 0.05
const CRITERION = 'same result as without faults, zero referenced blobs deleted'

// ---------------------------------------------------------------------------------------------------------
// The fault mix: one seeded draw per request decides whether it gets a fault (FAULT_RATE) and which one,
// among the kinds that mean something for that request (a HEAD has no body to cut short or to lie about).

const FAULTS = ['503 SlowDown', '500', 'reset', 'stall', 'truncated body', 'wrong Content-Length'] as const
type Fault = (typeof FAULTS)[number]

export interface FaultTally {
  /** requests seen, by request kind */
  requests: Map<string, number>
  /** faults injected, by fault */
  byFault: Map<Fault, number>
  /** faults injected, by request kind */
  byRequest: Map<string, number>
  /** every request in order: its kind, its fault, and method+url to see retries */
  log: Array<{kind: string; fault?: Fault; id: string; index: number}>
}

function bump<K>(map: Map<K, number>, key: K, n = 1): void {
  map.set(key, (map.get(key) ?? 0) + n)
}

/** S3 request kinds, as the issue names them. */
function s3Kind(r: ProxiedRequest): string {
  const keyed = r.path.split('/').filter(Boolean).length > 1
  if (r.method === 'GET') return keyed ? 'GET' : 'LIST'
  if (r.method === 'PUT') return r.headers['x-amz-copy-source'] ? 'COPY' : 'PUT'
  if (r.method === 'POST') return r.query.has('delete') ? 'DeleteObjects' : 'POST'
  return r.method
}

/** Registry request kinds (the pull path). */
function registryKind(r: ProxiedRequest): string {
  if (r.path === '/v2/' || r.path === '/v2') return 'ping'
  if (r.path.includes('/manifests/')) return 'manifest'
  if (r.path.includes('/blobs/')) return 'blob'
  return 'other'
}

/**
 * Rules for the proxy: a first rule that never fires but draws the request's fault (once per request, in
 * arrival order), then one rule per fault that fires on the request it was drawn for.
 */
function faultRules(
  seed: number,
  classify: (r: ProxiedRequest) => string,
  stallMs: number,
): {
  rules: FaultRule[]
  tally: FaultTally
} {
  const random = prng(seed ^ 0x5eed)
  const tally: FaultTally = {requests: new Map(), byFault: new Map(), byRequest: new Map(), log: []}
  let drawn: Fault | undefined
  const draw: FaultRule = {
    name: 'draw',
    action: {kind: 'pass'},
    match: (r) => {
      const kind = classify(r)
      const possible = FAULTS.filter(
        (f) => r.method !== 'HEAD' || (f !== 'truncated body' && f !== 'wrong Content-Length'),
      )
      drawn = random() < FAULT_RATE ? possible[Math.floor(random() * possible.length)] : undefined
      bump(tally.requests, kind)
      if (drawn) {
        bump(tally.byFault, drawn)
        bump(tally.byRequest, kind)
      }
      tally.log.push({kind, fault: drawn, id: `${r.method} ${r.path}?${r.query}`, index: tally.log.length})
      return false
    },
  }
  const actions: Record<Fault, FaultRule['action']> = {
    '503 SlowDown': {kind: 'status', status: 503},
    '500': {kind: 'status', status: 500},
    reset: {kind: 'reset'},
    stall: {kind: 'stall', ms: stallMs},
    'truncated body': {kind: 'truncate', bytes: 1},
    'wrong Content-Length': {kind: 'wrong-length'},
  }
  const rules = FAULTS.map((fault) => ({name: fault, action: actions[fault], match: () => drawn === fault}))
  return {rules: [draw, ...rules], tally}
}

/** Faulted requests sent again afterwards (the same method and URL): the retries the proxy saw. */
function retriesSeen(tally: FaultTally): number {
  let retried = 0
  const later = new Map<string, number>()
  for (const entry of tally.log) later.set(entry.id, entry.index)
  for (const entry of tally.log) if (entry.fault && later.get(entry.id)! > entry.index) retried++
  return retried
}

/** What a row's trials add up to, for its figures. */
class RowFigures {
  readonly byFault = new Map<string, number>()
  readonly byRequest = new Map<string, number>()
  requests = 0
  retries = 0
  cleanMs = 0
  faultedMs = 0
  /** the tally of the last faulted run, for a row that reads its requests back */
  lastTally?: FaultTally

  /** Runs the command without faults, timed. */
  async clean<T>(work: () => Promise<T>): Promise<T> {
    return timed((ms) => (this.cleanMs += ms), work)
  }

  add(tally: FaultTally): void {
    this.lastTally = tally
    for (const [k, n] of tally.byFault) bump(this.byFault, k, n)
    for (const [k, n] of tally.byRequest) bump(this.byRequest, k, n)
    for (const n of tally.requests.values()) this.requests += n
    this.retries += retriesSeen(tally)
  }

  figures(trials: number, extra: Record<string, number | string> = {}): Record<string, number | string> {
    const list = (m: Map<string, number>) => [...m].map(([k, n]) => `${k} ${n}`).join(', ') || 'none'
    const faults = [...this.byFault.values()].reduce((a, b) => a + b, 0)
    return {
      'requests through the proxy': this.requests,
      'faults injected': faults,
      'by fault': list(this.byFault),
      'by request': list(this.byRequest),
      'faulted requests sent again': this.retries,
      ...extra,
      'mean wall time without faults (s)': round(this.cleanMs / trials / 1000),
      'mean wall time with faults (s)': round(this.faultedMs / trials / 1000),
    }
  }
}

const round = (x: number) => Math.round(x * 10) / 10

// ---------------------------------------------------------------------------------------------------------
// Stores: the same layout from the same seed, written straight into a bucket.

interface Env {
  rgw: SharedRadosgw
  dir: string
  /** a new, migrated database */
  database(): Promise<string>
  cleanups: Array<() => Promise<void>>
}

function s3Region(env: Env, bucket: string, endpoint: string): string {
  const {accessKeyId, secretAccessKey} = env.rgw
  return `{url: "s3://${bucket}/${ROOT}", endpoint: "${endpoint}", accessKeyId: "${accessKeyId}", secretAccessKey: "${secretAccessKey}", checksums: when_required}`
}

function driverFor(env: Env, bucket: string, name = 'eu'): S3Driver {
  return new S3Driver({
    kind: 's3',
    name,
    url: `s3://${bucket}/${ROOT}`,
    bucket,
    prefix: ROOT,
    region: 'us-east-1',
    endpoint: env.rgw.endpoint,
    forcePathStyle: true,
    checksums: 'when_required',
    concurrency: 32,
    accessKeyId: env.rgw.accessKeyId,
    secretAccessKey: env.rgw.secretAccessKey,
  })
}

async function writeConfig(env: Env, name: string, regions: Record<string, string>, extra = ''): Promise<string> {
  const file = join(env.dir, `${name}.yaml`)
  const lines = Object.entries(regions).map(([region, yaml]) => `  ${region}: ${yaml}`)
  await writeFile(file, `regions:\n${lines.join('\n')}\n${extra}`)
  return file
}

interface Store {
  tags: Array<{repo: string; tag: string}>
  /** every blob a manifest of the store references, manifests included */
  referenced: string[]
  orphans: string[]
}

/**
 * A registry layout from the seed: 2 or 3 repositories of tagged images sharing a base layer, an untagged
 * image, a multi-platform index, and 8 to 15 orphaned blobs (some with a repository's layer link).
 */
async function writeStore(env: Env, bucket: string, seed: number): Promise<Store> {
  const random = prng(seed)
  const driver = driverFor(env, bucket)
  try {
    const w = new LayoutWriter(driver, 16)
    const tags: Store['tags'] = []
    const referenced: string[] = []
    const base = seededBytes(`${seed}:base`, 700)
    const repos = ['team/app', 'team/web', 'lib/tool'].slice(0, 2 + Math.floor(random() * 2))
    for (const [r, repo] of repos.entries()) {
      const images = 1 + Math.floor(random() * 2)
      for (let i = 0; i < images; i++) {
        const tag = `v${i + 1}`
        const image = await w.writeImage({
          repository: repo,
          tag,
          seed: `${seed}:${r}:${i}`,
          layers: 1 + Math.floor(random() * 3),
          layerSize: 200 + Math.floor(random() * 3000),
          sharedLayers: random() < 0.7 ? [base] : [],
        })
        tags.push({repo, tag})
        referenced.push(...image.blobs)
      }
    }
    const untagged = await w.writeImage({repository: repos[0]!, seed: `${seed}:untagged`, layers: 1, layerSize: 500})
    referenced.push(...untagged.blobs)
    const children = await Promise.all(
      ['amd64', 'arm64'].map((architecture) =>
        w.writeImage({
          repository: repos[1]!,
          seed: `${seed}:multi:${architecture}`,
          layers: 1,
          layerSize: 400,
          platform: {os: 'linux', architecture},
        }),
      ),
    )
    referenced.push(...children.flatMap((child) => child.blobs))
    const index = await w.writeIndex(repos[1]!, 'multi', children, [
      {os: 'linux', architecture: 'amd64'},
      {os: 'linux', architecture: 'arm64'},
    ])
    tags.push({repo: repos[1]!, tag: 'multi'})
    referenced.push(index)
    const orphans: string[] = []
    const count = 8 + Math.floor(random() * 8)
    for (let i = 0; i < count; i++) {
      const repo = random() < 0.5 ? repos[Math.floor(random() * repos.length)] : undefined
      orphans.push(await w.writeOrphan(repo, `${seed}:orphan:${i}`, 100 + Math.floor(random() * 2000)))
    }
    return {tags, referenced: [...new Set(referenced)].sort(), orphans: orphans.sort()}
  } finally {
    await driver.close()
  }
}

/** Every object under the registry root as `key size`, a quarantine's job id made neutral. */
async function listing(env: Env, bucket: string): Promise<string[]> {
  const driver = driverFor(env, bucket)
  try {
    const out: string[] = []
    for await (const o of driver.list('')) out.push(`${o.key.replace(/\/job-[^/]+\//, '/job-N/')} ${o.size}`)
    return out.sort()
  } finally {
    await driver.close()
  }
}

/** The tags that do not pull in full (every blob re-hashed) through a docker-registry on the bucket itself. */
async function unpullable(env: Env, bucket: string, tags: Store['tags']): Promise<string[]> {
  const {endpoint, accessKeyId, secretAccessKey, region} = env.rgw
  const registry = await startRegistry({storage: {kind: 's3', endpoint, bucket, accessKeyId, secretAccessKey, region}})
  try {
    const broken: string[] = []
    for (const {repo, tag} of tags) {
      const pulled = await pullImage(registry.url, repo, tag)
      if (!pulled.ok) broken.push(`${repo}:${tag} (${pulled.errors[0]})`)
    }
    return broken
  } finally {
    await registry.stop()
  }
}

function differences(label: string, expected: string[], actual: string[]): string | undefined {
  const want = new Set(expected)
  const got = new Set(actual)
  const missing = expected.filter((x) => !got.has(x))
  const extra = actual.filter((x) => !want.has(x))
  if (missing.length === 0 && extra.length === 0) return undefined
  return `${label}: ${missing.length} missing (${missing.slice(0, 3).join('; ')}), ${extra.length} extra (${extra.slice(0, 3).join('; ')})`
}

function expectCode(run: CliRun, codes: number[], what: string): void {
  if (codes.includes(run.code ?? -1)) return
  const problems = (run.json?.problems ?? []) as Array<{region: string; where: string; message: string}>
  const why =
    run.json?.error?.message ??
    (problems.length > 0
      ? problems
          .slice(0, 2)
          .map((p) => `${p.region} ${p.where}: ${p.message}`)
          .join('; ')
      : run.stderr.slice(-300))
  throw new Error(`${what} exited ${run.code ?? run.signal}: ${why}`)
}

/**
 * Runs `work` against a new proxy in front of `target` with the trial's fault mix (seeded by `seed`),
 * timed; what the proxy injected goes to the row's figures.
 */
async function withFaults<T>(
  target: string,
  seed: number,
  classify: (r: ProxiedRequest) => string,
  figures: RowFigures,
  work: (endpoint: string) => Promise<T>,
  stallMs = STALL_MS,
): Promise<T> {
  const {rules, tally} = faultRules(seed, classify, stallMs)
  const proxy = await startFaultProxy({target, seed, rules})
  try {
    return await timed(
      (ms) => (figures.faultedMs += ms),
      () => work(proxy.endpoint),
    )
  } finally {
    figures.add(tally)
    await proxy.close()
  }
}

async function timed<T>(add: (ms: number) => void, work: () => Promise<T>): Promise<T> {
  const started = Date.now()
  try {
    return await work()
  } finally {
    add(Date.now() - started)
  }
}

/** Queries one of the suite's databases. */
async function query(url: string, sql: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  const db = openDatabase(url, {max: 1})
  try {
    return (await db.query(sql, params)).rows
  } finally {
    await db.close()
  }
}

// ---------------------------------------------------------------------------------------------------------
// The rows.

const STALL_MS = 700
/** The load test's stall outlasts its --timeout, so it shows as a timeout; a pull without one stays well inside. */
const PULL_STALL_MS = 2500
const PULL_TIMEOUT_MS = 1500
/** S3 objects cannot be back-dated: sweeps run with --min-age 0 once everything written is a second old. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 1100))

function sweepCli(env: Env, config: string, report: string, ...args: string[]): Promise<CliRun> {
  return runCli([
    'sweep',
    'blobs',
    '--config',
    config,
    '--min-age',
    '0',
    '--force',
    // small stores where the planted orphans are a good share of the blobs, on purpose
    '--allow-mass-delete',
    '--report',
    join(env.dir, report),
    '--json',
    ...args,
  ])
}

/** `sweep blobs` dry-run, storage strategy: the same store read straight and through the faults. */
async function sweepDryRunRow(env: Env, base: number, trials: number): Promise<ReliabilityRow> {
  const figures = new RowFigures()
  const outcome = await runTrials(base, trials, async (seed) => {
    const bucket = await env.rgw.newBucket(`fdry-${seed}`)
    const store = await writeStore(env, bucket, seed)
    const config = (endpoint: string, label: string) =>
      writeConfig(env, `dry-${seed}-${label}`, {eu: s3Region(env, bucket, endpoint)})
    await settle()
    const expected = await figures.clean(async () =>
      sweepCli(env, await config(env.rgw.endpoint, 'c'), `dry-${seed}-c.jsonl`),
    )
    expectCode(expected, [1], 'the dry run without faults')
    const seen = await withFaults(env.rgw.endpoint, seed, s3Kind, figures, async (endpoint) =>
      sweepCli(env, await config(endpoint, 'f'), `dry-${seed}-f.jsonl`),
    )
    expectCode(seen, [1], 'the dry run with faults')
    const candidates = await reportDigests(join(env.dir, `dry-${seed}-c.jsonl`))
    const problem =
      differences('candidates without faults against the planted orphans', store.orphans, candidates) ??
      differences('candidates with faults', candidates, await reportDigests(join(env.dir, `dry-${seed}-f.jsonl`)))
    if (problem) throw new Error(problem)
  })
  return {
    case: `sweep blobs dry-run (storage strategy), ${FAULT_RATE * 100}% of S3 requests faulted`,
    command: 'regops sweep blobs',
    ...outcome,
    criterion: 'the same candidates as the same dry run without faults: exactly the planted orphans',
    figures: figures.figures(trials),
  }
}

/**
 * `sweep blobs --delete` or `--quarantine` on twin stores, one straight and one through the faults; a run
 * that ends partial (exit 3) is resumed (through the faults too). Then the buckets must hold the same
 * objects, and every tag of the faulted one must pull in full through a docker-registry on it.
 */
async function sweepActRow(
  env: Env,
  base: number,
  trials: number,
  mode: '--delete' | '--quarantine',
): Promise<ReliabilityRow> {
  const figures = new RowFigures()
  let resumes = 0
  const outcome = await runTrials(base, trials, async (seed) => {
    const [clean, faulted] = await Promise.all([
      env.rgw.newBucket(`fact-c-${seed}`),
      env.rgw.newBucket(`fact-f-${seed}`),
    ])
    const [store] = await Promise.all([writeStore(env, clean, seed), writeStore(env, faulted, seed)])
    const db = await env.database()
    const settings = `sweep: {quarantine: "eu:_regops/quarantine"}\ndatabase:\n  url: ${db}\n`
    const config = (bucket: string, endpoint: string, label: string) =>
      writeConfig(env, `act-${seed}-${label}`, {eu: s3Region(env, bucket, endpoint)}, settings)
    await settle()
    const expected = await figures.clean(async () =>
      sweepCli(env, await config(clean, env.rgw.endpoint, 'c'), `act-${seed}-c.jsonl`, mode),
    )
    expectCode(expected, [0], `sweep ${mode} without faults`)
    if (expected.json.acted.deleted + expected.json.acted.quarantined !== store.orphans.length)
      throw new Error(`without faults, ${JSON.stringify(expected.json.acted)} for ${store.orphans.length} orphans`)
    await withFaults(env.rgw.endpoint, seed, s3Kind, figures, async (endpoint) => {
      const faultedConfig = await config(faulted, endpoint, 'f')
      let run = await sweepCli(env, faultedConfig, `act-${seed}-f.jsonl`, mode)
      for (let attempt = 1; run.code === 3 && attempt <= 2; attempt++) {
        resumes++
        const [job] = await query(db, `SELECT id FROM regops_jobs WHERE status <> 'done' ORDER BY id DESC LIMIT 1`)
        run = await sweepCli(env, faultedConfig, `act-${seed}-f${attempt}.jsonl`, '--resume', String(job?.id))
      }
      expectCode(run, [0], `sweep ${mode} with faults (and its resumes)`)
    })
    const problem = differences(
      'objects of the faulted bucket against the clean one',
      await listing(env, clean),
      await listing(env, faulted),
    )
    if (problem) throw new Error(problem)
    const broken = await unpullable(env, faulted, store.tags)
    if (broken.length > 0) throw new Error(`referenced blobs deleted: ${broken.join(', ')}`)
  })
  return {
    case: `sweep blobs ${mode}, ${FAULT_RATE * 100}% of S3 requests faulted, then every tag pulled through docker-registry`,
    command: `regops sweep blobs ${mode}`,
    ...outcome,
    criterion: `${CRITERION}: the bucket ends with the same objects as after the run without faults (a run ending partial, exit 3, resumed), and every tag pulls in full`,
    figures: figures.figures(trials, {'runs ending partial, then resumed': resumes}),
  }
}

/** The imported metadata, every row named by its natural key (ids and times differ between two imports). */
async function metadataSnapshot(url: string): Promise<string[]> {
  const queries: Record<string, string> = {
    repository: `SELECT r.path FROM repositories r`,
    blob: `SELECT b.digest::text, b.size, b.media_type_id FROM blobs b`,
    'repository blob': `SELECT r.path, rb.blob_digest::text FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id`,
    manifest: `SELECT r.path, m.digest::text, m.media_type_id, m.schema_version, md5(m.payload), m.configuration_blob_digest::text,
                      m.configuration_media_type_id, m.subject_digest::text
               FROM manifests m JOIN repositories r ON r.id = m.repository_id`,
    reference: `SELECT r.path, p.digest::text, c.digest::text FROM manifest_references mr
                JOIN repositories r ON r.id = mr.repository_id
                JOIN manifests p ON p.repository_id = mr.repository_id AND p.id = mr.parent_id
                JOIN manifests c ON c.repository_id = mr.repository_id AND c.id = mr.child_id`,
    layer: `SELECT r.path, m.digest::text, l.position, l.digest::text, l.size, l.media_type_id FROM layers l
            JOIN repositories r ON r.id = l.repository_id JOIN manifests m ON m.repository_id = l.repository_id AND m.id = l.manifest_id`,
    tag: `SELECT r.path, t.name, m.digest::text FROM tags t JOIN repositories r ON r.id = t.repository_id
          JOIN manifests m ON m.repository_id = t.repository_id AND m.id = t.manifest_id`,
    'dangling reference': `SELECT r.path, p.digest::text, d.child_digest::text FROM dangling_manifest_references d
          JOIN repositories r ON r.id = d.repository_id JOIN manifests p ON p.repository_id = d.repository_id AND p.id = d.parent_id`,
    'unreadable revision': `SELECT r.path, u.key, u.problem FROM unreadable_revisions u JOIN repositories r ON r.id = u.repository_id`,
  }
  const rows: string[] = []
  for (const [table, sql] of Object.entries(queries))
    for (const row of await query(url, sql)) rows.push(`${table}: ${Object.values(row).join(' ')}`)
  return rows.sort()
}

/** `import` of one store into two databases, straight and through the faults. */
async function importRow(env: Env, base: number, trials: number): Promise<ReliabilityRow> {
  const figures = new RowFigures()
  const outcome = await runTrials(base, trials, async (seed) => {
    const bucket = await env.rgw.newBucket(`fimport-${seed}`)
    await writeStore(env, bucket, seed)
    const [clean, faulted] = await Promise.all([env.database(), env.database()])
    const run = (endpoint: string, url: string, label: string) => async () =>
      runCli([
        'import',
        '--config',
        await writeConfig(env, `import-${seed}-${label}`, {eu: s3Region(env, bucket, endpoint)}),
        '--database-url',
        url,
        '--json',
      ])
    const expected = await figures.clean(run(env.rgw.endpoint, clean, 'c'))
    expectCode(expected, [0], 'the import without faults')
    const seen = await withFaults(env.rgw.endpoint, seed, s3Kind, figures, (endpoint) => run(endpoint, faulted, 'f')())
    expectCode(seen, [0], 'the import with faults')
    const want = await metadataSnapshot(clean)
    if (!want.some((row) => row.startsWith('tag: '))) throw new Error('the import without faults imported no tag')
    const problem = differences('rows imported with faults', want, await metadataSnapshot(faulted))
    if (problem) throw new Error(problem)
  })
  return {
    case: `import from S3, ${FAULT_RATE * 100}% of S3 requests faulted`,
    command: 'regops import',
    ...outcome,
    criterion:
      'same result as without faults: the database holds the same repositories, blobs, manifests, references, layers and tags as after the import without faults',
    figures: figures.figures(trials),
  }
}

async function findingsOf(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as {kind: string; region: string; key: string})
    .map((f) => `${f.kind} ${f.region} ${f.key}`)
    .sort()
}

/**
 * Drift planted in `us` (a copy of `eu`), chosen by the seed: a blob deleted, one cut short, one altered at
 * the same size, a tag moved. All of it repairable by a copy from `eu`.
 */
async function plantDrift(env: Env, bucket: string, seed: number, store: Store): Promise<void> {
  const random = prng(seed ^ 0xd21f7)
  const driver = driverFor(env, bucket, 'us')
  try {
    // Referenced blobs only: an orphan absent from one region is `extra`, which no copy repairs.
    const blobs = store.referenced.map((digest) => pathFor({kind: 'blob-data', digest}))
    const pick = () => blobs.splice(Math.floor(random() * blobs.length), 1)[0]!
    await driver.deleteMany([pick()])
    const short = pick()
    await driver.write(short, (await driver.readSmall(short, 1 << 20)).subarray(1))
    const altered = pick()
    const body = Buffer.from(await driver.readSmall(altered, 1 << 20))
    body[Math.floor(random() * body.length)] ^= 0xff
    await driver.write(altered, body)
    const {repo} = store.tags[Math.floor(random() * (store.tags.length - 1))]!
    const other = store.tags.find((t) => t.repo !== repo) ?? store.tags[store.tags.length - 1]!
    const target = (
      await driver.readSmall(pathFor({kind: 'tag-current-link', repository: other.repo, tag: other.tag}), 1024)
    ).toString()
    const tag = store.tags.find((t) => t.repo === repo)!.tag
    await driver.write(pathFor({kind: 'tag-current-link', repository: repo, tag}), Buffer.from(target))
  } finally {
    await driver.close()
  }
}

/** `audit regions --level checksum` over two buckets with planted drift, then `--repair --from eu`. */
async function auditRow(env: Env, base: number, trials: number): Promise<ReliabilityRow> {
  const figures = new RowFigures()
  const outcome = await runTrials(base, trials, async (seed) => {
    const [eu, us] = await Promise.all([env.rgw.newBucket(`faudit-eu-${seed}`), env.rgw.newBucket(`faudit-us-${seed}`)])
    const [store] = await Promise.all([writeStore(env, eu, seed), writeStore(env, us, seed)])
    await plantDrift(env, us, seed, store)
    const db = await env.database()
    const config = (endpoint: string, label: string) =>
      writeConfig(
        env,
        `audit-${seed}-${label}`,
        {eu: s3Region(env, eu, endpoint), us: s3Region(env, us, endpoint)},
        // No database: with one, an orphan (in no manifest, not in the empty database) is `extra` everywhere.
        'primary: eu\n',
      )
    const cleanConfig = await config(env.rgw.endpoint, 'c')
    const audit = (file: string, configFile: string, ...args: string[]) =>
      runCli([
        'audit',
        'regions',
        '--config',
        configFile,
        '--level',
        'checksum',
        '--in-flight',
        '0s',
        '--findings',
        join(env.dir, file),
        '--json',
        ...args,
      ])
    const expected = await figures.clean(() => audit(`audit-${seed}-c.jsonl`, cleanConfig))
    expectCode(expected, [1], 'the audit without faults')
    const want = await findingsOf(join(env.dir, `audit-${seed}-c.jsonl`))
    const kinds = new Set(want.map((f) => f.split(' ')[0]))
    for (const kind of ['missing', 'size_mismatch', 'corrupt', 'tag_mismatch'])
      if (!kinds.has(kind))
        throw new Error(`the audit without faults did not find the planted ${kind}: ${want.join(', ')}`)
    await withFaults(env.rgw.endpoint, seed, s3Kind, figures, async (endpoint) => {
      const faultedConfig = await config(endpoint, 'f')
      const seen = await audit(`audit-${seed}-f.jsonl`, faultedConfig)
      expectCode(seen, [1], 'the audit with faults')
      const problem = differences(
        'findings with faults',
        want,
        await findingsOf(join(env.dir, `audit-${seed}-f.jsonl`)),
      )
      if (problem) throw new Error(problem)
      // The repair journals its copies: it needs the database.
      const repair = await audit(
        `audit-${seed}-r.jsonl`,
        faultedConfig,
        '--repair',
        '--from',
        'eu',
        '--database-url',
        db,
      )
      expectCode(repair, [1], 'the repair with faults')
      if (repair.json.repair.failed !== 0) throw new Error(`the repair failed ${repair.json.repair.failed} copies`)
    })
    const after = await audit(`audit-${seed}-after.jsonl`, cleanConfig)
    if (after.code !== 0)
      throw new Error(
        `the audit after the repair exited ${after.code}: ${(await findingsOf(join(env.dir, `audit-${seed}-after.jsonl`))).slice(0, 3).join(', ')}`,
      )
  })
  return {
    case: `audit regions --level checksum over two buckets with planted drift, then --repair --from, ${FAULT_RATE * 100}% of S3 requests faulted`,
    command: 'regops audit regions --level checksum [--repair --from eu]',
    ...outcome,
    criterion:
      'same result as without faults: the same findings (a deleted, a shortened and an altered blob, a moved tag); after the repair an audit without faults is clean (exit 0)',
    figures: figures.figures(trials),
  }
}

/** `replicate --from eu --to us --apply` into an empty bucket through the faults, then an audit. */
async function replicateRow(env: Env, base: number, trials: number): Promise<ReliabilityRow> {
  const figures = new RowFigures()
  const outcome = await runTrials(base, trials, async (seed) => {
    const [eu, copy, us] = await Promise.all(
      ['eu', 'copy', 'us'].map((label) => env.rgw.newBucket(`frepl-${label}-${seed}`)),
    )
    await writeStore(env, eu!, seed)
    const db = await env.database()
    const config = (endpoint: string, label: string, to: string) =>
      writeConfig(
        env,
        `replicate-${seed}-${label}`,
        {eu: s3Region(env, eu!, endpoint), us: s3Region(env, to, endpoint)},
        // The audit runs without a database (see auditRow); replicate is given one to journal its copies.
        'primary: eu\n',
      )
    const replicate = (configFile: string) =>
      runCli([
        'replicate',
        '--from',
        'eu',
        '--to',
        'us',
        '--apply',
        '--config',
        configFile,
        '--database-url',
        db,
        '--json',
      ])
    const audit = async (to: string, label: string) =>
      runCli([
        'audit',
        'regions',
        '--config',
        await config(env.rgw.endpoint, label, to),
        '--level',
        'checksum',
        '--in-flight',
        '0s',
        '--findings',
        join(env.dir, `replicate-${seed}-${label}.jsonl`),
        '--json',
      ])
    const expected = await figures.clean(async () => replicate(await config(env.rgw.endpoint, 'c', copy!)))
    expectCode(expected, [0], 'replicate without faults')
    const cleanAudit = await audit(copy!, 'audit-c')
    if (cleanAudit.code !== 0)
      throw new Error(
        `the audit of the copy made without faults exited ${cleanAudit.code}: ${(await findingsOf(join(env.dir, `replicate-${seed}-audit-c.jsonl`))).slice(0, 3).join(', ')}`,
      )
    const seen = await withFaults(env.rgw.endpoint, seed, s3Kind, figures, async (endpoint) =>
      replicate(await config(endpoint, 'f', us!)),
    )
    expectCode(seen, [0], 'replicate with faults')
    const after = await audit(us!, 'audit-f')
    if (after.code !== 0)
      throw new Error(
        `the audit of the copy made with faults exited ${after.code}: ${(await findingsOf(join(env.dir, `replicate-${seed}-audit-f.jsonl`))).slice(0, 3).join(', ')}`,
      )
    const problem = differences(
      'objects of the copy made with faults',
      await listing(env, copy!),
      await listing(env, us!),
    )
    if (problem) throw new Error(problem)
  })
  return {
    case: `replicate --from eu --to us (empty), ${FAULT_RATE * 100}% of S3 requests faulted`,
    command: 'regops replicate --from eu --to us --apply',
    ...outcome,
    criterion:
      'same result as without faults: us ends equal to eu (an audit at checksum level exits 0) and holds the same objects as the copy made without faults',
    figures: figures.figures(trials),
  }
}

/** The loadtest's error kinds a fault of each kind may show as. */
const PULL_ERRORS: Record<Fault, string[]> = {
  '503 SlowDown': ['server_error'],
  '500': ['server_error'],
  reset: ['connection', 'network'],
  stall: ['timeout'],
  // The client sees the connection close mid-body; the load test sometimes names that `connection`.
  'truncated body': ['truncated_body', 'length_mismatch', 'connection'],
  'wrong Content-Length': ['length_mismatch', 'truncated_body', 'connection'],
}

/**
 * `loadtest pull` through the faults in front of docker-registry. One user pulls at a time and pings
 * before every pull, so the requests between two pings are one pull's: a pull with a fault must fail with
 * an error of that fault's kind, and a pull without one must succeed. A stall outlasts --timeout.
 */
async function loadtestRow(env: Env, base: number, trials: number, pulls: number): Promise<ReliabilityRow> {
  const figures = new RowFigures()
  let failedPulls = 0
  let startedPulls = 0
  const storage = join(env.dir, 'loadtest-storage')
  const registry = await startRegistry({storage: {kind: 'filesystem', root: storage}})
  env.cleanups.push(() => registry.stop())
  const images = ['app/web:v1', 'app/tool:v2']
  await pushImage(registry.url, 'app/web', 'v1', {layers: 3, seed: 'faults-web'})
  await pushImage(registry.url, 'app/tool', 'v2', {layers: 2, seed: 'faults-tool'})
  const durationS = 60
  const loadtest = (url: string) =>
    runCli([
      'loadtest',
      'pull',
      '--registry',
      url,
      ...images.flatMap((image) => ['--image', image]),
      '--vus',
      '1',
      '--max-pulls',
      String(pulls),
      '--duration',
      `${durationS}s`,
      '--grace',
      '2s',
      '--timeout',
      `${PULL_TIMEOUT_MS}ms`,
      '--verify',
      '--json',
    ])
  const outcome = await runTrials(base, trials, async (seed) => {
    const expected = await figures.clean(() => loadtest(registry.url))
    expectCode(expected, [0], 'the load test without faults')
    if (expected.json.pulls.succeeded !== pulls)
      throw new Error(`without faults ${expected.json.pulls.succeeded} of ${pulls} pulls succeeded`)
    const started = Date.now()
    const seen = await withFaults(
      registry.url,
      seed,
      (r) => registryKind(r),
      figures,
      (endpoint) => loadtest(endpoint),
      PULL_STALL_MS,
    )
    const wallS = (Date.now() - started) / 1000
    // The tally of this trial is the last one the figures took in: the pulls are rebuilt from its log.
    const log = figures.lastTally!.log
    const perPull: Fault[][] = []
    for (const entry of log) {
      if (entry.kind === 'ping') perPull.push([])
      if (entry.fault) perPull[perPull.length - 1]?.push(entry.fault)
    }
    const report = seen.json
    if (!report?.pulls) throw new Error(`no report (exit ${seen.code}): ${seen.stderr.slice(-300)}`)
    startedPulls += report.pulls.started
    failedPulls += report.pulls.failed
    if (wallS > durationS + 2 + 10)
      throw new Error(`the run took ${Math.round(wallS)} s, past its ${durationS} s and grace`)
    if (report.pulls.started !== pulls || perPull.length !== pulls)
      throw new Error(
        `${report.pulls.started} pulls started, ${perPull.length} seen by the proxy, for --max-pulls ${pulls}`,
      )
    const faultedPulls = perPull.filter((faults) => faults.length > 0)
    if (report.pulls.failed !== faultedPulls.length || report.pulls.succeeded !== pulls - faultedPulls.length)
      throw new Error(
        `${faultedPulls.length} pulls met a fault (${faultedPulls.map((f) => f.join('+')).join(', ')}), but ${report.pulls.failed} failed and ${report.pulls.succeeded} succeeded (errors ${JSON.stringify(report.errors)})`,
      )
    // Each error kind is at most the pulls that met a fault which can show as it.
    for (const [kind, n] of Object.entries(report.errors as Record<string, number>)) {
      const possible = faultedPulls.filter((faults) => faults.some((f) => PULL_ERRORS[f].includes(kind))).length
      if (n > possible)
        throw new Error(`${n} pulls failed with ${kind}, but only ${possible} met a fault that shows as it`)
    }
  })
  return {
    case: `loadtest pull --max-pulls ${pulls} through ${FAULT_RATE * 100}% of registry requests faulted`,
    command: `regops loadtest pull --vus 1 --max-pulls ${pulls} --timeout ${PULL_TIMEOUT_MS}ms`,
    ...outcome,
    criterion:
      "each pull that met a fault failed with an error of that fault's kind, every pull without a fault succeeded, and the run ended on time",
    figures: figures.figures(trials, {
      'pulls started with faults': startedPulls,
      'pulls failed with faults': failedPulls,
    }),
  }
}

// ---------------------------------------------------------------------------------------------------------

export const runFaults: Suite = async ({seed, scale, log}) => {
  const started = Date.now()
  const trials = scale === 'full' ? 10 : 1
  const dir = await mkdtemp(join(tmpdir(), 'regops-faults-'))
  const cleanups: Array<() => Promise<void>> = []
  const rgw = await sharedRadosgw()
  const pg = await sharedPostgres()
  const env: Env = {
    rgw,
    dir,
    cleanups,
    async database() {
      const url = await pg.createDatabase()
      const db = openDatabase(url, {max: 1})
      try {
        await migrateUp(db)
      } finally {
        await db.close()
      }
      return url
    },
  }
  const rows: Array<() => Promise<ReliabilityRow>> = [
    () => sweepDryRunRow(env, seed, trials),
    () => sweepActRow(env, seed + 1000, trials, '--delete'),
    () => sweepActRow(env, seed + 2000, trials, '--quarantine'),
    () => importRow(env, seed + 3000, trials),
    () => auditRow(env, seed + 4000, trials),
    () => replicateRow(env, seed + 5000, trials),
    () => loadtestRow(env, seed + 6000, trials, scale === 'full' ? 200 : 60),
  ]
  const made: ReliabilityRow[] = []
  const row = async (make: () => Promise<ReliabilityRow>): Promise<ReliabilityRow> => {
    const at = Date.now()
    const result = await make()
    log(`${result.command}: ${result.survived}/${result.trials} in ${Math.round((Date.now() - at) / 1000)} s`)
    return result
  }
  try {
    // The subset's rows run side by side (each has its own buckets, databases and proxy): most of a trial
    // is waiting on radosgw, and npm test affords about 25 s for all of them. The full scale runs them one
    // by one, so that the wall times it reports are each command's own.
    if (scale === 'subset') made.push(...(await Promise.all(rows.map(row))))
    else for (const make of rows) made.push(await row(make))
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined)
    await rm(dir, {recursive: true, force: true})
  }
  return {
    suite: 'faults',
    title: 'Injected faults',
    description:
      `Each command runs against storage through a seeded fault-injecting proxy that answers ${FAULT_RATE * 100}% of requests (drawn per request, on every kind: LIST, GET, HEAD, PUT, COPY, DELETE, DeleteObjects; for the load test, the registry's ping, manifest and blob requests) ` +
      `with one fault chosen evenly among 503 SlowDown, 500, a reset connection, a ${STALL_MS} ms stall, a body cut after one byte and a Content-Length 100 bytes too large (the last two not on HEAD). ` +
      'The same command runs straight against an identical store (written from the same seed), and the two outcomes are compared. ' +
      'Acting sweeps are then checked by pulling every tag in full (each blob re-hashed) through a docker-registry on the bucket, not through the proxy. ' +
      '"Faulted requests sent again" counts faults after which the same request reached the proxy again (the retries). Each trial has its own seed: a different store and different fault placements.',
    seed,
    scale,
    seconds: (Date.now() - started) / 1000,
    rows: made,
  }
}
