/**
 * The bulk path of `regops import`: small repositories are read from storage ahead of the writes
 * (scanRepository), then written many at once (writeGroup), one transaction per group and one
 * statement per table per group (import-db-group.ts). A repository too large to hold in memory is
 * imported on its own, streaming, by importRepository (import-repository.ts).
 */
import pLimit from 'p-limit'
import type {Db} from './db.js'
import {ensureBlobs, type BlobWant} from './import-db.js'
import {
  ensureRepositories,
  insertGroupLayers,
  insertGroupReferences,
  insertGroupRepositoryBlobs,
  manifestKey,
  replaceGroupUnreadableRevisions,
  upsertGroupManifests,
  upsertGroupTags,
  type GroupLayerRow,
  type GroupManifestRow,
  type GroupRepository,
  type GroupUnreadableRow,
} from './import-db-group.js'
import {pruneGroup} from './import-prune.js'
import type {UnreadableRevision} from './import-db-repository.js'
import {
  layerMediaType,
  manifestMediaType,
  manifestRow,
  resolveMediaTypes,
  validSize,
  type ParsedRead,
} from './import-manifests.js'
import {failOnStorage, unreadableOf, type ImportShared, type RepositoryOutcome} from './import-repository.js'
import {addCounts, addWrites, zeroCounts, zeroWrites, type ImportProblem} from './import-counts.js'
import {cleanMediaType} from './import-db.js'
import {pathFor} from '../storage/layout.js'
import {
  listLayerLinks,
  listRevisionLinks,
  listTags,
  readRevision,
  type LinkEntry,
  type ManifestRead,
  type TagEntry,
} from '../storage/repositories.js'

/** Manifest payload bytes a repository may hold in memory to be written in a group. */
const SMALL_REPOSITORY_BYTES = 2 * 1024 * 1024
/** _layers links a repository may hold in memory to be written in a group. */
const SMALL_REPOSITORY_LAYER_LINKS = 5000

/** A repository read whole from storage, waiting to be written with others. */
export interface RepositoryScan {
  kind: 'small'
  name: string
  reads: ManifestRead[]
  revisions: LinkEntry[]
  layerLinks: LinkEntry[]
  tags: TagEntry[]
  unreadable: UnreadableRevision[]
  /** manifests read (parsed or not) */
  manifests: number
  bytes: number
}

/** A repository's _layers links, or undefined once there are more than a small repository holds. */
async function listLayerLinksOfSmall(
  driver: ImportShared['driver'],
  name: string,
  onProblem: (p: ImportProblem) => void,
): Promise<LinkEntry[] | undefined> {
  const links: LinkEntry[] = []
  for await (const link of listLayerLinks(driver, name, onProblem)) {
    links.push(link)
    if (links.length > SMALL_REPOSITORY_LAYER_LINKS) return undefined
  }
  return links
}

/** Too large to hold: imported on its own, streaming, in its own transaction. */
export interface LargeRepository {
  kind: 'large'
  name: string
}

/**
 * Reads a repository whole: its revision links and manifests, _layers links and tags. Problems are
 * reported once the repository is known to be small (a large one is walked again by the streaming
 * path, which reports them). A storage error fails the repository (RepositoryFailure).
 */
export async function scanRepository(shared: ImportShared, name: string): Promise<RepositoryScan | LargeRepository> {
  const {driver} = shared
  const problems: ImportProblem[] = []
  const unreadable: UnreadableRevision[] = []
  const large: LargeRepository = {kind: 'large', name}
  const flush = (): void => {
    for (const p of problems) shared.report(p)
  }
  try {
    const keep = (p: ImportProblem): void => {
      failOnStorage(p)
      problems.push(p)
    }
    const revisions: LinkEntry[] = []
    for await (const link of listRevisionLinks(driver, name, (p) => {
      if (p.kind === 'invalid-key') unreadable.push({key: p.key, digest: p.digest, problem: p.kind, message: p.message})
      keep(p)
    })) {
      revisions.push(link)
      if (revisions.length > shared.batchSize) return large
    }
    shared.signal.throwIfAborted()
    // The _layers links and the tags are listed while the manifests are read: on S3 each listing is a
    // round trip or more of its own, and one after the other they left the connections idle between.
    // Their problems are kept in the order they had when the three ran one after the other.
    const limit = pLimit(shared.concurrency)
    const layerProblems: ImportProblem[] = []
    const tagProblems: ImportProblem[] = []
    const [reads, layerLinks, tags] = await Promise.all([
      Promise.all(revisions.map((link) => limit(() => readRevision(driver, name, link)))),
      listLayerLinksOfSmall(driver, name, (p) => layerProblems.push(p)),
      listTags(driver, name, (p) => tagProblems.push(p), shared.concurrency),
    ])
    let bytes = 0
    for (const read of reads) bytes += read.payload?.length ?? 0
    if (bytes > SMALL_REPOSITORY_BYTES) return large
    for (const read of reads) {
      for (const p of read.problems) keep(p)
      const cause = unreadableOf(read)
      if (cause) unreadable.push(cause)
    }
    for (const p of layerProblems) keep(p)
    if (!layerLinks) return large
    for (const p of tagProblems) keep(p)
    flush()
    return {kind: 'small', name, reads, revisions, layerLinks, tags, unreadable, manifests: reads.length, bytes}
  } catch (error) {
    flush()
    throw error
  }
}

/**
 * Writes a group of scanned repositories: their shared rows first (autocommit), then everything they
 * own in one transaction. Returns each repository's outcome; the group's totals are on its last one.
 */
export async function writeGroup(
  shared: ImportShared & {db: Db},
  scans: RepositoryScan[],
): Promise<Map<string, RepositoryOutcome>> {
  const {db, driver} = shared
  const counts = zeroCounts()
  const written = zeroWrites()
  const {repositories, createdNamespaces} = await ensureRepositories(
    db,
    scans.map((s) => s.name),
    shared.namespaces,
  )
  written.namespaces += createdNamespaces
  const repos = scans.map((s) => repositories.get(s.name)!)
  for (const repo of repos) if (!repo.existed) written.repositories++
  counts.repositories = scans.length

  const parsed: Array<ParsedRead & {repo: GroupRepository}> = []
  for (const [i, scan] of scans.entries())
    for (const read of scan.reads)
      if (read.manifest && read.payload)
        parsed.push({read, manifest: read.manifest, payload: read.payload, repo: repos[i]})
  const mediaTypes = shared.mediaTypes!
  if (parsed.length > 0) written.mediaTypes += await resolveMediaTypes(shared, mediaTypes, parsed)

  // Blob rows of every manifest, config, layer and _layers link of the group, in one statement.
  const wants = new Map<string, BlobWant>()
  const wantedBy = new Map<string, Set<string>>()
  const want = (repository: string, digest: string, size: number | undefined, mediaTypeId: number | null): void => {
    let mine = wantedBy.get(repository)
    if (!mine) wantedBy.set(repository, (mine = new Set()))
    mine.add(digest)
    const prev = wants.get(digest)
    if (!prev) {
      wants.set(digest, {size, mediaTypeId, linkOnly: false})
      return
    }
    if (prev.size === undefined) prev.size = size
    if (mediaTypeId !== null && (prev.mediaTypeId === null || mediaTypeId < prev.mediaTypeId))
      prev.mediaTypeId = mediaTypeId
  }
  for (const {manifest: m, read, payload} of parsed) {
    want(read.repository, read.digest, payload.length, mediaTypes.id(manifestMediaType(m)))
    if (m.config)
      want(
        read.repository,
        m.config.digest,
        validSize(m.config.size),
        mediaTypes.idOrNull(cleanMediaType(m.config.mediaType)),
      )
    for (const l of m.layers)
      want(read.repository, l.digest, validSize(l.size), mediaTypes.id(layerMediaType(m, l.mediaType)))
  }
  for (const scan of scans)
    for (const link of scan.layerLinks)
      if (!wants.has(link.digest)) wants.set(link.digest, {mediaTypeId: null, linkOnly: true})
  const known = await ensureBlobs(db, driver, wants, shared.concurrency, shared.blobListingJobId)
  for (const blob of known.values()) {
    if (!blob.inserted) continue
    written.blobs++
    counts.blobs++
    shared.live.blobs++
  }
  for (const [repository, digests] of wantedBy)
    for (const digest of digests) {
      if (known.get(digest)?.present !== false) continue
      shared.report({
        kind: 'missing-blob',
        key: pathFor({kind: 'blob-data', digest}),
        repository,
        digest,
        message: `referenced blob ${digest} is not in storage: recorded with the size its descriptor gives`,
      })
    }

  await db.transaction(async (client) => {
    const rows: GroupManifestRow[] = parsed.map(({manifest, read, payload, repo}) => ({
      ...manifestRow(mediaTypes, manifest, read, payload),
      repo,
    }))
    const {ids, inserted} = await upsertGroupManifests(client, rows)
    written.manifests += inserted.size
    counts.manifests += parsed.length
    shared.live.manifests += parsed.length
    const layers: GroupLayerRow[] = []
    const edges: Array<{repo: GroupRepository; parentId: string; parentDigest: string; childDigest: string}> = []
    for (const {manifest: m, read, repo} of parsed) {
      const key = manifestKey(repo.repositoryId, read.digest)
      const id = ids.get(key)!
      counts.layers += m.layers.length
      if (inserted.has(key))
        m.layers.forEach((l, position) =>
          layers.push({
            repo,
            manifestId: id,
            position,
            digest: l.digest,
            size: validSize(l.size) || known.get(l.digest)?.size || 0,
            mediaTypeId: mediaTypes.id(layerMediaType(m, l.mediaType)),
          }),
        )
      for (const child of m.manifests)
        edges.push({repo, parentId: id, parentDigest: read.digest, childDigest: child.digest})
    }
    written.layers += await insertGroupLayers(client, layers)

    // _layers links → repository_blobs; a link to a blob storage does not have is reported, not imported
    const links: Array<{repo: GroupRepository; digest: string; createdAt: Date}> = []
    for (const [i, scan] of scans.entries())
      for (const l of scan.layerLinks) {
        if (known.has(l.digest)) links.push({repo: repos[i], digest: l.digest, createdAt: l.lastModified})
        else
          shared.report({
            kind: 'dangling-layer-link',
            key: l.key,
            repository: scan.name,
            digest: l.digest,
            message: `_layers link to ${l.digest}, whose blob data is not in storage: not imported`,
          })
      }
    written.repositoryBlobs += await insertGroupRepositoryBlobs(client, links)
    counts.repositoryBlobs += links.length

    // tags: a tag whose manifest is not in the repository is reported, not imported
    const tags = scans.flatMap((scan, i) =>
      scan.tags
        .filter((t) => t.digest !== undefined)
        .map((t) => ({repo: repos[i], name: t.tag, digest: t.digest!, createdAt: t.lastModified, key: t.key})),
    )
    const tagResult = await upsertGroupTags(client, tags)
    written.tagsInserted += tagResult.inserted
    written.tagsUpdated += tagResult.updated
    counts.tags += tags.length - tagResult.dangling.size
    for (const t of tags) {
      if (!tagResult.dangling.has(`${t.repo.repositoryId} ${t.name}`)) continue
      shared.report({
        kind: 'dangling-tag',
        key: t.key,
        repository: t.repo.name,
        digest: t.digest,
        message: `tag ${t.name} points at ${t.digest}, which is not a manifest of ${t.repo.name}: not imported`,
      })
    }

    // a re-import removes what storage no longer has
    const prune = scans
      .map((scan, i) => ({scan, repo: repos[i]}))
      .filter(({repo}) => repo.existed)
      .map(({scan, repo}) => ({
        repo,
        tags: scan.tags
          .filter((t) => t.digest === undefined || !tagResult.dangling.has(`${repo.repositoryId} ${t.tag}`))
          .map((t) => t.tag),
        manifests: scan.revisions.map((l) => l.digest),
        layerLinks: scan.layerLinks.map((l) => l.digest),
      }))
    const deleted = await pruneGroup(client, prune)
    written.deleted.manifests += deleted.manifests
    written.deleted.tags += deleted.tags
    written.deleted.repositoryBlobs += deleted.repositoryBlobs

    // after the prune: an edge to a child whose revision link is gone since the last import is dangling now
    const refs = await insertGroupReferences(client, repos, edges)
    counts.references += refs.resolved
    written.references += refs.inserted + refs.danglingInserted
    const nameOf = new Map(repos.map((r) => [r.repositoryId, r.name]))
    for (const m of refs.missing) {
      const name = nameOf.get(m.repositoryId)!
      shared.report({
        kind: 'missing-child',
        key: pathFor({kind: 'blob-data', digest: m.parentDigest}),
        repository: name,
        digest: m.parentDigest,
        message: `index references ${m.childDigest}, which is not a manifest of ${name}: edge kept as dangling (the child's manifest blob stays referenced)`,
      })
    }

    const unreadable: GroupUnreadableRow[] = scans.flatMap((scan, i) =>
      scan.unreadable.map((u) => ({...u, repo: repos[i]})),
    )
    await replaceGroupUnreadableRevisions(client, repos, unreadable)
  })

  const outcomes = new Map<string, RepositoryOutcome>()
  for (const scan of scans) outcomes.set(scan.name, {counts: {...zeroCounts(), repositories: 1}, written: zeroWrites()})
  const last = outcomes.get(scans[scans.length - 1].name)!
  addCounts(last.counts, {...counts, repositories: 0})
  addWrites(last.written, written)
  return outcomes
}
