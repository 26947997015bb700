import type {DbClient} from './db.js'
import {
  cleanMediaType,
  ensureBlobs,
  insertLayers,
  MediaTypeIds,
  upsertManifests,
  type BlobKnown,
  type BlobWant,
  type LayerRow,
  type ManifestRow,
  type RepositoryRow,
} from './import-db.js'
import {addEdges} from './import-db-repository.js'
import type {ImportCounts, ImportWrites} from './import-counts.js'
import {failOnStorage, type ImportShared} from './import-repository.js'
import {pathFor} from '../storage/layout.js'
import {MediaTypes, type ParsedManifest} from '../storage/manifest.js'
import type {ManifestRead} from '../storage/repositories.js'

export interface ParsedRead {
  read: ManifestRead
  manifest: ParsedManifest
  payload: Buffer
}

/** The media type a manifest is recorded under (an OCI manifest when the payload names none it could). */
export function manifestMediaType(m: ParsedManifest): string {
  return cleanMediaType(m.mediaType) ?? MediaTypes.ociManifest
}

export function layerMediaType(m: ParsedManifest, mediaType: string | undefined): string {
  if (mediaType !== undefined) return cleanMediaType(mediaType)!
  return m.class === 'schema1' ? MediaTypes.dockerLayer : 'application/octet-stream'
}

export function validSize(size: number | undefined): number | undefined {
  return size !== undefined && Number.isSafeInteger(size) && size >= 0 ? size : undefined
}

/**
 * Writes a batch of manifest reads of one repository: media types, blobs, manifests, layers, and the
 * index → child edges (resolved once the whole repository is in). Returns the number of edges.
 */
export async function writeManifests(
  shared: ImportShared,
  client: DbClient,
  repo: RepositoryRow,
  reads: ManifestRead[],
  counts: ImportCounts,
  written: ImportWrites,
): Promise<number> {
  const parsed: ParsedRead[] = []
  for (const read of reads) {
    for (const p of read.problems) {
      failOnStorage(p)
      shared.report(p)
    }
    if (read.manifest && read.payload) parsed.push({read, manifest: read.manifest, payload: read.payload})
  }
  if (parsed.length === 0) return 0
  const mediaTypes = shared.mediaTypes!
  written.mediaTypes += await resolveMediaTypes(shared, mediaTypes, parsed)
  const known = await ensureManifestBlobs(shared, mediaTypes, parsed, counts, written)
  const {ids, inserted} = await upsertManifests(
    client,
    repo,
    parsed.map(({manifest, read, payload}) => manifestRow(mediaTypes, manifest, read, payload)),
  )
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
        const size = validSize(l.size) || known.get(l.digest)?.size || 0
        layers.push({
          manifestId: id,
          position,
          digest: l.digest,
          size,
          mediaTypeId: mediaTypes.id(layerMediaType(m, l.mediaType)),
        })
      })
    }
    for (const child of m.manifests) edges.push({parentId: id, parentDigest: read.digest, childDigest: child.digest})
  }
  written.layers += await insertLayers(client, repo, layers)
  return addEdges(client, edges)
}

/** Media types of the batch (unknown ones are inserted); returns how many were new. */
export async function resolveMediaTypes(
  shared: ImportShared,
  mediaTypes: MediaTypeIds,
  parsed: ParsedRead[],
): Promise<number> {
  const types = new Set<string>()
  for (const {manifest: m, read} of parsed) {
    types.add(manifestMediaType(m))
    if (m.class === 'unknown') {
      shared.report({
        kind: 'unknown-media-type',
        key: pathFor({kind: 'blob-data', digest: read.digest}),
        repository: read.repository,
        digest: read.digest,
        message: `manifest media type '${m.mediaType}' is not one regops knows: imported with its descriptors, media type recorded`,
      })
    }
    if (m.config?.mediaType) types.add(cleanMediaType(m.config.mediaType)!)
    for (const l of m.layers) types.add(layerMediaType(m, l.mediaType))
  }
  await mediaTypes.resolve(types)
  const added = mediaTypes.added
  mediaTypes.added = 0
  return added
}

/** Blob rows of every manifest blob, config and layer of the batch; reports those not in storage. */
async function ensureManifestBlobs(
  shared: ImportShared,
  mediaTypes: MediaTypeIds,
  parsed: ParsedRead[],
  counts: ImportCounts,
  written: ImportWrites,
): Promise<Map<string, BlobKnown>> {
  const wants = new Map<string, BlobWant>()
  const want = (digest: string, size: number | undefined, mediaTypeId: number | null): void => {
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
    want(read.digest, payload.length, mediaTypes.id(manifestMediaType(m)))
    if (m.config)
      want(m.config.digest, validSize(m.config.size), mediaTypes.idOrNull(cleanMediaType(m.config.mediaType)))
    for (const l of m.layers) want(l.digest, validSize(l.size), mediaTypes.id(layerMediaType(m, l.mediaType)))
  }
  const known = await ensureBlobs(shared.db!, shared.driver, wants, shared.concurrency, shared.blobListingJobId)
  const repository = parsed[0].read.repository
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
        repository,
        digest,
        message: `referenced blob ${digest} is not in storage: recorded with the size its descriptor gives`,
      })
    }
  }
  return known
}

export function manifestRow(
  mediaTypes: MediaTypeIds,
  m: ParsedManifest,
  read: ManifestRead,
  payload: Buffer,
): ManifestRow {
  return {
    digest: read.digest,
    mediaTypeId: mediaTypes.id(manifestMediaType(m)),
    schemaVersion: m.class === 'schema1' || m.schemaVersion === 1 ? 1 : 2,
    payload,
    configDigest: m.config?.digest ?? null,
    configMediaTypeId: mediaTypes.idOrNull(cleanMediaType(m.config?.mediaType)),
    subjectDigest: m.subject?.digest ?? null,
    createdAt: read.revisionModified,
  }
}
