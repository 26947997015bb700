/**
 * `regops import`: walks a registry's storage (distribution v2 layout) and writes the metadata database.
 *
 * - Streams: repositories one by one (a few at once), each repository's manifest revisions in batches;
 *   nothing is collected over the whole store, so memory stays flat however large it is.
 * - Batched and idempotent writes (see import-db.ts): a second run over an unchanged store changes no row.
 * - One transaction per repository: a process killed at any instant leaves each repository either fully
 *   imported or untouched (blobs, namespaces and media types are written before, idempotently).
 * - Resumable: a job row (kind 'import') whose checkpoint is the last repository imported with all
 *   repositories before it, in listing order (byte order of `name + '/'`). `resumeJobId` continues after it.
 * - Sharded by repository: shard = first 4 bytes of sha256(name) mod count, stable everywhere.
 * - Bad input is a Problem with its key, never a crash: the rest is imported.
 */
import {createHash, randomUUID} from 'node:crypto'
import pLimit from 'p-limit'
import type {Db, DbClient} from './db.js'
import {createJob, finishJob, resumeJob, saveCheckpoint, startHeartbeat, type Job} from './jobs.js'
import {
  addEdges,
  addSeen,
  cleanMediaType,
  ensureBlobs,
  ensureRepository,
  forgetScratch,
  insertLayers,
  insertReferences,
  insertRepositoryBlobs,
  MediaTypeIds,
  prepareScratch,
  pruneRepository,
  upsertManifests,
  upsertTags,
  type BlobWant,
  type LayerRow,
  type ManifestRow,
  type RepositoryRow,
} from './import-db.js'
import {InterruptedError, UsageError, errorMessage} from '../errors.js'
import {silentLogger, type Logger} from '../output/logger.js'
import {compareKeys, type StorageDriver} from '../storage/driver.js'
import {isRepositoryName, pathFor} from '../storage/layout.js'
import {MediaTypes, type ParsedManifest} from '../storage/manifest.js'
import {listLayerLinks, listRepositories, listRevisionLinks, listTags, readRevision, type LinkEntry, type ManifestRead, type Problem} from '../storage/repositories.js'

export const IMPORT_JOB_KIND = 'import'

export type ImportProblemKind = Problem['kind'] | 'unknown-media-type' | 'missing-blob' | 'dangling-layer-link' | 'dangling-tag' | 'missing-child'

/** Something in storage the import could not take as it is; reported with its key, the rest is imported. */
export interface ImportProblem extends Omit<Problem, 'kind'> {
  kind: ImportProblemKind
}

export interface ImportCounts {
  /** repositories imported */
  repositories: number
  /** manifests imported (in the database after the run, whether this run wrote them or not) */
  manifests: number
  /** tags imported */
  tags: number
  /** blob rows this run created (0 on a re-run over an unchanged store); dry-run: blobs referenced or linked, per repository */
  blobs: number
  /** layer rows of the imported manifests */
  layers: number
  /** index → child edges (manifest_references) */
  references: number
  /** _layers links imported (repository_blobs) */
  repositoryBlobs: number
}

/** Rows this run inserted, updated or deleted. All zero on a re-run over an unchanged store. */
export interface ImportWrites {
  namespaces: number
  repositories: number
  mediaTypes: number
  blobs: number
  manifests: number
  layers: number
  references: number
  repositoryBlobs: number
  tagsInserted: number
  tagsUpdated: number
  deleted: {manifests: number; tags: number; repositoryBlobs: number}
}

export interface ImportResult extends ImportCounts {
  kind: 'import'
  jobId?: string
  group?: string
  dryRun: boolean
  region: string
  location: string
  shard: {index: number; count: number}
  /** repository filters (exact names, or prefixes ending in '*') */
  filters?: string[]
  /** the checkpoint this run resumed after */
  resumedAfter?: string
  /** the checkpoint at the end: last repository imported with all before it */
  checkpoint?: string
  written: ImportWrites
  /** repositories that failed (database or storage errors); the job is resumable from before the first */
  failed: Array<{repository: string; message: string}>
  /** the first maxProblems problems */
  problems: ImportProblem[]
  problemCount: number
  durationMs: number
}

export interface ImportProgress {
  repositories: number
  manifests: number
  blobs: number
  problems: number
  failed: number
  current?: string
  elapsedMs: number
}

export interface ImportOptions {
  driver: StorageDriver
  /** required unless dryRun */
  db?: Db
  dryRun?: boolean
  shard?: {index: number; count: number}
  /** exact repository names, or prefixes ending in '*' ('team/*'); none = every repository */
  repositories?: string[]
  resumeJobId?: string
  /** shared by the shards of one import (the sweep takes the earliest start of the latest complete group); default: a new UUID */
  group?: string
  /** storage reads in flight per repository (default 16) */
  concurrency?: number
  /** repositories imported at once (default 4) */
  repositoryConcurrency?: number
  /** manifests per write batch (default 200) */
  batchSize?: number
  /** problems kept in the result (all are counted); default 1000 */
  maxProblems?: number
  /** minimum interval between checkpoint writes (default 500 ms) */
  checkpointEveryMs?: number
  logger?: Logger
  signal?: AbortSignal
  onProgress?: (p: ImportProgress) => void
}

interface ImportCheckpoint {
  after: string | null
  counts: ImportCounts
  written: ImportWrites
  problemCount: number
}

const MAX_BATCH_PAYLOAD_BYTES = 8 * 1024 * 1024

/** Stable shard of a repository: first 4 bytes of sha256(name), big-endian, mod count. */
export function shardOfRepository(name: string, count: number): number {
  if (count <= 1) return 0
  return createHash('sha256').update(name).digest().readUInt32BE(0) % count
}

/** Order of repositories in the walk (and of checkpoints): byte order of `name + '/'`, as listed. */
export function compareRepositories(a: string, b: string): number {
  return compareKeys(`${a}/`, `${b}/`)
}

export function repositoryFilter(filters: string[] | undefined): (name: string) => boolean {
  if (!filters || filters.length === 0) return () => true
  const exact = new Set<string>()
  const prefixes: string[] = []
  for (const f of filters) {
    if (f.endsWith('*')) prefixes.push(f.slice(0, -1))
    else if (isRepositoryName(f)) exact.add(f)
    else throw new UsageError(`invalid --repository '${f}': a repository name, or a prefix ending in '*' (e.g. 'team/*')`)
  }
  return (name) => exact.has(name) || prefixes.some((p) => name.startsWith(p))
}

function zeroCounts(): ImportCounts {
  return {repositories: 0, manifests: 0, tags: 0, blobs: 0, layers: 0, references: 0, repositoryBlobs: 0}
}

function zeroWrites(): ImportWrites {
  return {
    namespaces: 0,
    repositories: 0,
    mediaTypes: 0,
    blobs: 0,
    manifests: 0,
    layers: 0,
    references: 0,
    repositoryBlobs: 0,
    tagsInserted: 0,
    tagsUpdated: 0,
    deleted: {manifests: 0, tags: 0, repositoryBlobs: 0},
  }
}

function addCounts(into: ImportCounts, more: ImportCounts): void {
  for (const key of Object.keys(zeroCounts()) as Array<keyof ImportCounts>) into[key] += more[key]
}

function addWrites(into: ImportWrites, more: ImportWrites): void {
  for (const key of Object.keys(zeroWrites()) as Array<keyof ImportWrites>) {
    if (key === 'deleted') {
      into.deleted.manifests += more.deleted.manifests
      into.deleted.tags += more.deleted.tags
      into.deleted.repositoryBlobs += more.deleted.repositoryBlobs
    } else into[key] += more[key]
  }
}

function validSize(size: number | undefined): number | undefined {
  return size !== undefined && Number.isSafeInteger(size) && size >= 0 ? size : undefined
}

function aborted(signal: AbortSignal | undefined): boolean {
  return Boolean(signal?.aborted)
}

/** A repository failure that is not about one object: the repository is rolled back and retried on resume. */
class RepositoryFailure extends Error {}

interface RepositoryOutcome {
  counts: ImportCounts
  written: ImportWrites
}

interface Shared {
  opts: ImportOptions
  driver: StorageDriver
  db?: Db
  mediaTypes?: MediaTypeIds
  namespaces: Map<string, string>
  concurrency: number
  batchSize: number
  report: (p: ImportProblem) => void
  progress: () => void
  live: {manifests: number; blobs: number}
}

/** The media type a manifest is recorded under (an OCI manifest when the payload names none it could). */
function manifestMediaType(m: ParsedManifest): string {
  return cleanMediaType(m.mediaType) ?? MediaTypes.ociManifest
}

function layerMediaType(m: ParsedManifest, mediaType: string | undefined): string {
  if (mediaType !== undefined) return cleanMediaType(mediaType)!
  return m.class === 'schema1' ? MediaTypes.dockerLayer : 'application/octet-stream'
}

async function importRepository(shared: Shared, name: string): Promise<RepositoryOutcome> {
  const {driver, opts} = shared
  const signal = opts.signal
  const counts = zeroCounts()
  const written = zeroWrites()
  counts.repositories = 1
  const failOnStorage = (p: Problem | ImportProblem): void => {
    if (p.kind === 'storage-error') throw new RepositoryFailure(`storage error at ${p.key}: ${p.message}`)
  }
  if (!shared.db) return dryRunRepository(shared, name)
  const db: Db = shared.db

  const repoRow = await ensureRepository(db, name, shared.namespaces)
  if (!repoRow.existed) written.repositories++
  if (repoRow.createdNamespace) written.namespaces++

  await db.transaction(async (client) => {
    try {
      await importInTransaction(client)
    } catch (error) {
      forgetScratch(client)
      throw error
    }
  })
  return {counts, written}

  async function importInTransaction(client: DbClient): Promise<void> {
    await prepareScratch(client)
    const prune = repoRow.existed
    let edges = 0

    // 1. manifest revisions, in batches (of batchSize links, or fewer when their payloads are large)
    let batch: LinkEntry[] = []
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return
      const links = batch
      batch = []
      if (prune) await addSeen(client, 'm', links.map((l) => l.digest))
      let pending: ManifestRead[] = []
      let bytes = 0
      for (let i = 0; i < links.length; i += shared.concurrency) {
        if (aborted(signal)) throw signal!.reason
        const reads = await Promise.all(links.slice(i, i + shared.concurrency).map((link) => readRevision(driver, name, link)))
        pending.push(...reads)
        for (const r of reads) bytes += r.payload?.length ?? 0
        if (bytes >= MAX_BATCH_PAYLOAD_BYTES) {
          edges += await writeManifests(shared, client, repoRow, pending, counts, written, failOnStorage)
          pending = []
          bytes = 0
        }
      }
      edges += await writeManifests(shared, client, repoRow, pending, counts, written, failOnStorage)
      shared.progress()
    }
    for await (const link of listRevisionLinks(driver, name, (p) => {
      failOnStorage(p)
      shared.report(p)
    })) {
      batch.push(link)
      if (batch.length >= shared.batchSize) await flush()
    }
    await flush()

    // 2. _layers links → repository_blobs
    let links: LinkEntry[] = []
    const flushLinks = async (): Promise<void> => {
      if (links.length === 0) return
      const chunk = links
      links = []
      if (aborted(signal)) throw signal!.reason
      if (prune) await addSeen(client, 'b', chunk.map((l) => l.digest))
      const wants = new Map<string, BlobWant>()
      for (const l of chunk) wants.set(l.digest, {mediaTypeId: null, linkOnly: true})
      const known = await ensureBlobs(db, driver, wants, shared.concurrency)
      const present: Array<{digest: string; createdAt: Date}> = []
      for (const l of chunk) {
        const blob = known.get(l.digest)
        if (blob?.inserted) {
          written.blobs++
          counts.blobs++
          shared.live.blobs++
        }
        if (blob) present.push({digest: l.digest, createdAt: l.lastModified})
        else shared.report({kind: 'dangling-layer-link', key: l.key, repository: name, digest: l.digest, message: `_layers link to ${l.digest}, whose blob data is not in storage: not imported`})
      }
      written.repositoryBlobs += await insertRepositoryBlobs(client, repoRow, present)
      counts.repositoryBlobs += present.length
    }
    for await (const link of listLayerLinks(driver, name, (p) => {
      failOnStorage(p)
      shared.report(p)
    })) {
      links.push(link)
      if (links.length >= 1000) await flushLinks()
    }
    await flushLinks()

    // 3. index → child references (the children may have come in any batch)
    const refs = edges > 0 ? await insertReferences(client, repoRow) : {resolved: 0, inserted: 0, missing: []}
    counts.references += refs.resolved
    written.references += refs.inserted
    for (const m of refs.missing) {
      shared.report({
        kind: 'missing-child',
        key: pathFor({kind: 'blob-data', digest: m.parentDigest}),
        repository: name,
        digest: m.parentDigest,
        message: `index references ${m.childDigest}, which is not a manifest of ${name}: edge not imported`,
      })
    }

    // 4. tags (current links)
    if (aborted(signal)) throw signal!.reason
    const tagProblems: Problem[] = []
    const tags = await listTags(driver, name, (p) => tagProblems.push(p), shared.concurrency)
    for (const p of tagProblems) {
      failOnStorage(p)
      shared.report(p)
    }
    const readable = tags.filter((t) => t.digest !== undefined)
    const dangling = new Set<string>()
    for (let i = 0; i < readable.length; i += 1000) {
      const chunk = readable.slice(i, i + 1000)
      const result = await upsertTags(client, repoRow, chunk.map((t) => ({name: t.tag, digest: t.digest!, createdAt: t.lastModified})))
      counts.tags += result.imported
      written.tagsInserted += result.inserted
      written.tagsUpdated += result.updated
      for (const tag of result.dangling) dangling.add(tag)
    }
    for (const t of readable) {
      if (dangling.has(t.tag)) {
        shared.report({kind: 'dangling-tag', key: t.key, repository: name, digest: t.digest, message: `tag ${t.tag} points at ${t.digest}, which is not a manifest of ${name}: not imported`})
      }
    }

    // 5. a re-import removes what storage no longer has
    if (prune) {
      const keep = tags.filter((t) => t.digest === undefined || !dangling.has(t.tag)).map((t) => t.tag)
      const deleted = await pruneRepository(client, repoRow, keep)
      written.deleted.manifests += deleted.manifests
      written.deleted.tags += deleted.tags
      written.deleted.repositoryBlobs += deleted.repositoryBlobs
    }
  }
}

async function writeManifests(
  shared: Shared,
  client: DbClient,
  repo: RepositoryRow,
  reads: ManifestRead[],
  counts: ImportCounts,
  written: ImportWrites,
  failOnStorage: (p: Problem) => void,
): Promise<number> {
  const {db, driver} = shared
  const mediaTypes = shared.mediaTypes!
  const name = reads[0]?.repository
  const parsed: Array<{read: ManifestRead; manifest: ParsedManifest; payload: Buffer}> = []
  for (const read of reads) {
    for (const p of read.problems) {
      failOnStorage(p)
      shared.report(p)
    }
    if (read.manifest && read.payload) parsed.push({read, manifest: read.manifest, payload: read.payload})
  }
  if (parsed.length === 0) return 0

  // media types (unknown ones are inserted)
  const types = new Set<string>()
  for (const {manifest: m, read} of parsed) {
    types.add(manifestMediaType(m))
    if (m.class === 'unknown') {
      shared.report({
        kind: 'unknown-media-type',
        key: pathFor({kind: 'blob-data', digest: read.digest}),
        repository: name,
        digest: read.digest,
        message: `manifest media type '${m.mediaType}' is not one regops knows: imported with its descriptors, media type recorded`,
      })
    }
    if (m.config?.mediaType) types.add(cleanMediaType(m.config.mediaType)!)
    for (const l of m.layers) types.add(layerMediaType(m, l.mediaType))
  }
  await mediaTypes.resolve(types)
  if (mediaTypes.added > 0) {
    written.mediaTypes += mediaTypes.added
    mediaTypes.added = 0
  }

  // blobs: every manifest blob, config and layer
  const wants = new Map<string, BlobWant>()
  const want = (digest: string, size: number | undefined, mediaTypeId: number | null): void => {
    const prev = wants.get(digest)
    if (!prev) {
      wants.set(digest, {size, mediaTypeId, linkOnly: false})
      return
    }
    if (prev.size === undefined) prev.size = size
    if (mediaTypeId !== null && (prev.mediaTypeId === null || mediaTypeId < prev.mediaTypeId)) prev.mediaTypeId = mediaTypeId
  }
  for (const {manifest: m, read, payload} of parsed) {
    want(read.digest, payload.length, mediaTypes.id(manifestMediaType(m)))
    if (m.config) want(m.config.digest, validSize(m.config.size), mediaTypes.idOrNull(cleanMediaType(m.config.mediaType)))
    for (const l of m.layers) want(l.digest, validSize(l.size), mediaTypes.id(layerMediaType(m, l.mediaType)))
  }
  const known = await ensureBlobs(db!, driver, wants, shared.concurrency)
  for (const [digest, blob] of known) {
    if (blob.inserted) {
      written.blobs++
      counts.blobs++
      shared.live.blobs++
    }
    if (!blob.present) {
      shared.report({
        kind: 'missing-blob',
        key: pathFor({kind: 'blob-data', digest}),
        repository: name,
        digest,
        message: `referenced blob ${digest} is not in storage: recorded with the size its descriptor gives`,
      })
    }
  }

  // manifests
  const rows: ManifestRow[] = parsed.map(({manifest: m, read, payload}) => ({
    digest: read.digest,
    mediaTypeId: mediaTypes.id(manifestMediaType(m)),
    schemaVersion: m.class === 'schema1' || m.schemaVersion === 1 ? 1 : 2,
    payload,
    configDigest: m.config?.digest ?? null,
    configMediaTypeId: mediaTypes.idOrNull(cleanMediaType(m.config?.mediaType)),
    subjectDigest: m.subject?.digest ?? null,
    createdAt: read.revisionModified,
  }))
  const {ids, inserted} = await upsertManifests(client, repo, rows)
  written.manifests += inserted.size
  counts.manifests += parsed.length
  shared.live.manifests += parsed.length

  // layers of the new manifests (an existing manifest got its layers in the same transaction)
  const layers: LayerRow[] = []
  const edges: Array<{parentId: string; parentDigest: string; childDigest: string}> = []
  for (const {manifest: m, read} of parsed) {
    const id = ids.get(read.digest)!
    counts.layers += m.layers.length
    if (inserted.has(read.digest)) {
      m.layers.forEach((l, position) => {
        layers.push({
          manifestId: id,
          position,
          digest: l.digest,
          size: validSize(l.size) || known.get(l.digest)?.size || 0,
          mediaTypeId: mediaTypes.id(layerMediaType(m, l.mediaType)),
        })
      })
    }
    for (const child of m.manifests) edges.push({parentId: id, parentDigest: read.digest, childDigest: child.digest})
  }
  written.layers += await insertLayers(client, repo, layers)
  return addEdges(client, edges)
}

/** The walk without a database: counts what an import would find, and every problem. */
async function dryRunRepository(shared: Shared, name: string): Promise<RepositoryOutcome> {
  const {driver, opts} = shared
  const counts = zeroCounts()
  counts.repositories = 1
  const readLimit = pLimit(shared.concurrency)
  const manifests = new Set<string>()
  const blobs = new Set<string>()
  const children: Array<{parent: string; child: string}> = []
  let batch: LinkEntry[] = []
  const flush = async (): Promise<void> => {
    const links = batch
    batch = []
    if (aborted(opts.signal)) throw opts.signal!.reason
    const reads = await Promise.all(links.map((link) => readLimit(() => readRevision(driver, name, link))))
    for (const read of reads) {
      for (const p of read.problems) shared.report(p)
      const m = read.manifest
      if (!m) continue
      if (m.class === 'unknown') {
        shared.report({kind: 'unknown-media-type', key: pathFor({kind: 'blob-data', digest: read.digest}), repository: name, digest: read.digest, message: `manifest media type '${m.mediaType}' is not one regops knows`})
      }
      manifests.add(read.digest)
      counts.manifests++
      shared.live.manifests++
      counts.layers += m.layers.length
      blobs.add(read.digest)
      if (m.config) blobs.add(m.config.digest)
      for (const l of m.layers) blobs.add(l.digest)
      for (const c of m.manifests) children.push({parent: read.digest, child: c.digest})
    }
    shared.progress()
  }
  for await (const link of listRevisionLinks(driver, name, shared.report)) {
    batch.push(link)
    if (batch.length >= shared.batchSize) await flush()
  }
  await flush()
  for await (const link of listLayerLinks(driver, name, shared.report)) {
    counts.repositoryBlobs++
    blobs.add(link.digest)
  }
  for (const {parent, child} of children) {
    if (manifests.has(child) && child !== parent) counts.references++
    else if (!manifests.has(child)) shared.report({kind: 'missing-child', key: pathFor({kind: 'blob-data', digest: parent}), repository: name, digest: parent, message: `index references ${child}, which is not a manifest of ${name}`})
  }
  const tags = await listTags(driver, name, shared.report, shared.concurrency)
  for (const t of tags) {
    if (t.digest === undefined) continue
    if (manifests.has(t.digest)) counts.tags++
    else shared.report({kind: 'dangling-tag', key: t.key, repository: name, digest: t.digest, message: `tag ${t.tag} points at ${t.digest}, which is not a manifest of ${name}`})
  }
  counts.blobs = blobs.size
  shared.live.blobs += blobs.size
  return {counts, written: zeroWrites()}
}

/**
 * Imports the storage of one region into the metadata database (or, with dryRun, only walks it and
 * counts). Throws InterruptedError when the signal aborts (after saving the checkpoint).
 */
export async function importStorage(opts: ImportOptions): Promise<ImportResult> {
  const started = Date.now()
  const logger = opts.logger ?? silentLogger
  const {driver, db} = opts
  const dryRun = Boolean(opts.dryRun)
  if (!dryRun && !db) throw new UsageError('import needs a database (database.url, DATABASE_URL or --database-url); --dry-run walks storage without one')
  if (dryRun && opts.resumeJobId) throw new UsageError('--resume and --dry-run do not go together: a dry-run writes no job')

  let shard = opts.shard ?? {index: 0, count: 1}
  let filters = opts.repositories && opts.repositories.length > 0 ? [...opts.repositories] : undefined
  let group = opts.group
  let job: Job<ImportCheckpoint> | undefined
  let base: ImportCheckpoint = {after: null, counts: zeroCounts(), written: zeroWrites(), problemCount: 0}

  if (db && opts.resumeJobId) {
    const resumed = await resumeJob<ImportCheckpoint>(db, opts.resumeJobId, IMPORT_JOB_KIND)
    job = resumed
    const params = resumed.params as {group?: string; region?: string; repositories?: string[] | null}
    if (params.region !== undefined && params.region !== driver.region) {
      await finishJob(db, resumed.id, 'failed', resumed.stats, `resumed against region ${driver.region}`).catch(() => {})
      throw new UsageError(`job ${resumed.id} imported region '${params.region}', not '${driver.region}': pass --region ${params.region}`)
    }
    shard = {index: resumed.shardIndex, count: resumed.shardCount}
    filters = params.repositories ?? undefined
    group = params.group
    const cp = resumed.checkpoint
    if (cp) base = {after: cp.after, counts: {...zeroCounts(), ...cp.counts}, written: {...zeroWrites(), ...cp.written, deleted: {...zeroWrites().deleted, ...cp.written?.deleted}}, problemCount: cp.problemCount ?? 0}
  }
  const selected = repositoryFilter(filters)
  if (shard.count < 1 || shard.index < 0 || shard.index >= shard.count) throw new UsageError(`invalid shard ${shard.index}/${shard.count}`)

  if (db && !dryRun && !job) {
    group ??= randomUUID()
    job = (await createJob(
      db,
      IMPORT_JOB_KIND,
      {group, region: driver.region, location: driver.location, repositories: filters ?? null, complete: filters === undefined},
      shard,
    )) as unknown as Job<ImportCheckpoint>
  }
  const stopHeartbeat = db && job ? startHeartbeat(db, job.id) : () => {}

  const result: ImportResult = {
    kind: 'import',
    jobId: job?.id,
    group,
    dryRun,
    region: driver.region,
    location: driver.location,
    shard,
    filters,
    resumedAfter: base.after ?? undefined,
    checkpoint: base.after ?? undefined,
    ...zeroCounts(),
    written: zeroWrites(),
    failed: [],
    problems: [],
    problemCount: 0,
    durationMs: 0,
  }
  const maxProblems = opts.maxProblems ?? 1000
  const runCounts = zeroCounts()
  const runWrites = zeroWrites()
  let current: string | undefined
  const shared: Shared = {
    opts,
    driver,
    db: dryRun ? undefined : db,
    mediaTypes: dryRun || !db ? undefined : new MediaTypeIds(db),
    namespaces: new Map(),
    concurrency: opts.concurrency ?? 16,
    batchSize: opts.batchSize ?? 200,
    live: {manifests: 0, blobs: 0},
    report(p) {
      result.problemCount++
      if (result.problems.length < maxProblems) result.problems.push(p)
      logger.debug('problem', {problem: p.kind, key: p.key, message: p.message})
    },
    progress() {
      opts.onProgress?.({
        repositories: runCounts.repositories,
        manifests: shared.live.manifests,
        blobs: shared.live.blobs,
        problems: result.problemCount,
        failed: result.failed.length,
        current,
        elapsedMs: Date.now() - started,
      })
    },
  }

  // In-order checkpoint over repositories imported concurrently.
  interface Entry {
    name: string
    state: 'running' | 'done' | 'failed' | 'aborted'
    outcome?: RepositoryOutcome
  }
  const window: Entry[] = []
  const checkpointed: ImportCheckpoint = {after: base.after, counts: {...base.counts}, written: structuredClone(base.written), problemCount: base.problemCount}
  let blocked = false
  let dirty = false
  let lastSave = 0
  let saving: Promise<void> = Promise.resolve()
  const checkpointEveryMs = opts.checkpointEveryMs ?? 500
  const save = (force = false): Promise<void> => {
    if (!db || !job || dryRun || !dirty) return saving
    if (!force && Date.now() - lastSave < checkpointEveryMs) return saving
    dirty = false
    lastSave = Date.now()
    const snapshot = {...checkpointed, counts: {...checkpointed.counts}, written: structuredClone(checkpointed.written), problemCount: base.problemCount + result.problemCount}
    const jobId = job.id
    saving = saving.then(() => saveCheckpoint(db, jobId, snapshot, snapshot).catch((error) => logger.warn('could not save the checkpoint', {job: jobId, error: errorMessage(error)})))
    return saving
  }
  const advance = (): void => {
    while (!blocked && window.length > 0 && window[0].state !== 'running') {
      const head = window[0]
      if (head.state !== 'done') {
        blocked = true
        window.length = 0
        break
      }
      window.shift()
      checkpointed.after = head.name
      addCounts(checkpointed.counts, head.outcome!.counts)
      addWrites(checkpointed.written, head.outcome!.written)
      dirty = true
    }
    void save()
  }

  // Each repository in flight holds one connection for its transaction and borrows a second one for
  // the shared rows (blobs, media types): more repositories than the pool can serve would wait forever.
  const poolMax = db?.pool.options.max ?? 10
  const repositoryConcurrency = Math.max(1, Math.min(opts.repositoryConcurrency ?? 4, dryRun ? Infinity : Math.floor((poolMax - 1) / 2)))
  const inflight = new Set<Promise<void>>()
  const listProblem = (p: Problem): void => shared.report(p)
  try {
    for await (const name of listRepositories(driver, listProblem, opts.signal)) {
      if (aborted(opts.signal)) break
      if (!selected(name)) continue
      if (shardOfRepository(name, shard.count) !== shard.index) continue
      if (base.after !== null && compareRepositories(name, base.after) <= 0) continue
      const entry: Entry = {name, state: 'running'}
      // Once a repository failed the checkpoint cannot pass it: stop remembering the ones after it.
      if (!blocked) window.push(entry)
      current = name
      const task = importRepository(shared, name).then(
        (outcome) => {
          entry.state = 'done'
          entry.outcome = outcome
          addCounts(runCounts, outcome.counts)
          addWrites(runWrites, outcome.written)
          shared.progress()
        },
        (error: unknown) => {
          if (aborted(opts.signal)) {
            entry.state = 'aborted'
            return
          }
          entry.state = 'failed'
          const message = errorMessage(error)
          result.failed.push({repository: name, message})
          logger.error('repository import failed; it is retried on --resume', {repository: name, error: message})
        },
      )
      const tracked: Promise<void> = task.finally(() => {
        inflight.delete(tracked)
        advance()
      })
      inflight.add(tracked)
      if (inflight.size >= repositoryConcurrency) await Promise.race(inflight)
    }
  } catch (error) {
    if (!aborted(opts.signal)) {
      // The repository listing itself failed: what was imported stays, the job is resumable.
      result.failed.push({repository: '(listing)', message: errorMessage(error)})
      logger.error('listing repositories failed', {error: errorMessage(error)})
    }
  } finally {
    await Promise.allSettled([...inflight])
    stopHeartbeat()
  }
  advance()
  await save(true)

  result.checkpoint = checkpointed.after ?? undefined
  addCounts(result, base.counts)
  addCounts(result, runCounts)
  addWrites(result.written, base.written)
  addWrites(result.written, runWrites)
  result.durationMs = Date.now() - started
  const stats = {
    counts: Object.fromEntries(Object.keys(zeroCounts()).map((k) => [k, result[k as keyof ImportCounts]])),
    written: result.written,
    problemCount: base.problemCount + result.problemCount,
    failed: result.failed.length,
    durationMs: result.durationMs,
  }

  if (aborted(opts.signal)) {
    if (db && job) await finishJob(db, job.id, 'interrupted', {...stats, checkpoint: checkpointed}).catch(() => {})
    const reason = String((opts.signal!.reason as Error | undefined)?.message ?? '')
    throw new InterruptedError(reason.includes('SIGTERM') ? 'SIGTERM' : 'SIGINT', job?.id)
  }
  if (db && job) {
    // The checkpoint stays as saved: a failed job resumes after its last complete prefix.
    if (result.failed.length > 0) await finishJob(db, job.id, 'failed', stats, `${result.failed.length} repositories failed; resume with --resume ${job.id}`)
    else await finishJob(db, job.id, 'done', stats)
  }
  return result
}
