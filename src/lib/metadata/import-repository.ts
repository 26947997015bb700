import type {Db, DbClient} from './db.js'
import {ensureBlobs, ensureRepository, MediaTypeIds, type BlobWant, type RepositoryRow} from './import-db.js'
import {
  addSeen,
  forgetScratch,
  insertReferences,
  insertRepositoryBlobs,
  prepareScratch,
  pruneRepository,
  replaceUnreadableRevisions,
  upsertTags,
  type UnreadableRevision,
} from './import-db-repository.js'
import {writeManifests} from './import-manifests.js'
import {zeroCounts, zeroWrites, type ImportCounts, type ImportProblem, type ImportWrites} from './import-counts.js'
import type {StorageDriver} from '../storage/driver.js'
import {pathFor} from '../storage/layout.js'
import {
  listLayerLinks,
  listRevisionLinks,
  listTags,
  readRevision,
  type LinkEntry,
  type ManifestRead,
  type Problem,
  type TagEntry,
} from '../storage/repositories.js'

/** Payload bytes read before a batch of manifests is written, whatever its count: bounds memory per repository. */
const MAX_BATCH_PAYLOAD_BYTES = 8 * 1024 * 1024
/** _layers links per write. */
const LAYER_LINK_BATCH = 1000

/** What every repository's import shares: the storage, the database, the caches, the problem sink. */
export interface ImportShared {
  driver: StorageDriver
  db?: Db
  mediaTypes?: MediaTypeIds
  namespaces: Map<string, string>
  concurrency: number
  batchSize: number
  signal: AbortSignal
  report: (p: ImportProblem) => void
  progress: () => void
  live: {manifests: number; blobs: number}
  /** set when this run listed blobs/ first (see import-blob-listing.ts): the job whose listing it is */
  blobListingJobId?: string
}

export interface RepositoryOutcome {
  counts: ImportCounts
  written: ImportWrites
}

/** A repository failure that is not about one object: the repository is rolled back and retried on resume. */
export class RepositoryFailure extends Error {}

/** A storage error makes the repository's import incomplete: roll it back rather than import part of it. */
export function failOnStorage(p: Problem | ImportProblem): void {
  if (p.kind === 'storage-error') throw new RepositoryFailure(`storage error at ${p.key}: ${p.message}`)
}

/** A revision whose manifest could not be read or parsed: its own digest stays referenced, its references are unknown. */
export function unreadableOf(read: ManifestRead): UnreadableRevision | undefined {
  if (read.manifest) return undefined
  const cause =
    read.problems.find((p) => p.kind !== 'corrupt-link' && p.kind !== 'link-mismatch') ?? read.problems.at(-1)
  return {
    key: read.revisionKey,
    digest: read.digest,
    problem: cause?.kind ?? 'bad-manifest',
    message: cause?.message ?? 'manifest could not be read',
    revisionModified: read.revisionModified,
  }
}

/** Imports one repository in one transaction (its shared rows, repository and namespace, before). */
export async function importRepository(shared: ImportShared & {db: Db}, name: string): Promise<RepositoryOutcome> {
  const db = shared.db
  const repository = await ensureRepository(db, name, shared.namespaces)
  const steps = new RepositoryImport(shared, db, name, repository)
  if (!repository.existed) steps.written.repositories++
  if (repository.createdNamespace) steps.written.namespaces++
  await db.transaction(async (client) => {
    try {
      await steps.run(client)
    } catch (error) {
      forgetScratch(client)
      throw error
    }
  })
  return {counts: steps.counts, written: steps.written}
}

/** The steps of one repository's import, in its transaction. */
class RepositoryImport {
  readonly counts = {...zeroCounts(), repositories: 1}
  readonly written = zeroWrites()
  /** a re-import: rows storage no longer has are removed at the end */
  private readonly prune: boolean
  private edges = 0
  /** revisions whose references are unknown: recorded, so that the metadata strategy does not take them as none */
  private readonly unreadable: UnreadableRevision[] = []

  constructor(
    private readonly shared: ImportShared,
    private readonly db: Db,
    private readonly name: string,
    private readonly repository: RepositoryRow,
  ) {
    this.prune = repository.existed
  }

  async run(client: DbClient): Promise<void> {
    await prepareScratch(client)
    await this.importRevisions(client)
    await this.importLayerLinks(client)
    const {tags, dangling} = await this.importTags(client)
    if (this.prune) await this.pruneGone(client, tags, dangling)
    // After the prune: an edge to a child whose revision link is gone since the last import is dangling now.
    await this.importReferences(client)
    await replaceUnreadableRevisions(client, this.repository, this.unreadable)
  }

  private reportOrFail = (p: Problem): void => {
    failOnStorage(p)
    this.shared.report(p)
  }

  private checkSignal(): void {
    this.shared.signal.throwIfAborted()
  }

  /** Manifest revisions, in batches of batchSize links (or fewer when their payloads are large). */
  private async importRevisions(client: DbClient): Promise<void> {
    let batch: LinkEntry[] = []
    const onProblem = (p: Problem): void => {
      // A key under _manifests/revisions that does not parse (an unknown digest algorithm, say) may be a
      // manifest revision: what it references is unknown.
      if (p.kind === 'invalid-key')
        this.unreadable.push({key: p.key, digest: p.digest, problem: p.kind, message: p.message})
      this.reportOrFail(p)
    }
    for await (const link of listRevisionLinks(this.shared.driver, this.name, onProblem)) {
      batch.push(link)
      if (batch.length >= this.shared.batchSize) {
        await this.importRevisionBatch(client, batch)
        batch = []
      }
    }
    await this.importRevisionBatch(client, batch)
  }

  private async importRevisionBatch(client: DbClient, links: LinkEntry[]): Promise<void> {
    if (links.length === 0) return
    const {shared} = this
    if (this.prune)
      await addSeen(
        client,
        'm',
        links.map((l) => l.digest),
      )
    let pending: ManifestRead[] = []
    let bytes = 0
    for (let i = 0; i < links.length; i += shared.concurrency) {
      this.checkSignal()
      const reads = await Promise.all(
        links.slice(i, i + shared.concurrency).map((link) => readRevision(shared.driver, this.name, link)),
      )
      for (const read of reads) this.noteUnreadable(read)
      pending.push(...reads)
      for (const r of reads) bytes += r.payload?.length ?? 0
      if (bytes >= MAX_BATCH_PAYLOAD_BYTES) {
        this.edges += await writeManifests(shared, client, this.repository, pending, this.counts, this.written)
        pending = []
        bytes = 0
      }
    }
    this.edges += await writeManifests(shared, client, this.repository, pending, this.counts, this.written)
    shared.progress()
  }

  private noteUnreadable(read: ManifestRead): void {
    const cause = unreadableOf(read)
    if (cause) this.unreadable.push(cause)
  }

  /** _layers links → repository_blobs. */
  private async importLayerLinks(client: DbClient): Promise<void> {
    let links: LinkEntry[] = []
    for await (const link of listLayerLinks(this.shared.driver, this.name, this.reportOrFail)) {
      links.push(link)
      if (links.length >= LAYER_LINK_BATCH) {
        await this.importLayerLinkBatch(client, links)
        links = []
      }
    }
    await this.importLayerLinkBatch(client, links)
  }

  private async importLayerLinkBatch(client: DbClient, chunk: LinkEntry[]): Promise<void> {
    if (chunk.length === 0) return
    const {shared, counts, written} = this
    this.checkSignal()
    if (this.prune)
      await addSeen(
        client,
        'b',
        chunk.map((l) => l.digest),
      )
    const wants = new Map<string, BlobWant>()
    for (const l of chunk) wants.set(l.digest, {mediaTypeId: null, linkOnly: true})
    const known = await ensureBlobs(this.db, shared.driver, wants, shared.concurrency, shared.blobListingJobId)
    const present: Array<{digest: string; createdAt: Date}> = []
    for (const l of chunk) {
      const blob = known.get(l.digest)
      if (blob?.inserted) {
        written.blobs++
        counts.blobs++
        shared.live.blobs++
      }
      if (blob) present.push({digest: l.digest, createdAt: l.lastModified})
      else {
        shared.report({
          kind: 'dangling-layer-link',
          key: l.key,
          repository: this.name,
          digest: l.digest,
          message: `_layers link to ${l.digest}, whose blob data is not in storage: not imported`,
        })
      }
    }
    written.repositoryBlobs += await insertRepositoryBlobs(client, this.repository, present)
    counts.repositoryBlobs += present.length
  }

  /** Index → child references (the children may have come in any batch). */
  private async importReferences(client: DbClient): Promise<void> {
    const refs =
      this.edges > 0
        ? await insertReferences(client, this.repository)
        : {resolved: 0, inserted: 0, danglingInserted: 0, missing: []}
    this.counts.references += refs.resolved
    // dangling edges are reference rows too (by digest): a re-run over an unchanged store writes none
    this.written.references += refs.inserted + refs.danglingInserted
    for (const m of refs.missing) {
      this.shared.report({
        kind: 'missing-child',
        key: pathFor({kind: 'blob-data', digest: m.parentDigest}),
        repository: this.name,
        digest: m.parentDigest,
        message: `index references ${m.childDigest}, which is not a manifest of ${this.name}: edge kept as dangling (the child's manifest blob stays referenced)`,
      })
    }
  }

  /** Tags (current links); a tag whose manifest is not in the repository is reported, not imported. */
  private async importTags(client: DbClient): Promise<{tags: TagEntry[]; dangling: Set<string>}> {
    const {shared, name} = this
    this.checkSignal()
    const tagProblems: Problem[] = []
    const tags = await listTags(shared.driver, name, (p) => tagProblems.push(p), shared.concurrency)
    for (const p of tagProblems) this.reportOrFail(p)
    const readable = tags.filter((t) => t.digest !== undefined)
    const dangling = new Set<string>()
    for (let i = 0; i < readable.length; i += 1000) {
      const chunk = readable.slice(i, i + 1000)
      const result = await upsertTags(
        client,
        this.repository,
        chunk.map((t) => ({name: t.tag, digest: t.digest!, createdAt: t.lastModified})),
      )
      this.counts.tags += result.imported
      this.written.tagsInserted += result.inserted
      this.written.tagsUpdated += result.updated
      for (const tag of result.dangling) dangling.add(tag)
    }
    for (const t of readable) {
      if (!dangling.has(t.tag)) continue
      shared.report({
        kind: 'dangling-tag',
        key: t.key,
        repository: name,
        digest: t.digest,
        message: `tag ${t.tag} points at ${t.digest}, which is not a manifest of ${name}: not imported`,
      })
    }
    return {tags, dangling}
  }

  /** A re-import removes what storage no longer has. */
  private async pruneGone(client: DbClient, tags: TagEntry[], dangling: Set<string>): Promise<void> {
    const keep = tags.filter((t) => t.digest === undefined || !dangling.has(t.tag)).map((t) => t.tag)
    const deleted = await pruneRepository(client, this.repository, keep)
    this.written.deleted.manifests += deleted.manifests
    this.written.deleted.tags += deleted.tags
    this.written.deleted.repositoryBlobs += deleted.repositoryBlobs
  }
}
