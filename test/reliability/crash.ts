// The crash matrix (issue 15): the commands that write (sweep blobs --delete and --quarantine, sweep purge
// --delete, import, db migrate up) are SIGKILLed at seeded points of their work, then resumed or re-run, and
// the end state is compared with that of one uninterrupted run from the same start. Two races close it: two
// acting sweeps started together, and two `db migrate up` at once.
//
// One PostgreSQL for the whole suite (a fresh database per trial), one store written through docker-registry
// 2.8 (copied per trial, timestamps kept), and a registry started on a trial's copy for the push between the
// kill and the resume and for the pulls that check every tagged image.
import {execFile} from 'node:child_process'
import {mkdtemp, readdir, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {sharedPostgres, type PgServer} from '../helpers/postgres.js'
import {startRegistry} from '../helpers/registry.js'
import {
  deleteManifest,
  pullImage,
  pushImage,
  randomBlob,
  uploadOrphanBlob,
  type PushedImage,
} from '../helpers/images.js'
import {runCli, startCli, type CliRun} from '../helpers/cli.js'
import {prng} from '../helpers/scenario.js'
import {openDatabase, type Db} from '../../src/lib/metadata/db.js'
import {migrateUp} from '../../src/lib/metadata/migrations.js'
import {FilesystemDriver} from '../../src/lib/storage/filesystem.js'
import {LayoutWriter} from '../../src/lib/sample/layout-writer.js'
import {heldFor, killWhen} from './kill-at.js'
import {runTrials, type ReliabilityRow, type Suite, type SuiteOptions} from './suite.js'

const V2 = ['docker', 'registry', 'v2']

/** Trials per row: 'full' is what `npm run reliability` reports, 'subset' what npm test affords. */
const TRIALS = {
  full: {sweep: 24, purge: 20, import: 24, migrate: 30, racingSweeps: 20, racingMigrations: 20},
  subset: {sweep: 1, purge: 1, import: 1, migrate: 1, racingSweeps: 1, racingMigrations: 1},
}

export const runCrash: Suite = async (options) => {
  const started = Date.now()
  const lab = await Lab.open(options)
  try {
    const rows: ReliabilityRow[] = []
    const counts = TRIALS[options.scale]
    rows.push(await sweepRow(lab, 'delete', counts.sweep))
    rows.push(await sweepRow(lab, 'quarantine', counts.sweep))
    rows.push(await purgeRow(lab, counts.purge))
    rows.push(await importRow(lab, counts.import))
    rows.push(await migrateRow(lab, counts.migrate))
    rows.push(await racingSweepsRow(lab, counts.racingSweeps))
    rows.push(await racingMigrationsRow(lab, counts.racingMigrations))
    return {
      suite: 'crash',
      title: 'Crash trials: SIGKILL at a seeded point, then resume',
      description:
        'Each trial starts from a copy of one store written through docker-registry 2.8 (tagged images, manifests ' +
        'deleted through the API, blobs uploaded and never referenced) and a fresh PostgreSQL database. The command ' +
        'is killed with SIGKILL (no handler runs) when a seeded point of its own work is reached: a number of ' +
        'journal rows, of planned digest prefixes, of imported manifests or of applied migrations. In half of the ' +
        'sweep and purge trials (seeded), a push that reuses a candidate blob (a new manifest whose layer has ' +
        "exactly that blob's bytes) lands between the kill and the resume. The resume (same --job-key) or re-run " +
        'must end where one uninterrupted run from the same start ends. The race rows start two runs together.',
      seed: options.seed,
      scale: options.scale,
      seconds: (Date.now() - started) / 1000,
      rows,
    }
  } finally {
    await lab.close()
  }
}

// ------------------------------------------------------------------------------------------------ the lab

interface Orphan {
  repo: string
  label: string
  size: number
  digest: string
}

interface Trial {
  root: string
  v2: string
  url: string
  db: Db
  config: string
  dir: string
}

/** What every row shares: the database server, the template stores, the trials' scratch directories. */
class Lab {
  private readonly closing: Array<() => Promise<void>> = []
  private trials = 0
  readonly tags: Array<{repo: string; tag: string}> = []
  readonly orphans: Orphan[] = []
  templateBlobs: string[] = []

  private constructor(
    readonly options: SuiteOptions,
    readonly dir: string,
    readonly pg: PgServer,
  ) {}

  static async open(options: SuiteOptions): Promise<Lab> {
    const dir = await mkdtemp(join(tmpdir(), 'regops-crash-'))
    const lab = new Lab(options, dir, await sharedPostgres())
    lab.closing.push(() => rm(dir, {recursive: true, force: true}))
    await lab.writeRegistryTemplate()
    await lab.writeImportTemplate()
    return lab
  }

  get template(): string {
    return join(this.dir, 'template')
  }

  get importTemplate(): string {
    return join(this.dir, 'import-template')
  }

  log(line: string): void {
    this.options.log(line)
  }

  /**
   * Tagged images (one layer shared), two manifests deleted through the API (what only they used is
   * orphaned), and 40 blobs uploaded and never referenced: about 50 candidates for 60 blobs.
   */
  private async writeRegistryTemplate(): Promise<void> {
    const registry = await startRegistry({storage: {kind: 'filesystem', root: this.template}})
    try {
      const shared = randomBlob(700, 'crash-shared-layer')
      const tagged: Array<[string, string, Buffer[]]> = [
        ['base/os', 'v1', [shared, randomBlob(900, 'crash-os-1')]],
        ['app/web', 'v1', [shared, randomBlob(800, 'crash-web-1'), randomBlob(600, 'crash-web-2')]],
        ['app/api', 'v2', [randomBlob(500, 'crash-api-1'), randomBlob(1100, 'crash-api-2')]],
      ]
      for (const [repo, tag, layers] of tagged) {
        await pushImage(registry.url, repo, tag, {layers, seed: `crash-${repo}-${tag}`})
        this.tags.push({repo, tag})
      }
      for (const [repo, tag] of [
        ['app/web', 'old'],
        ['app/api', 'v1'],
      ]) {
        const gone = await pushImage(registry.url, repo, tag, {layers: 2, seed: `crash-gone-${repo}`, layerSize: 800})
        await deleteManifest(registry.url, repo, gone.manifestDigest)
      }
      for (let i = 0; i < 40; i++) {
        const repo = i % 2 === 0 ? 'app/web' : 'app/api'
        const label = `crash-orphan-${i}`
        const size = 300 + 37 * i
        this.orphans.push({repo, label, size, digest: (await uploadOrphanBlob(registry.url, repo, size, label)).digest})
      }
    } finally {
      await registry.stop()
    }
    this.templateBlobs = await blobDigests(join(this.template, ...V2, 'blobs'))
  }

  /** 30 repositories of three tagged images each, written straight into the layout: import's input. */
  private async writeImportTemplate(): Promise<void> {
    const writer = new LayoutWriter(new FilesystemDriver('main', join(this.importTemplate, ...V2)), 16)
    await writer.writeImage({repository: 'lib/base', tag: 'v1', seed: 'crash-import-base', layers: 1, layerSize: 300})
    for (let r = 0; r < 30; r++) {
      for (let t = 1; t <= 3; t++) {
        await writer.writeImage({
          repository: `team${r % 4}/svc${r}`,
          tag: `v${t}`,
          seed: `crash-import-${r}-${t}`,
          layers: 2,
          layerSize: 200,
        })
      }
    }
  }

  /** A fresh migrated database, and (unless `store` is false) a copy of the registry template. */
  async trial(label: string, store: 'registry' | 'import' | 'none' = 'registry'): Promise<Trial> {
    const dir = join(this.dir, `${label}-${this.trials++}`)
    const root = join(dir, 'storage')
    await execFileAsync('mkdir', ['-p', dir])
    if (store === 'registry') await execFileAsync('cp', ['-a', this.template, root])
    const v2 = store === 'import' ? join(this.importTemplate, ...V2) : join(root, ...V2)
    const url = await this.pg.createDatabase()
    const db = openDatabase(url, {max: 2})
    if (store !== 'none') await migrateUp(db)
    const config = join(dir, 'regops.yaml')
    await writeFile(config, `regions:\n  main: {url: "file://${v2}"}\ndatabase:\n  url: ${url}\n`)
    return {root, v2, url, db, config, dir}
  }

  async endTrial(trial: Trial): Promise<void> {
    await trial.db.close()
    await rm(trial.dir, {recursive: true, force: true})
  }

  async close(): Promise<void> {
    for (const close of this.closing.reverse()) await close().catch(() => {})
  }
}

const execFileAsync = promisify(execFile)

// ------------------------------------------------------------------------------------------------ helpers

/** A trial's random choices: its seed and the row's name, so one seed replays one trial of every row. */
function trialRandom(row: string, seed: number): {rng: () => number; int: (lo: number, hi: number) => number} {
  let salt = 2166136261
  for (const c of row) salt = Math.imul(salt ^ c.charCodeAt(0), 16777619) >>> 0
  const rng = prng((seed ^ salt) >>> 0)
  return {rng, int: (lo, hi) => lo + Math.floor(rng() * (hi - lo + 1))}
}

/** Digests of every `…sha256/xx/<hex>/data` under a directory (the blob store or the quarantine), sorted. */
async function blobDigests(dir: string): Promise<string[]> {
  let entries: string[]
  try {
    entries = await readdir(dir, {recursive: true})
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw error
  }
  const digests = new Set<string>()
  for (const entry of entries) {
    const match = /(?:^|\/)sha256\/[0-9a-f]{2}\/([0-9a-f]{64})\/data$/.exec(entry)
    if (match) digests.add(`sha256:${match[1]}`)
  }
  return [...digests].sort()
}

function sameSet(what: string, got: string[], want: string[]): void {
  const g = new Set(got)
  const w = new Set(want)
  const missing = [...w].filter((d) => !g.has(d))
  const extra = [...g].filter((d) => !w.has(d))
  if (missing.length + extra.length === 0) return
  const short = (ds: string[]) => ds.map((d) => d.slice(7, 19)).join(' ')
  throw new Error(`${what}: ${missing.length} missing [${short(missing)}], ${extra.length} extra [${short(extra)}]`)
}

function without(digests: string[], digest: string | undefined): string[] {
  return digests.filter((d) => d !== digest)
}

function tail(run: CliRun): string {
  return `${run.stdout.slice(-600)} ${run.stderr.slice(-600)}`.replace(/\s+/g, ' ').trim()
}

function count(figures: Record<string, number>, key: string): void {
  figures[key] = (figures[key] ?? 0) + 1
}

async function oneValue<T>(db: Db, sql: string, params: unknown[] = []): Promise<T> {
  return Object.values((await db.query(sql, params)).rows[0] ?? {})[0] as T
}

/** The dead worker's heartbeat aged by hand, as the minute before an orchestrator's retry would. */
async function ageHeartbeats(db: Db): Promise<void> {
  await db.query(`UPDATE regops_jobs SET heartbeat_at = now() - interval '5 minutes' WHERE status = 'running'`)
}

/** Exactly one job, and it is done. */
async function assertOneJobDone(db: Db): Promise<void> {
  const jobs = (await db.query<{status: string}>('SELECT status FROM regops_jobs ORDER BY id')).rows
  if (jobs.length !== 1 || jobs[0]!.status !== 'done')
    throw new Error(`jobs after the resume: ${JSON.stringify(jobs.map((j) => j.status))}, want one done`)
}

/** Every intent after `afterId` has exactly one outcome: none left open by the kill, none closed twice. */
async function assertIntentsClosedOnce(db: Db, afterId: number): Promise<void> {
  const bad = await db.query<{action: string; digest: string; outcomes: number}>(
    `SELECT i.action, i.digest, count(o.id)::int AS outcomes
       FROM regops_journal i LEFT JOIN regops_journal o ON o.intent_id = i.id
      WHERE i.phase = 'intent' AND i.id > $1
      GROUP BY i.id, i.action, i.digest HAVING count(o.id) <> 1`,
    [afterId],
  )
  if (bad.rows.length > 0) {
    const first = bad.rows.slice(0, 3).map((r) => `${r.action} ${r.digest.slice(7, 19)}: ${r.outcomes} outcomes`)
    throw new Error(`${bad.rows.length} journal intent(s) without exactly one outcome (${first.join('; ')})`)
  }
}

/** Digests journaled done for these actions after `afterId`; a digest done twice is a duplicate. */
async function doneDigests(db: Db, actions: string[], afterId: number): Promise<string[]> {
  const rows = await db.query<{digest: string; n: number}>(
    `SELECT i.digest, count(*)::int AS n FROM regops_journal o JOIN regops_journal i ON i.id = o.intent_id
      WHERE o.phase = 'done' AND i.action = ANY($1) AND o.id > $2 GROUP BY i.digest ORDER BY i.digest`,
    [actions, afterId],
  )
  const twice = rows.rows.filter((r) => r.n > 1)
  if (twice.length > 0)
    throw new Error(`journaled done twice: ${twice.map((r) => `${r.digest.slice(7, 19)} ×${r.n}`).join(', ')}`)
  return rows.rows.map((r) => r.digest)
}

async function maxJournalId(db: Db): Promise<number> {
  return Number(await oneValue<string | null>(db, 'SELECT coalesce(max(id), 0)::text FROM regops_journal'))
}

// ------------------------------------------------------------------------------------------------ sweeps

type ActingMode = 'delete' | 'quarantine'

function sweepArgs(trial: Trial, mode: ActingMode, key: string): string[] {
  return [
    'sweep',
    'blobs',
    '--config',
    trial.config,
    '--min-age',
    '0',
    '--force',
    `--${mode}`,
    '--allow-mass-delete',
    // One request at a time: the act phase lasts long enough for a journal-row kill point to land inside it.
    '--concurrency',
    '1',
    '--job-key',
    key,
    '--report',
    join(trial.dir, 'candidates.jsonl'),
    '--json',
  ]
}

interface SweepEnd {
  blobs: string[]
  quarantined: string[]
  acted: string[]
  journalRows: number
  intents: number
}

async function sweepEnd(lab: Lab, trial: Trial, mode: ActingMode): Promise<SweepEnd> {
  return {
    blobs: await blobDigests(join(trial.v2, 'blobs')),
    quarantined: await blobDigests(join(trial.v2, '_regops')),
    acted: await doneDigests(trial.db, [mode], 0),
    journalRows: Number(await oneValue<string>(trial.db, 'SELECT count(*)::text FROM regops_journal')),
    intents: Number(
      await oneValue<string>(trial.db, `SELECT count(*)::text FROM regops_journal WHERE phase = 'intent'`),
    ),
  }
}

/** One uninterrupted run per mode: the end state every trial of the mode is held to. */
const references = new Map<string, Promise<SweepEnd & {purge?: SweepEnd}>>()

function sweepReference(lab: Lab, mode: ActingMode): Promise<SweepEnd & {purge?: SweepEnd}> {
  let reference = references.get(mode)
  if (!reference) {
    reference = (async () => {
      const trial = await lab.trial(`reference-${mode}`)
      try {
        const run = await runCli(sweepArgs(trial, mode, `reference-${mode}`))
        if (run.code !== 0) throw new Error(`the uninterrupted ${mode} sweep exited ${run.code}: ${tail(run)}`)
        const end = await sweepEnd(lab, trial, mode)
        // A listing that saw nothing would make every comparison pass: the store has kept and acted blobs.
        if (end.acted.length < 40 || end.blobs.length < 10)
          throw new Error(
            `the uninterrupted ${mode} sweep acted on ${end.acted.length} blobs and kept ${end.blobs.length}`,
          )
        if (mode === 'delete') return end
        // The quarantine's end is the purge's start: purge it uninterrupted too.
        const marker = await maxJournalId(trial.db)
        const purge = await runCli(purgeArgs(trial))
        if (purge.code !== 0) throw new Error(`the uninterrupted purge exited ${purge.code}: ${tail(purge)}`)
        return {
          ...end,
          purge: {
            blobs: await blobDigests(join(trial.v2, 'blobs')),
            quarantined: await blobDigests(join(trial.v2, '_regops')),
            acted: await doneDigests(trial.db, ['purge'], marker),
            journalRows: Number(
              await oneValue<string>(trial.db, 'SELECT count(*)::text FROM regops_journal WHERE id > $1', [marker]),
            ),
            intents: 0,
          },
        }
      } finally {
        await lab.endTrial(trial)
      }
    })()
    references.set(mode, reference)
  }
  return reference
}

/** Where a sweep's job is, from what it wrote: the phase a kill landed in. */
async function sweepPhase(db: Db, key: string): Promise<string> {
  const job = (
    await db.query<{phase: string | null; planned: number; journal: number; open: number}>(
      `SELECT j.checkpoint->>'phase' AS phase, coalesce(jsonb_array_length(j.checkpoint->'planned'), 0)::int AS planned,
              (SELECT count(*)::int FROM regops_journal WHERE job_id = j.id) AS journal,
              (SELECT count(*)::int FROM regops_journal i WHERE i.job_id = j.id AND i.phase = 'intent'
                  AND NOT EXISTS (SELECT 1 FROM regops_journal o WHERE o.intent_id = i.id)) AS open
         FROM regops_jobs j WHERE j.job_key = $1`,
      [key],
    )
  ).rows[0]
  if (!job) return 'before the job began'
  if (job.phase !== 'act') return job.planned === 0 ? 'mark' : 'plan'
  if (job.journal === 0) return 'act, before the first intent'
  return job.open > 0 ? 'act, intents open' : 'act, between batches'
}

/**
 * A kill point spread over the phases: the mark (a seeded delay once the job exists), the plan (after k of
 * 256 prefixes are checkpointed), the act (after n journal rows: the intents, then k outcomes).
 */
function sweepKillPoint(
  db: Db,
  key: string,
  int: (lo: number, hi: number) => number,
  reference: SweepEnd,
): () => Promise<boolean> {
  const job = (sql: string) => async () =>
    Boolean(
      await oneValue<boolean>(db, `SELECT coalesce((${sql}), false) FROM regops_jobs j WHERE j.job_key = $1`, [key]),
    )
  const where = int(0, 2)
  if (where === 0) return heldFor(job('true'), int(0, 120))
  if (where === 1) {
    const planned = int(1, 255)
    return job(`j.checkpoint->>'phase' = 'act' OR jsonb_array_length(j.checkpoint->'planned') >= ${planned}`)
  }
  const rows = reference.intents + int(0, reference.journalRows - reference.intents - 1)
  return job(`(SELECT count(*) FROM regops_journal WHERE job_id = j.id) >= ${rows}`)
}

async function sweepRow(lab: Lab, mode: ActingMode, trials: number): Promise<ReliabilityRow> {
  const reference = await sweepReference(lab, mode)
  const figures: Record<string, number> = {}
  const outcome = await runTrials(lab.options.seed, trials, async (seed) => {
    const {rng, int} = trialRandom(`sweep-${mode}`, seed)
    const trial = await lab.trial(`sweep-${mode}-${seed}`)
    try {
      const key = `crash-${mode}-${seed}`
      const args = sweepArgs(trial, mode, key)
      const killed = await killWhen(startCli(args), sweepKillPoint(trial.db, key, int, reference))
      let landed = 'ended before its kill point'
      if (!killed.killed) {
        if (killed.run.code !== 0)
          throw new Error(`the run to be killed exited ${killed.run.code}: ${tail(killed.run)}`)
      } else landed = `killed in ${await sweepPhase(trial.db, key)}`
      count(figures, landed)
      const reused = rng() < 0.5 ? lab.orphans[int(0, lab.orphans.length - 1)] : undefined
      await resumeAndCheckSweep(lab, trial, {
        args,
        reused,
        seed,
        figures,
        expect: reference,
        actions: [mode],
        afterId: 0,
        jobs: 'one done',
      }).catch((error: Error) => {
        const push = reused ? `a push reusing ${reused.digest.slice(7, 19)}` : 'no push'
        throw new Error(`${landed}, ${push}: ${error.message}`)
      })
    } finally {
      await lab.endTrial(trial)
    }
  })
  lab.log(`sweep blobs --${mode}: ${outcome.survived}/${outcome.trials} survived`)
  return {
    case: `sweep blobs --${mode}, SIGKILL in the mark, the plan or the act, then re-run with its --job-key (resume)`,
    command: `regops sweep blobs --${mode} --min-age 0 --force --job-key K`,
    ...outcome,
    criterion:
      'The job ends done; the blobs left in storage' +
      (mode === 'quarantine' ? ' and in quarantine' : '') +
      ' are those one uninterrupted run leaves (plus the re-pushed blob and its new image); every tagged image ' +
      'pulls in full, digests verified; every journal intent has exactly one outcome, and each blob gone is ' +
      'journaled done exactly once.',
    figures,
  }
}

/**
 * Between the kill and the resume, in half the trials: a push whose layer has exactly a candidate's bytes
 * (re-uploading it when the killed run had already removed it). Then the resume, and the end-state checks.
 */
async function resumeAndCheckSweep(
  lab: Lab,
  trial: Trial,
  spec: {
    args: string[]
    reused: Orphan | undefined
    seed: number
    figures: Record<string, number>
    /** the uninterrupted run's end: blobs in storage and in quarantine, digests journaled done */
    expect: {blobs: string[]; quarantined: string[]; acted: string[]}
    actions: string[]
    afterId: number
    jobs: 'one done' | 'any'
  },
): Promise<void> {
  const registry = await startRegistry({storage: {kind: 'filesystem', root: trial.root}})
  try {
    let pushed: PushedImage | undefined
    if (spec.reused) {
      pushed = await pushImage(registry.url, spec.reused.repo, 'reuse', {
        layers: [randomBlob(spec.reused.size, spec.reused.label)],
        seed: `crash-reuse-${spec.seed}`,
      })
      count(spec.figures, 'trials with a push reusing a candidate')
    }
    await ageHeartbeats(trial.db)
    const resumed = await runCli(spec.args)
    if (resumed.code !== 0) throw new Error(`the resume exited ${resumed.code}: ${tail(resumed)}`)
    if (spec.jobs === 'one done') await assertOneJobDone(trial.db)
    const reusedDigest = spec.reused?.digest
    const pushedDigests = pushed ? [pushed.manifestDigest, ...pushed.blobs.map((b) => b.digest)] : []
    const blobs = await blobDigests(join(trial.v2, 'blobs'))
    sameSet('blobs in storage', blobs, [...new Set([...spec.expect.blobs, ...pushedDigests])])
    sameSet(
      'blobs in quarantine',
      without(await blobDigests(join(trial.v2, '_regops')), reusedDigest),
      without(spec.expect.quarantined, reusedDigest),
    )
    await assertIntentsClosedOnce(trial.db, spec.afterId)
    // Each blob gone from the store is journaled done once; only the re-pushed one may be done and back.
    const gone = lab.templateBlobs.filter((d) => !blobs.includes(d))
    const acted = await doneDigests(trial.db, spec.actions, spec.afterId)
    if (spec.actions.includes('purge'))
      sameSet('purges journaled done', without(acted, reusedDigest), without(spec.expect.acted, reusedDigest))
    else sameSet('journaled done vs gone from storage', without(acted, reusedDigest), without(gone, reusedDigest))
    const tags = [...lab.tags, ...(pushed ? [{repo: pushed.repo, tag: 'reuse'}] : [])]
    for (const {repo, tag} of tags) {
      const pulled = await pullImage(registry.url, repo, tag)
      if (!pulled.ok) throw new Error(`${repo}:${tag} does not pull: ${pulled.errors.slice(0, 2).join('; ')}`)
    }
  } finally {
    await registry.stop()
  }
}

// ------------------------------------------------------------------------------------------------ purge

function purgeArgs(trial: Trial): string[] {
  return ['sweep', 'purge', '--config', trial.config, '--delete', '--hold-for', '0s', '--force', '--json']
}

async function purgeRow(lab: Lab, trials: number): Promise<ReliabilityRow> {
  const reference = await sweepReference(lab, 'quarantine')
  const purged = reference.purge!
  const figures: Record<string, number> = {}
  const outcome = await runTrials(lab.options.seed, trials, async (seed) => {
    const {rng, int} = trialRandom('sweep-purge', seed)
    const trial = await lab.trial(`purge-${seed}`)
    try {
      const quarantine = await runCli(sweepArgs(trial, 'quarantine', `crash-purge-${seed}`))
      if (quarantine.code !== 0) throw new Error(`the quarantine sweep exited ${quarantine.code}: ${tail(quarantine)}`)
      const marker = await maxJournalId(trial.db)
      // After n of the purge's journal rows (intent, then outcome, blob after blob).
      const rows = int(1, purged.journalRows - 1)
      const killed = await killWhen(
        startCli(purgeArgs(trial)),
        async () =>
          Number(
            await oneValue<string>(trial.db, 'SELECT count(*)::text FROM regops_journal WHERE id > $1', [marker]),
          ) >= rows,
      )
      if (!killed.killed) {
        if (killed.run.code !== 0)
          throw new Error(`the purge to be killed exited ${killed.run.code}: ${tail(killed.run)}`)
        count(figures, 'ended before its kill point')
      } else {
        const open = Number(
          await oneValue<string>(
            trial.db,
            `SELECT count(*)::text FROM regops_journal i WHERE i.id > $1 AND i.phase = 'intent'
               AND NOT EXISTS (SELECT 1 FROM regops_journal o WHERE o.intent_id = i.id)`,
            [marker],
          ),
        )
        count(figures, open > 0 ? 'killed between an intent and its outcome' : 'killed between two blobs')
      }
      const reused = rng() < 0.5 ? lab.orphans[int(0, lab.orphans.length - 1)] : undefined
      await resumeAndCheckSweep(lab, trial, {
        args: purgeArgs(trial),
        reused,
        seed,
        figures,
        expect: purged,
        actions: ['purge'],
        afterId: marker,
        jobs: 'any',
      })
      const left = await blobDigests(join(trial.v2, '_regops'))
      if (left.length > 0) throw new Error(`${left.length} blob(s) left in quarantine after the purge`)
    } finally {
      await lab.endTrial(trial)
    }
  })
  lab.log(`sweep purge --delete: ${outcome.survived}/${outcome.trials} survived`)
  return {
    case: 'sweep purge --delete after a quarantine sweep, SIGKILL between journal rows, then run again',
    command: 'regops sweep purge --delete --hold-for 0s --force',
    ...outcome,
    criterion:
      'The blobs left in storage are those one uninterrupted purge leaves (plus the re-pushed blob, rescued or ' +
      'uploaded again, and its new image); the quarantine is empty; every tagged image pulls in full; every ' +
      'journal intent has exactly one outcome, and each quarantined blob is journaled purged at most once.',
    figures,
  }
}

// ------------------------------------------------------------------------------------------------ import

function importArgs(trial: Trial, key: string): string[] {
  // Six manifests (two repositories) per write transaction: kill points land between many commits, not one.
  return ['import', '--config', trial.config, '--batch-size', '6', '--job-key', key, '--json']
}

/** The imported registry metadata by natural keys (identity ids differ between runs), one line per row, sorted. */
async function metadataDump(db: Db): Promise<string[]> {
  const r = await db.query<{line: string}>(`
    SELECT 'ns ' || name AS line FROM top_level_namespaces
    UNION ALL SELECT 'repo ' || path FROM repositories
    UNION ALL SELECT 'blob ' || digest || ' ' || size || ' ' || coalesce(media_type_id::text, '-') FROM blobs
    UNION ALL SELECT 'rblob ' || r.path || ' ' || b.blob_digest
      FROM repository_blobs b JOIN repositories r ON r.id = b.repository_id
    UNION ALL SELECT 'manifest ' || r.path || ' ' || m.digest || ' ' || m.media_type_id || ' ' || m.schema_version
           || ' ' || md5(m.payload) || ' ' || coalesce(m.configuration_blob_digest, '-') || ' '
           || coalesce(m.configuration_media_type_id::text, '-') || ' ' || coalesce(m.subject_digest, '-')
      FROM manifests m JOIN repositories r ON r.id = m.repository_id
    UNION ALL SELECT 'ref ' || r.path || ' ' || p.digest || ' ' || c.digest
      FROM manifest_references x JOIN repositories r ON r.id = x.repository_id
      JOIN manifests p ON p.id = x.parent_id JOIN manifests c ON c.id = x.child_id
    UNION ALL SELECT 'layer ' || r.path || ' ' || m.digest || ' ' || l.position || ' ' || l.digest || ' ' || l.size
           || ' ' || l.media_type_id
      FROM layers l JOIN repositories r ON r.id = l.repository_id JOIN manifests m ON m.id = l.manifest_id
    UNION ALL SELECT 'tag ' || r.path || ' ' || t.name || ' ' || m.digest
      FROM tags t JOIN repositories r ON r.id = t.repository_id JOIN manifests m ON m.id = t.manifest_id
    UNION ALL SELECT 'dangling ' || r.path || ' ' || p.digest || ' ' || d.child_digest
      FROM dangling_manifest_references d JOIN repositories r ON r.id = d.repository_id
      JOIN manifests p ON p.id = d.parent_id
    UNION ALL SELECT 'unreadable ' || r.path || ' ' || u.key || ' ' || u.problem
      FROM unreadable_revisions u JOIN repositories r ON r.id = u.repository_id
    ORDER BY 1`)
  return r.rows.map((row) => row.line)
}

function sameLines(what: string, got: string[], want: string[]): void {
  if (got.length === want.length && got.every((line, i) => line === want[i])) return
  const missing = want.filter((line) => !got.includes(line))
  const extra = got.filter((line) => !want.includes(line))
  throw new Error(
    `${what}: ${got.length} rows, want ${want.length}; missing ${missing.slice(0, 2).join(' | ') || '-'}; extra ${extra.slice(0, 2).join(' | ') || '-'}`,
  )
}

async function importRow(lab: Lab, trials: number): Promise<ReliabilityRow> {
  const reference = await (async () => {
    const trial = await lab.trial('reference-import', 'import')
    try {
      const run = await runCli(importArgs(trial, 'reference-import'))
      if (run.code !== 0) throw new Error(`the uninterrupted import exited ${run.code}: ${tail(run)}`)
      return {
        dump: await metadataDump(trial.db),
        manifests: Number(await oneValue<string>(trial.db, 'SELECT count(*)::text FROM manifests')),
      }
    } finally {
      await lab.endTrial(trial)
    }
  })()
  const figures: Record<string, number> = {}
  const outcome = await runTrials(lab.options.seed, trials, async (seed) => {
    const {int} = trialRandom('import', seed)
    const trial = await lab.trial(`import-${seed}`, 'import')
    try {
      const key = `crash-import-${seed}`
      const manifests = int(0, reference.manifests - 1)
      const killed = await killWhen(
        startCli(importArgs(trial, key)),
        heldFor(
          async () =>
            Boolean(
              await oneValue<boolean>(
                trial.db,
                `SELECT EXISTS (SELECT 1 FROM regops_jobs WHERE job_key = $1) AND (SELECT count(*) FROM manifests) >= $2`,
                [key, manifests],
              ),
            ),
          int(0, 30),
        ),
      )
      if (!killed.killed) {
        if (killed.run.code !== 0)
          throw new Error(`the import to be killed exited ${killed.run.code}: ${tail(killed.run)}`)
        count(figures, 'ended before its kill point')
      } else {
        const imported = Number(await oneValue<string>(trial.db, 'SELECT count(*)::text FROM manifests'))
        const share = imported / reference.manifests
        count(
          figures,
          share === 0
            ? 'killed before any manifest'
            : share < 0.5
              ? 'killed in the first half'
              : 'killed in the second half',
        )
      }
      await ageHeartbeats(trial.db)
      const resumed = await runCli(importArgs(trial, key))
      if (resumed.code !== 0) throw new Error(`the resume exited ${resumed.code}: ${tail(resumed)}`)
      await assertOneJobDone(trial.db)
      sameLines('imported rows', await metadataDump(trial.db), reference.dump)
    } finally {
      await lab.endTrial(trial)
    }
  })
  lab.log(`import: ${outcome.survived}/${outcome.trials} survived`)
  return {
    case: 'import of a 31-repository store, SIGKILL after a seeded number of manifests, then re-run with its --job-key',
    command: 'regops import --batch-size 6 --job-key K',
    ...outcome,
    criterion:
      'The job ends done, and every registry table (namespaces, repositories, blobs, links, manifests, references, ' +
      'layers, tags, dangling references, unreadable revisions), compared row by row by natural key, equals that of ' +
      'one uninterrupted import.',
    figures: {...figures, 'manifests imported': reference.manifests},
  }
}

// ------------------------------------------------------------------------------------------------ migrations

/** The schema as pg_catalog knows it (the clean run's ids and timings aside), one line per object, sorted. */
async function schemaDump(db: Db): Promise<string[]> {
  const r = await db.query<{line: string}>(`
    SELECT 'rel ' || c.relname || ' ' || c.relkind::text || coalesce(' ' || pg_get_expr(c.relpartbound, c.oid), '')
             || coalesce(' partkey ' || pg_get_partkeydef(c.oid), '') AS line
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
    UNION ALL
    SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
             || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
             || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') || ' identity=' || a.attidentity::text
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
    UNION ALL SELECT 'idx ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL
    SELECT 'con ' || c.conrelid::regclass::text || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
      FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public'
    UNION ALL
    SELECT 'fn ' || p.proname || ' ' || md5(pg_get_functiondef(p.oid))
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' AND p.prokind = 'f'
    UNION ALL
    SELECT 'type ' || t.typname || ' ' || t.typtype::text
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public' AND t.typtype = 'd'
    UNION ALL SELECT 'migration ' || version || ' ' || name || ' ' || checksum FROM regops_schema_migrations
    UNION ALL SELECT 'media_type ' || id || ' ' || media_type FROM media_types
    ORDER BY 1`)
  return r.rows.map((row) => row.line)
}

function migrateArgs(trial: Trial): string[] {
  return ['db', 'migrate', 'up', '--database-url', trial.url, '--json']
}

async function appliedMigrations(db: Db): Promise<number> {
  return Number(await oneValue<string>(db, 'SELECT count(*)::text FROM regops_schema_migrations'))
}

let cleanSchema: Promise<{dump: string[]; versions: number}> | undefined

function cleanMigration(lab: Lab): Promise<{dump: string[]; versions: number}> {
  cleanSchema ??= (async () => {
    const trial = await lab.trial('reference-migrate', 'none')
    try {
      const run = await runCli(migrateArgs(trial))
      if (run.code !== 0) throw new Error(`a clean db migrate up exited ${run.code}: ${tail(run)}`)
      return {dump: await schemaDump(trial.db), versions: await appliedMigrations(trial.db)}
    } finally {
      await lab.endTrial(trial)
    }
  })()
  return cleanSchema
}

/** `db migrate status`: every migration applied with its recorded checksum, none pending, drifted or half applied. */
async function assertStatusClean(trial: Trial, versions: number): Promise<void> {
  const status = await runCli(['db', 'migrate', 'status', '--database-url', trial.url, '--json'])
  if (status.code !== 0) throw new Error(`db migrate status exited ${status.code}: ${tail(status)}`)
  const migrations = status.json.migrations as Array<{state: string; checksum: string; recordedChecksum: string}>
  const bad = migrations.filter((m) => m.state !== 'applied' || m.checksum !== m.recordedChecksum)
  if (migrations.length !== versions || bad.length > 0 || status.json.current !== versions)
    throw new Error(
      `db migrate status: ${JSON.stringify(migrations.map((m) => m.state))}, current ${status.json.current}`,
    )
}

async function migrateRow(lab: Lab, trials: number): Promise<ReliabilityRow> {
  const clean = await cleanMigration(lab)
  const figures: Record<string, number> = {}
  const outcome = await runTrials(lab.options.seed, trials, async (seed) => {
    const {int} = trialRandom('migrate', seed)
    const trial = await lab.trial(`migrate-${seed}`, 'none')
    try {
      // After k migrations are recorded, and a seeded few ms more: inside the next one's transaction, or between.
      const applied = int(0, clean.versions - 1)
      const killed = await killWhen(
        startCli(migrateArgs(trial)),
        heldFor(async () => (await appliedMigrations(trial.db)) >= applied, int(0, 60)),
      )
      if (!killed.killed) {
        if (killed.run.code !== 0)
          throw new Error(`the run to be killed exited ${killed.run.code}: ${tail(killed.run)}`)
        count(figures, 'ended before its kill point')
      } else {
        const at = await appliedMigrations(trial.db).catch(() => 0)
        count(figures, `killed with ${at} of ${clean.versions} applied`)
      }
      const again = await runCli(migrateArgs(trial))
      if (again.code !== 0) throw new Error(`the re-run exited ${again.code}: ${tail(again)}`)
      sameLines('schema', await schemaDump(trial.db), clean.dump)
      await assertStatusClean(trial, clean.versions)
    } finally {
      await lab.endTrial(trial)
    }
  })
  lab.log(`db migrate up: ${outcome.survived}/${outcome.trials} survived`)
  return {
    case: 'db migrate up on an empty database, SIGKILL after a seeded number of migrations (plus 0-60 ms), then run again',
    command: 'regops db migrate up',
    ...outcome,
    criterion:
      'The schema (tables, partitions, columns, indexes, constraints, functions, domains, seeded rows and the ' +
      "migrations' recorded checksums, from pg_catalog) equals that of one clean run, and db migrate status shows " +
      'every migration applied with its checksum intact: none pending, drifted or half applied. (No migration is ' +
      'marked regops:no-transaction today, so every kill lands between or inside transactional migrations.)',
    figures,
  }
}

// ------------------------------------------------------------------------------------------------ races

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function racingSweepsRow(lab: Lab, trials: number): Promise<ReliabilityRow> {
  const reference = await sweepReference(lab, 'delete')
  const figures: Record<string, number> = {}
  const outcome = await runTrials(lab.options.seed, trials, async (seed) => {
    const {int} = trialRandom('racing-sweeps', seed)
    const trial = await lab.trial(`race-sweep-${seed}`)
    try {
      const stagger = int(0, 100)
      const first = startCli(sweepArgs(trial, 'delete', `race-a-${seed}`))
      await sleep(stagger)
      const second = startCli(sweepArgs(trial, 'delete', `race-b-${seed}`))
      const runs = await Promise.all([first.done, second.done])
      const codes = runs.map((run) => run.code)
      const acted = runs.filter((run) => run.code === 0)
      const refused = runs.filter((run) => run.code === 4)
      if (acted.length !== 1 || refused.length !== 1)
        throw new Error(`exit codes ${codes.join(' and ')}, want one 0 and one 4: ${runs.map(tail).join(' // ')}`)
      if (refused[0]!.json?.error?.code !== 'LOCKED')
        throw new Error(`the refused sweep says ${JSON.stringify(refused[0]!.json?.error ?? tail(refused[0]!))}`)
      count(figures, codes[0] === 0 ? 'the first started acted' : 'the second started acted')
      await assertOneJobDone(trial.db)
      sameSet('blobs in storage', await blobDigests(join(trial.v2, 'blobs')), reference.blobs)
      await assertIntentsClosedOnce(trial.db, 0)
    } finally {
      await lab.endTrial(trial)
    }
  })
  lab.log(`racing sweeps: ${outcome.survived}/${outcome.trials} survived`)
  return {
    case: 'two sweep blobs --delete on the same region and shard, started 0-100 ms apart (seeded)',
    command: 'regops sweep blobs --delete (twice at once)',
    ...outcome,
    criterion:
      'Exactly one acts (exit 0) and the other is refused (exit 4, LOCKED) leaving no job behind; the store ends ' +
      'as one uninterrupted sweep leaves it, and every journal intent has exactly one outcome.',
    figures,
  }
}

async function racingMigrationsRow(lab: Lab, trials: number): Promise<ReliabilityRow> {
  const clean = await cleanMigration(lab)
  const figures: Record<string, number> = {}
  const outcome = await runTrials(lab.options.seed, trials, async (seed) => {
    const {int} = trialRandom('racing-migrations', seed)
    const trial = await lab.trial(`race-migrate-${seed}`, 'none')
    try {
      const first = startCli(migrateArgs(trial))
      await sleep(int(0, 100))
      const second = startCli(migrateArgs(trial))
      const runs = await Promise.all([first.done, second.done])
      const applied = runs.map((run) => (run.code === 0 ? (run.json.applied as unknown[]).length : 0))
      const codes = runs.map((run) => run.code)
      if (codes.some((code) => code !== 0 && code !== 4) || !codes.includes(0))
        throw new Error(
          `exit codes ${codes.join(' and ')}, want 0 and 0 (one waited) or 0 and 4: ${runs.map(tail).join(' // ')}`,
        )
      if (applied[0]! + applied[1]! !== clean.versions || !applied.includes(0))
        throw new Error(`applied ${applied.join(' and ')} migrations: one run must apply all ${clean.versions}`)
      count(figures, codes.includes(4) ? 'the other refused (lock timeout)' : 'the other waited, found nothing to do')
      sameLines('schema', await schemaDump(trial.db), clean.dump)
      await assertStatusClean(trial, clean.versions)
    } finally {
      await lab.endTrial(trial)
    }
  })
  lab.log(`racing migrations: ${outcome.survived}/${outcome.trials} survived`)
  return {
    case: 'two db migrate up on one empty database, started 0-100 ms apart (seeded)',
    command: 'regops db migrate up (twice at once)',
    ...outcome,
    criterion:
      'One applies every migration; the other waits for the lock and finds nothing to do (exit 0) or is refused ' +
      '(exit 4); each migration is recorded once and the schema equals that of one clean run.',
    figures,
  }
}
