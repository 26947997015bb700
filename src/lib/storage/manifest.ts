import {InvalidInputError} from '../errors.js'
import {isDigest} from './layout.js'

export const MediaTypes = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayer: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
} as const

/** Every media type regops accepts in the Accept header of a manifest request, in preference order. */
export const MANIFEST_ACCEPT = [
  MediaTypes.ociIndex,
  MediaTypes.dockerManifestList,
  MediaTypes.ociManifest,
  MediaTypes.dockerManifest,
  MediaTypes.dockerSchema1Signed,
  MediaTypes.dockerSchema1,
]

export type ManifestClass = 'image' | 'index' | 'schema1' | 'unknown'

export interface Descriptor {
  digest: string
  size: number
  mediaType?: string
}

export interface PlatformDescriptor extends Descriptor {
  platform?: {os?: string; architecture?: string; variant?: string}
}

export interface ParsedManifest {
  digest: string
  mediaType: string
  /** 'unknown' when the media type is not one regops knows; its references are still extracted */
  class: ManifestClass
  schemaVersion?: number
  config?: Descriptor
  layers: Descriptor[]
  /** an index's children (manifests) */
  manifests: PlatformDescriptor[]
  subject?: Descriptor
  /** every digest this manifest references, deduplicated: config, layers, children, subject */
  references: string[]
}

const KNOWN: Record<string, ManifestClass> = {
  [MediaTypes.dockerManifest]: 'image',
  [MediaTypes.ociManifest]: 'image',
  [MediaTypes.dockerManifestList]: 'index',
  [MediaTypes.ociIndex]: 'index',
  [MediaTypes.dockerSchema1]: 'schema1',
  [MediaTypes.dockerSchema1Signed]: 'schema1',
}

/**
 * Parses a manifest payload into its references. Anything that is not JSON, or whose descriptors are
 * malformed, is an InvalidInputError naming the key: the caller reports it and moves on. A manifest
 * of an unknown media type is not an error; every descriptor it carries still counts as a reference,
 * because a sweep that ignores what it does not understand deletes data.
 */
export function parseManifest(payload: Buffer, digest: string, key: string): ParsedManifest {
  let doc: unknown
  try {
    doc = JSON.parse(payload.toString('utf8'))
  } catch {
    throw new InvalidInputError('unparsable manifest: not JSON', key, {code: 'BAD_MANIFEST', details: {digest}})
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new InvalidInputError('unparsable manifest: not a JSON object', key, {
      code: 'BAD_MANIFEST',
      details: {digest},
    })
  }
  const m = doc as Record<string, unknown>
  const schemaVersion = typeof m.schemaVersion === 'number' ? m.schemaVersion : undefined
  let mediaType = typeof m.mediaType === 'string' ? m.mediaType : undefined
  if (!mediaType) {
    // OCI allows mediaType to be absent; infer it the way distribution does.
    if (schemaVersion === 1) mediaType = MediaTypes.dockerSchema1Signed
    else if (Array.isArray(m.manifests)) mediaType = MediaTypes.ociIndex
    else if (m.config && typeof m.config === 'object') mediaType = MediaTypes.ociManifest
    else
      throw new InvalidInputError('unparsable manifest: no mediaType, config or manifests', key, {
        code: 'BAD_MANIFEST',
        details: {digest},
      })
  }
  const descriptor = (value: unknown, field: string): Descriptor => {
    const d = value as Record<string, unknown> | null
    if (!d || typeof d !== 'object' || typeof d.digest !== 'string' || !isDigest(d.digest)) {
      throw new InvalidInputError(`unparsable manifest: ${field} has no valid digest`, key, {
        code: 'BAD_MANIFEST',
        details: {digest},
      })
    }
    return {
      digest: d.digest,
      size: Number(d.size ?? 0),
      mediaType: typeof d.mediaType === 'string' ? d.mediaType : undefined,
    }
  }
  const list = (value: unknown, field: string): unknown[] => {
    if (value === undefined || value === null) return []
    if (!Array.isArray(value))
      throw new InvalidInputError(`unparsable manifest: ${field} is not a list`, key, {
        code: 'BAD_MANIFEST',
        details: {digest},
      })
    return value
  }

  const cls: ManifestClass = KNOWN[mediaType] ?? 'unknown'
  const parsed: ParsedManifest = {
    digest,
    mediaType,
    class: cls,
    schemaVersion,
    layers: [],
    manifests: [],
    references: [],
  }
  if (cls === 'schema1') {
    parsed.layers = list(m.fsLayers, 'fsLayers').map((l, i) => {
      const blobSum = (l as {blobSum?: unknown})?.blobSum
      if (typeof blobSum !== 'string' || !isDigest(blobSum)) {
        throw new InvalidInputError(`unparsable manifest: fsLayers[${i}] has no valid blobSum`, key, {
          code: 'BAD_MANIFEST',
          details: {digest},
        })
      }
      return {digest: blobSum, size: 0}
    })
  } else {
    if (m.config !== undefined) parsed.config = descriptor(m.config, 'config')
    parsed.layers = list(m.layers, 'layers').map((l, i) => descriptor(l, `layers[${i}]`))
    // OCI artifact manifests (and some tools) list blobs under `blobs`.
    parsed.layers.push(...list(m.blobs, 'blobs').map((l, i) => descriptor(l, `blobs[${i}]`)))
    parsed.manifests = list(m.manifests, 'manifests').map((l, i) => {
      const d = descriptor(l, `manifests[${i}]`) as PlatformDescriptor
      const platform = (l as {platform?: unknown}).platform
      if (platform && typeof platform === 'object') {
        const p = platform as Record<string, unknown>
        d.platform = {
          os: typeof p.os === 'string' ? p.os : undefined,
          architecture: typeof p.architecture === 'string' ? p.architecture : undefined,
          variant: typeof p.variant === 'string' ? p.variant : undefined,
        }
      }
      return d
    })
    if (m.subject !== undefined) parsed.subject = descriptor(m.subject, 'subject')
    if (cls === 'image' && !parsed.config)
      throw new InvalidInputError('unparsable manifest: image manifest without config', key, {
        code: 'BAD_MANIFEST',
        details: {digest},
      })
  }
  const refs = new Set<string>()
  if (parsed.config) refs.add(parsed.config.digest)
  for (const l of parsed.layers) refs.add(l.digest)
  for (const c of parsed.manifests) refs.add(c.digest)
  if (parsed.subject) refs.add(parsed.subject.digest)
  parsed.references = [...refs]
  return parsed
}
