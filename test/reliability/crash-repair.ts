// The crash matrix of the commands that copy or write links: `audit regions --repair`, `replicate` and
// `repair links --apply`, each killed with SIGKILL at a seeded point of its run, then resumed (or run
// again), and checked against what an uninterrupted run leaves: every object repaired and verified, every
// image pulling in full, each change journaled exactly once with its outcome, and the undo still working.
//
// The kill point is a storage request: every request of the command under test goes through a loopback
// proxy that counts them, and the trial's seed picks the request (and whether the process dies before the
// request reaches storage or after storage has carried it out, before the process reads the answer). A
// quarter of the trials kill at the first write, one of them the narrowest window there is: the write has
// landed and the command has not journaled its outcome yet.
import http from 'node:http'
import type {AddressInfo} from 'node:net'
import type {ChildProcess} from 'node:child_process'
import {createHash} from 'node:crypto'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3'
import pg from 'pg'
import {sharedPostgres} from '../helpers/postgres.js'
import {sharedRadosgw, type SharedRadosgw} from '../helpers/radosgw.js'
import {s3RegionYaml, startRegistry, type RegistryServer} from '../helpers/registry.js'
import {pullImage, pushImage, randomBlob, type PushedImage} from '../helpers/images.js'
import {runCli, startCli, type CliRun} from '../helpers/cli.js'
import {prng} from '../helpers/scenario.js'
import {runTrials, type ReliabilityRow, type Suite, type SuiteOptions} from './suite.js'

const ROOT = 'docker/registry/v2'
const FULL_TRIALS = 20
/** the uninterrupted run that measures a row's storage requests: the same whatever the base seed */
const CALIBRATION_SEED = 0

/** Where in its run a trial kills the command. */
type KillPlan =
  /**
   * the first write: 'after', its answer arrives (the object landed, its journal outcome is not written
   * yet); 'before', it never reaches storage (the intent is journaled, the object is not there)
   */
  | {at: 'first-write'; when: 'before' | 'after'}
  /** the nth storage request: before it reaches storage, or after storage carried it out */
  | {at: 'request'; n: number; when: 'before' | 'after'}
  | {at: 'never'}

interface KilledRun {
  /** the process died of the kill (false: it finished before its kill point) */
  killed: boolean
  run: CliRun
  /** storage requests the command made (up to the kill) */
  requests: number
}

/**
 * A loopback proxy in front of radosgw that counts the requests of one command and SIGKILLs it at the
 * planned one. Killed "after", the request is carried out by radosgw and the process dies before it can
 * read the answer (the answer is never sent); killed "before", the request never reaches radosgw.
 */
class KillProxy {
  private server!: http.Server
  private readonly agent = new http.Agent({keepAlive: true, maxSockets: 64})
  endpoint = ''
  /** decides each request of the run under way; kills the process for the decisions that say so */
  private decide?: (req: http.IncomingMessage) => 'pass' | 'hold' | 'kill-before' | 'kill-after'
  private kill?: () => void

  constructor(private readonly target: URL) {}

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const decision = this.decide?.(req) ?? 'pass'
      // a request made while the kill is on its way is never answered: the process is about to die
      if (decision === 'hold') return
      if (decision === 'kill-before') {
        this.kill?.()
        req.socket.destroy()
        return
      }
      const upstream = http.request(
        {
          host: this.target.hostname,
          port: this.target.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
          agent: this.agent,
        },
        (up) => {
          if (decision === 'kill-after') {
            // radosgw has carried the request out; the process dies before it hears of it
            this.kill?.()
            up.resume()
            req.socket.destroy()
            return
          }
          res.writeHead(up.statusCode ?? 502, up.headers)
          up.pipe(res)
        },
      )
      upstream.on('error', () => res.destroy())
      req.pipe(upstream)
    })
    this.server.keepAliveTimeout = 1000
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  /** Runs the CLI with these arguments, killing it as planned; waits for it to end either way. */
  async run(args: string[], plan: KillPlan): Promise<KilledRun> {
    let child: ChildProcess | undefined
    let requests = 0
    let killing = false
    let killed = false
    this.kill = () => {
      if (killed) return
      killed = true
      // SIGKILL is pending before the proxy answers or drops anything: the process cannot react to either.
      child?.kill('SIGKILL')
    }
    this.decide = (req) => {
      if (killing) return 'hold'
      requests++
      if (plan.at === 'request' && requests === plan.n) {
        killing = true
        return plan.when === 'before' ? 'kill-before' : 'kill-after'
      }
      if (plan.at === 'first-write' && req.method === 'PUT') {
        killing = true
        return plan.when === 'before' ? 'kill-before' : 'kill-after'
      }
      return 'pass'
    }
    const started = startCli(args)
    child = started.child
    try {
      const run = await started.done
      return {killed: killed && run.signal === 'SIGKILL', run, requests}
    } finally {
      this.decide = undefined
      this.kill = undefined
    }
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
    this.agent.destroy()
  }
}

interface ObjectState {
  size: number
  etag: string
}

/** A bucket of the shared radosgw, as the trials read and drift it (keys relative to the registry root). */
class Bucket {
  constructor(
    readonly client: S3Client,
    readonly name: string,
  ) {}

  async list(): Promise<Map<string, ObjectState>> {
    const out = new Map<string, ObjectState>()
    let token: string | undefined
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({Bucket: this.name, Prefix: `${ROOT}/`, ContinuationToken: token}),
      )
      for (const o of page.Contents ?? [])
        out.set(o.Key!.slice(ROOT.length + 1), {size: o.Size ?? 0, etag: o.ETag ?? ''})
      token = page.NextContinuationToken
    } while (token)
    return out
  }

  async get(key: string): Promise<Buffer | undefined> {
    try {
      const res = await this.client.send(new GetObjectCommand({Bucket: this.name, Key: `${ROOT}/${key}`}))
      return Buffer.from(await res.Body!.transformToByteArray())
    } catch (error) {
      if ((error as {name?: string}).name === 'NoSuchKey') return undefined
      throw error
    }
  }

  async put(key: string, body: Buffer | string): Promise<void> {
    await this.client.send(new PutObjectCommand({Bucket: this.name, Key: `${ROOT}/${key}`, Body: body}))
  }

  async remove(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({Bucket: this.name, Key: `${ROOT}/${key}`}))
  }

  /** Copies every object of this bucket into another (server side), as an identical second region. */
  async copyInto(other: Bucket): Promise<void> {
    const keys = [...(await this.list()).keys()]
    for (let i = 0; i < keys.length; i += 16) {
      await Promise.all(
        keys.slice(i, i + 16).map((key) =>
          this.client.send(
            new CopyObjectCommand({
              Bucket: other.name,
              Key: `${ROOT}/${key}`,
              CopySource: `${this.name}/${ROOT}/${key}`,
            }),
          ),
        ),
      )
    }
  }
}

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex')
const blobKey = (digest: string): string => `blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}/data`
const layerLink = (repo: string, digest: string): string =>
  `repositories/${repo}/_layers/sha256/${digest.slice(7)}/link`

/** The servers and state the three rows share: one database, one radosgw, the healthy source region. */
interface Bench {
  dir: string
  rgw: SharedRadosgw
  db: pg.Client
  dbUrl: string
  proxy: KillProxy
  /** the healthy region the audit repairs from and replicate copies: written once, never changed */
  eu: Bucket
  tags: Array<{repo: string; tag: string; image: PushedImage}>
  log: (line: string) => void
}

function regionYaml(bench: Bench, bucket: string, endpoint = bench.rgw.endpoint): string {
  return s3RegionYaml({
    bucket,
    endpoint,
    accessKeyId: bench.rgw.accessKeyId,
    secretAccessKey: bench.rgw.secretAccessKey,
  })
}

/** A registry on a bucket of the shared radosgw (straight, not through the proxy). */
function registryOn(bench: Bench, bucket: string): Promise<RegistryServer> {
  return startRegistry({
    storage: {
      kind: 's3',
      endpoint: bench.rgw.endpoint,
      bucket,
      accessKeyId: bench.rgw.accessKeyId,
      secretAccessKey: bench.rgw.secretAccessKey,
      region: 'us-east-1',
    },
  })
}

async function writeConfig(bench: Bench, name: string, regions: Record<string, string>): Promise<string> {
  const file = join(bench.dir, `${name}.yaml`)
  const lines = Object.entries(regions).map(([region, yaml]) => `  ${region}: ${yaml}`)
  await writeFile(
    file,
    `regions:\n${lines.join('\n')}\nprimary: ${Object.keys(regions)[0]}\ndatabase:\n  url: ${bench.dbUrl}\n`,
  )
  return file
}

async function lastJournalId(bench: Bench): Promise<number> {
  const res = await bench.db.query('SELECT coalesce(max(id), 0)::bigint AS id FROM regops_journal')
  return Number(res.rows[0].id)
}

/**
 * The journal since `after` for one action: every intent must have exactly one outcome, 'done'; each
 * expected key exactly one intent (no copy journaled twice, none missing); no key beyond those expected.
 */
async function checkJournal(
  bench: Bench,
  after: number,
  action: string,
  expected: Set<string>,
): Promise<{problems: string[]; entries: Map<string, string>}> {
  const res = await bench.db.query(
    `SELECT i.id, i.key, array_remove(array_agg(o.phase), NULL) AS outcomes FROM regops_journal i
       LEFT JOIN regops_journal o ON o.intent_id = i.id
      WHERE i.id > $1 AND i.action = $2 AND i.phase = 'intent'
      GROUP BY i.id, i.key ORDER BY i.id`,
    [after, action],
  )
  const problems: string[] = []
  const entries = new Map<string, string>()
  for (const row of res.rows as Array<{id: string; key: string; outcomes: string[]}>) {
    if (row.outcomes.length !== 1 || row.outcomes[0] !== 'done')
      problems.push(`entry ${row.id} (${row.key}) has outcomes [${row.outcomes.join(', ')}], not one 'done'`)
    if (entries.has(row.key)) problems.push(`${row.key} journaled twice (entries ${entries.get(row.key)}, ${row.id})`)
    else entries.set(row.key, String(row.id))
    if (!expected.has(row.key)) problems.push(`${row.key} journaled, but it needed no ${action}`)
  }
  for (const key of expected) if (!entries.has(key)) problems.push(`${key}: no journal entry`)
  return {problems, entries}
}

/** Where a kill landed, from the journal it left: the figures of a row. */
async function landing(bench: Bench, after: number, action: string, expected: number): Promise<string> {
  const res = await bench.db.query(
    `SELECT count(*) FILTER (WHERE i.phase = 'intent')::int AS intents,
            count(*) FILTER (WHERE i.phase = 'intent' AND NOT EXISTS (SELECT 1 FROM regops_journal o WHERE o.intent_id = i.id))::int AS open
       FROM regops_journal i WHERE i.id > $1 AND i.action = $2`,
    [after, action],
  )
  const {intents, open} = res.rows[0] as {intents: number; open: number}
  if (open > 0) return 'kills between a write and its journal outcome'
  if (intents === 0) return 'kills before any write'
  if (intents < expected) return 'kills between writes'
  return 'kills after the last write'
}

/**
 * After a kill: resumes the job the killed run left (its heartbeat aged, as the minute a real operator waits
 * would), or runs the command again when it died before creating one. A job already done needs neither.
 */
async function resumeAfterKill(
  bench: Bench,
  step: {kind: string; jobsAfter: number; resume: (job: string) => string[]; rerun: string[]; codes: number[]},
  figures: Record<string, number>,
): Promise<void> {
  const res = await bench.db.query(
    'SELECT id, status FROM regops_jobs WHERE kind = $1 AND id > $2 ORDER BY id DESC LIMIT 1',
    [step.kind, step.jobsAfter],
  )
  const job = res.rows[0] as {id: string; status: string} | undefined
  if (!job) {
    count(figures, 're-run (killed before its job existed)')
    expectCode(await runCli(step.rerun), step.codes, `the re-run ${step.kind}`)
    return
  }
  if (job.status === 'done') {
    count(figures, 'killed after its job was done (nothing to resume)')
    return
  }
  await bench.db.query(`UPDATE regops_jobs SET heartbeat_at = now() - interval '5 minutes' WHERE id = $1`, [job.id])
  count(figures, 'resumed')
  expectCode(await runCli(step.resume(String(job.id))), step.codes, `the resumed ${step.kind} job ${job.id}`)
}

async function lastJobId(bench: Bench): Promise<number> {
  return Number((await bench.db.query('SELECT coalesce(max(id), 0)::bigint AS id FROM regops_jobs')).rows[0].id)
}

/**
 * The kill point of a trial, from its seed alone (so `--seed` replays it): a quarter of the trials die at the
 * first write (just before it reaches storage, or just after it landed), the others at a storage request drawn
 * from the range an uninterrupted run makes.
 */
export function killPlan(seed: number, requests: number): KillPlan {
  const random = prng(seed * 7919 + 17)
  if (random() < 0.25) return {at: 'first-write', when: random() < 0.5 ? 'before' : 'after'}
  return {
    at: 'request',
    n: 1 + Math.floor(random() * Math.max(1, requests - 1)),
    when: random() < 0.5 ? 'before' : 'after',
  }
}

function expectCode(run: CliRun, codes: number[], what: string): void {
  if (run.code !== null && codes.includes(run.code)) return
  const said = run.json?.error?.message ?? (run.stdout + run.stderr).slice(-400)
  throw new Error(
    `${what} exited ${run.code ?? run.signal}, not ${codes.join(' or ')}: ${String(said).replace(/\n/g, ' ')}`,
  )
}

function count(figures: Record<string, number>, name: string): void {
  figures[name] = (figures[name] ?? 0) + 1
}

interface RowPlan {
  trials: number
  /** storage requests of an uninterrupted run: the range the kill points are drawn from */
  requests: number
}

async function rowPlan(options: SuiteOptions, calibrate: () => Promise<number>): Promise<RowPlan> {
  // The subset runs the first-write trial only, which needs no request count.
  if (options.scale === 'subset') return {trials: 1, requests: 0}
  return {trials: FULL_TRIALS, requests: await calibrate()}
}

// ---------------------------------------------------------------- row 1: audit regions --repair

interface Drift {
  /** keys the repair must write, with the bytes each must end up holding (from eu) */
  repairs: Map<string, Buffer>
  lines: string[]
}

/** Drifts a copy of eu, seeded: blobs deleted, truncated, altered at the same size; _layers links deleted; a tag moved. */
async function driftCopy(bench: Bench, us: Bucket, seed: number): Promise<Drift> {
  const random = prng(seed)
  const keys = [...(await bench.eu.list()).keys()]
  const blobs = keys.filter((k) => k.startsWith('blobs/')).sort(() => random() - 0.5)
  const links = keys.filter((k) => k.includes('/_layers/')).sort(() => random() - 0.5)
  const repairs = new Map<string, Buffer>()
  const lines: string[] = []
  const take = (from: string[], n: number): string[] => from.splice(0, n)
  for (const key of take(blobs, 1 + Math.floor(random() * 3))) {
    await us.remove(key)
    lines.push(`deleted ${key}`)
    repairs.set(key, (await bench.eu.get(key))!)
  }
  for (const key of take(blobs, 1 + Math.floor(random() * 2))) {
    const body = (await bench.eu.get(key))!
    await us.put(key, body.subarray(0, Math.floor(body.length / 2)))
    lines.push(`truncated ${key}`)
    repairs.set(key, body)
  }
  for (const key of take(blobs, 1 + Math.floor(random() * 2))) {
    const body = Buffer.from((await bench.eu.get(key))!)
    body[Math.floor(random() * body.length)] ^= 0xff
    await us.put(key, body)
    lines.push(`altered ${key}`)
    repairs.set(key, (await bench.eu.get(key))!)
  }
  for (const key of take(links, Math.floor(random() * 3))) {
    await us.remove(key)
    lines.push(`deleted ${key}`)
    repairs.set(key, (await bench.eu.get(key))!)
  }
  // A tag moved to the other image of its repository (its history link stays): the repair points it back.
  const [moved, other] = random() < 0.5 ? [bench.tags[0], bench.tags[1]] : [bench.tags[1], bench.tags[0]]
  const tagKey = `repositories/${moved.repo}/_manifests/tags/${moved.tag}/current/link`
  await us.put(tagKey, other.image.manifestDigest)
  lines.push(`moved ${moved.repo}:${moved.tag} to ${other.image.manifestDigest}`)
  repairs.set(tagKey, (await bench.eu.get(tagKey))!)
  return {repairs, lines}
}

async function auditRepairRow(bench: Bench, options: SuiteOptions): Promise<ReliabilityRow> {
  const figures: Record<string, number> = {}
  const euBefore = await bench.eu.list()
  const trial = async (seed: number, plan: KillPlan): Promise<KilledRun> => {
    const us = new Bucket(bench.rgw.s3Client(), await bench.rgw.newBucket('crash-us'))
    await bench.eu.copyInto(us)
    const drift = await driftCopy(bench, us, seed)
    const config = await writeConfig(bench, `audit-${seed}`, {
      eu: regionYaml(bench, bench.eu.name),
      us: regionYaml(bench, us.name, bench.proxy.endpoint),
    })
    const audit = (extra: string[]) => [
      'audit',
      'regions',
      '--regions',
      'eu,us',
      '--in-flight',
      '0s',
      '--level',
      'checksum',
      '--findings',
      join(bench.dir, `audit-${seed}.jsonl`),
      '--config',
      config,
      '--json',
      ...extra,
    ]
    const journalFrom = await lastJournalId(bench)
    const jobsFrom = await lastJobId(bench)
    const first = await bench.proxy.run(audit(['--repair', '--from', 'eu']), plan)
    if (first.killed) {
      count(figures, await landing(bench, journalFrom, 'repair', drift.repairs.size))
      await resumeAfterKill(
        bench,
        {
          kind: 'audit-regions',
          jobsAfter: jobsFrom,
          resume: (job) => audit(['--resume', job]),
          rerun: audit(['--repair', '--from', 'eu']),
          codes: [0, 1],
        },
        figures,
      )
    } else {
      if (plan.at !== 'never') count(figures, 'runs that ended before their kill point')
      expectCode(first.run, [1], 'audit --repair')
    }
    const failures: string[] = []
    const after = await runCli(audit([]))
    if (after.code !== 0) failures.push(`the audit after the repair exits ${after.code}: ${after.stdout.slice(0, 300)}`)
    for (const [key, body] of drift.repairs) {
      const now = await us.get(key)
      if (!now) failures.push(`${key} is still missing in us`)
      else if (key.startsWith('blobs/') ? sha256(now) !== key.split('/')[3] : !now.equals(body))
        failures.push(`${key} in us does not verify after the repair`)
    }
    const {problems} = await checkJournal(bench, journalFrom, 'repair', new Set(drift.repairs.keys()))
    failures.push(...problems)
    const euAfter = await bench.eu.list()
    for (const [key, state] of euBefore) {
      const now = euAfter.get(key)
      if (!now || now.etag !== state.etag) failures.push(`healthy region eu changed: ${key}`)
    }
    if (euAfter.size !== euBefore.size)
      failures.push(`healthy region eu holds ${euAfter.size} objects, not ${euBefore.size}`)
    if (failures.length > 0) throw new Error(`${failures.join('; ')} (drift: ${drift.lines.join(', ')})`)
    return first
  }
  const plan = await rowPlan(options, async () => (await trial(CALIBRATION_SEED, {at: 'never'})).requests)
  const outcome = await runTrials(options.seed, plan.trials, async (seed, index) => {
    await trial(seed, killPlan(seed, plan.requests))
    options.log(`audit --repair trial ${index + 1}/${plan.trials} (seed ${seed}) ok`)
  })
  return {
    case: 'audit regions --repair --from eu over two radosgw buckets (blobs deleted, truncated, altered at the same size, _layers links deleted, a tag moved), SIGKILL at a seeded storage request, then --resume',
    command: 'regops audit regions --level checksum --repair --from eu',
    ...outcome,
    criterion:
      'a following checksum audit exits 0; every repaired object re-hashes to its digest (links and tags read back as in eu); each copy is journaled exactly once with a done outcome, none missing; no object in eu changed',
    figures: {...figures, 'requests in an uninterrupted run': plan.requests || 'not measured at subset scale'},
  }
}

// ---------------------------------------------------------------- row 2: replicate to an empty region

async function replicateRow(bench: Bench, options: SuiteOptions): Promise<ReliabilityRow> {
  const figures: Record<string, number> = {}
  const euKeys = new Set([...(await bench.eu.list()).keys()].filter((k) => !k.includes('/_uploads/')))
  const trial = async (seed: number, plan: KillPlan): Promise<KilledRun> => {
    const fresh = new Bucket(bench.rgw.s3Client(), await bench.rgw.newBucket('crash-fresh'))
    const config = await writeConfig(bench, `replicate-${seed}`, {
      eu: regionYaml(bench, bench.eu.name),
      fresh: regionYaml(bench, fresh.name, bench.proxy.endpoint),
    })
    const replicate = (extra: string[]) => [
      'replicate',
      '--from',
      'eu',
      '--to',
      'fresh',
      '--config',
      config,
      '--json',
      ...extra,
    ]
    const journalFrom = await lastJournalId(bench)
    const jobsFrom = await lastJobId(bench)
    const first = await bench.proxy.run(replicate(['--apply']), plan)
    if (first.killed) {
      count(figures, await landing(bench, journalFrom, 'replicate', euKeys.size))
      await resumeAfterKill(
        bench,
        {
          kind: 'replicate',
          jobsAfter: jobsFrom,
          resume: (job) => replicate(['--resume', job]),
          rerun: replicate(['--apply']),
          codes: [0],
        },
        figures,
      )
    } else {
      if (plan.at !== 'never') count(figures, 'runs that ended before their kill point')
      expectCode(first.run, [0], 'replicate')
    }
    const failures: string[] = []
    const audit = await runCli([
      'audit',
      'regions',
      '--regions',
      'eu,fresh',
      '--in-flight',
      '0s',
      '--level',
      'checksum',
      '--findings',
      join(bench.dir, `replicate-${seed}.jsonl`),
      '--config',
      config,
      '--json',
    ])
    if (audit.code !== 0)
      failures.push(`the audit of eu and the new region exits ${audit.code}: ${audit.stdout.slice(0, 300)}`)
    const registry = await registryOn(bench, fresh.name)
    try {
      for (const {repo, tag} of bench.tags) {
        const pulled = await pullImage(registry.url, repo, tag)
        if (!pulled.ok) failures.push(`${repo}:${tag} does not pull from the new region: ${pulled.errors.join('; ')}`)
      }
    } finally {
      await registry.stop()
    }
    failures.push(...(await checkJournal(bench, journalFrom, 'replicate', euKeys)).problems)
    if (failures.length > 0) throw new Error(failures.join('; '))
    return first
  }
  const plan = await rowPlan(options, async () => (await trial(CALIBRATION_SEED, {at: 'never'})).requests)
  const outcome = await runTrials(options.seed, plan.trials, async (seed, index) => {
    await trial(seed, killPlan(seed, plan.requests))
    options.log(`replicate trial ${index + 1}/${plan.trials} (seed ${seed}) ok`)
  })
  return {
    case: 'replicate --from eu to an empty radosgw bucket, SIGKILL at a seeded storage request, then --resume',
    command: 'regops replicate --from eu --to fresh --apply',
    ...outcome,
    criterion:
      'a checksum audit of eu and the new region exits 0; a docker-registry on the new region pulls every tag in full; every object copied is journaled exactly once with a done outcome, none missing',
    figures: {
      ...figures,
      'objects per run': euKeys.size,
      'requests in an uninterrupted run': plan.requests || 'not measured at subset scale',
    },
  }
}

// ---------------------------------------------------------------- row 3: repair links --apply

async function repairLinksRow(bench: Bench, options: SuiteOptions): Promise<ReliabilityRow> {
  const figures: Record<string, number> = {}
  const repo = 'team/links'
  const trial = async (seed: number, plan: KillPlan): Promise<KilledRun> => {
    const random = prng(seed)
    const bucket = new Bucket(bench.rgw.s3Client(), await bench.rgw.newBucket('crash-links'))
    const registry = await registryOn(bench, bucket.name)
    try {
      const shared = randomBlob(1500, 'links/shared')
      const images = [
        await pushImage(registry.url, repo, 'v1', {
          layers: [shared, randomBlob(1200, `links/${seed}/a`), randomBlob(900, `links/${seed}/b`)],
          seed: `links/${seed}/v1`,
        }),
        await pushImage(registry.url, repo, 'v2', {
          layers: [shared, randomBlob(1100, `links/${seed}/c`)],
          seed: `links/${seed}/v2`,
        }),
      ]
      const blobs = [...new Set(images.flatMap((i) => [i.configDigest, ...i.layerDigests]))]
      const broken = blobs.sort(() => random() - 0.5).slice(0, 2 + Math.floor(random() * (blobs.length - 2)))
      const brokenLinks = new Set(broken.map((d) => layerLink(repo, d)))
      for (const key of brokenLinks) await bucket.remove(key)
      const config = await writeConfig(bench, `links-${seed}`, {
        main: regionYaml(bench, bucket.name, bench.proxy.endpoint),
      })
      const cli = (...args: string[]) => [...args, '--config', config, '--json']
      const journalFrom = await lastJournalId(bench)
      const first = await bench.proxy.run(cli('repair', 'links', repo, '--apply'), plan)
      if (first.killed) {
        count(figures, await landing(bench, journalFrom, 'link', brokenLinks.size))
        expectCode(await runCli(cli('repair', 'links', repo, '--apply')), [0], 'the re-run repair links --apply')
      } else {
        if (plan.at !== 'never') count(figures, 'runs that ended before their kill point')
        expectCode(first.run, [0], 'repair links --apply')
      }
      const failures: string[] = []
      for (const digest of broken) {
        const link = await bucket.get(layerLink(repo, digest))
        if (link?.toString() !== digest) failures.push(`${layerLink(repo, digest)} not restored`)
      }
      for (const tag of ['v1', 'v2']) {
        const pulled = await pullImage(registry.url, repo, tag)
        if (!pulled.ok) failures.push(`${repo}:${tag} does not pull: ${pulled.errors.join('; ')}`)
      }
      const {problems, entries} = await checkJournal(bench, journalFrom, 'link', brokenLinks)
      failures.push(...problems)
      if (failures.length > 0) throw new Error(failures.join('; '))
      // The run's changes can be taken back, one entry each: the link goes, the pull fails as before.
      for (const [key, entry] of entries) {
        expectCode(await runCli(cli('journal', 'undo', entry, '--apply')), [0], `journal undo ${entry}`)
        if (await bucket.get(key)) failures.push(`journal undo ${entry} left ${key}`)
      }
      const undone = await fetch(`${registry.url}/v2/${repo}/blobs/${broken[0]}`)
      if (!/BLOB_UNKNOWN/.test(await undone.text()))
        failures.push(`after the undo ${broken[0]} is served (${undone.status})`)
      if (failures.length > 0) throw new Error(failures.join('; '))
      return first
    } finally {
      await registry.stop()
    }
  }
  const plan = await rowPlan(options, async () => (await trial(CALIBRATION_SEED, {at: 'never'})).requests)
  const outcome = await runTrials(options.seed, plan.trials, async (seed, index) => {
    await trial(seed, killPlan(seed, plan.requests))
    options.log(`repair links trial ${index + 1}/${plan.trials} (seed ${seed}) ok`)
  })
  return {
    case: 'repair links --apply on a repository with 2 to 4 deleted _layers links (pulls fail with blob unknown), SIGKILL at a seeded storage request, then run again',
    command: 'regops repair links team/links --apply',
    ...outcome,
    criterion:
      'every deleted link is restored and every tag pulls in full; each link is journaled exactly once with a done outcome, none missing; journal undo of each entry removes its link again',
    figures: {...figures, 'requests in an uninterrupted run': plan.requests || 'not measured at subset scale'},
  }
}

// ---------------------------------------------------------------- the suite

export const runCrashRepair: Suite = async (options) => {
  const started = Date.now()
  const dir = await mkdtemp(join(tmpdir(), 'regops-crash-repair-'))
  const rgw = await sharedRadosgw()
  const dbUrl = await (await sharedPostgres()).createDatabase()
  const db = new pg.Client({connectionString: dbUrl})
  await db.connect()
  const proxy = new KillProxy(new URL(rgw.endpoint))
  await proxy.start()
  try {
    const eu = new Bucket(rgw.s3Client(), await rgw.newBucket('crash-eu'))
    const bench: Bench = {dir, rgw, db, dbUrl, proxy, eu, tags: [], log: options.log}
    const migrated = await runCli([
      'db',
      'migrate',
      'up',
      '--config',
      await writeConfig(bench, 'migrate', {eu: regionYaml(bench, eu.name)}),
    ])
    expectCode(migrated, [0], 'db migrate up')
    const registry = await registryOn(bench, eu.name)
    try {
      const base = randomBlob(3000, 'crash/base')
      const push = async (repo: string, tag: string, layers: Buffer[]) =>
        bench.tags.push({
          repo,
          tag,
          image: await pushImage(registry.url, repo, tag, {layers, seed: `crash/${repo}/${tag}`}),
        })
      await push('library/web', 'v1', [base, randomBlob(2000, 'crash/v1'), randomBlob(1800, 'crash/v1b')])
      await push('library/web', 'v2', [base, randomBlob(2100, 'crash/v2')])
      await push('team/app', 'latest', [randomBlob(2200, 'crash/app'), randomBlob(1700, 'crash/app2')])
      await push('team/tool', '1.0', [randomBlob(2500, 'crash/tool')])
    } finally {
      await registry.stop()
    }
    const rows = [
      await auditRepairRow(bench, options),
      await replicateRow(bench, options),
      await repairLinksRow(bench, options),
    ]
    return {
      suite: 'crash-repair',
      title: 'Crash trials: repairs and copies',
      description:
        'Each trial builds its own radosgw buckets (a drifted copy of a healthy region, an empty region, or a repository with deleted _layers links), runs the command with every storage request passing through a loopback proxy, and kills it with SIGKILL at one of them, drawn from the trial seed: about a quarter at the first write (before it reaches storage, or after it landed and before the command could journal its outcome), the others at a request anywhere in the run, before it reaches storage or after storage carried it out. Then the job is resumed (audit, replicate) or the command run again (repair links), and the end state is checked against the criterion. The figures say where the kills landed, read from the journal the killed run left.',
      seed: options.seed,
      scale: options.scale,
      seconds: (Date.now() - started) / 1000,
      rows,
    }
  } finally {
    await proxy.close()
    await db.end()
    await rm(dir, {recursive: true, force: true})
  }
}
