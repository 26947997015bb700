import {createHash} from 'node:crypto'
import pLimit from 'p-limit'
import type {StorageDriver} from '../storage/driver.js'
import {pathFor} from '../storage/layout.js'
import {MediaTypes} from '../storage/manifest.js'

export function sha256(content: Buffer): string {
  return `sha256:${createHash('sha256').update(content).digest('hex')}`
}

/** Deterministic pseudo-random bytes from a seed (sha256 in counter mode): same seed, same blob. */
export function seededBytes(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size)
  for (let offset = 0, counter = 0; offset < size; counter++) {
    const block = createHash('sha256').update(`${seed}:${counter}`).digest()
    offset += block.copy(out, offset)
  }
  return out
}

export interface WrittenImage {
  repository: string
  tag?: string
  manifestDigest: string
  configDigest: string
  layerDigests: string[]
  /** every blob the image keeps alive, manifest included */
  blobs: string[]
}

/**
 * Writes registry content straight into the distribution layout (what a push leaves behind), without a
 * registry: for the quickstart's sample registry, benchmarks and tests that need large stores fast.
 */
export class LayoutWriter {
  private readonly limit
  constructor(
    readonly driver: StorageDriver,
    concurrency = 32,
  ) {
    this.limit = pLimit(concurrency)
  }

  async putBlob(content: Buffer): Promise<string> {
    const digest = sha256(content)
    await this.limit(() => this.driver.write(pathFor({kind: 'blob-data', digest}), content))
    return digest
  }

  async link(key: string, digest: string): Promise<void> {
    await this.limit(() => this.driver.write(key, Buffer.from(digest)))
  }

  async linkLayer(repository: string, digest: string): Promise<void> {
    await this.link(pathFor({kind: 'layer-link', repository, digest}), digest)
  }

  /** Puts a manifest blob and its revision link, and points the tag at it when given. */
  async putManifest(repository: string, payload: Buffer, tag?: string): Promise<string> {
    const digest = await this.putBlob(payload)
    await this.link(pathFor({kind: 'manifest-revision-link', repository, digest}), digest)
    if (tag) await this.tag(repository, tag, digest)
    return digest
  }

  async tag(repository: string, tag: string, digest: string): Promise<void> {
    await Promise.all([
      this.link(pathFor({kind: 'tag-current-link', repository, tag}), digest),
      this.link(pathFor({kind: 'tag-index-link', repository, tag, digest}), digest),
    ])
  }

  /** A single-platform image: config, layers (new ones from the seed, plus any shared ones), manifest. */
  async writeImage(spec: {
    repository: string
    tag?: string
    seed: string
    layers: number
    layerSize: number
    sharedLayers?: Buffer[]
    platform?: {os: string; architecture: string}
    oci?: boolean
  }): Promise<WrittenImage> {
    const layerContents = [
      ...(spec.sharedLayers ?? []),
      ...Array.from({length: spec.layers}, (_, i) => seededBytes(`${spec.seed}:layer:${i}`, spec.layerSize)),
    ]
    const layerDigests = await Promise.all(layerContents.map((content) => this.putBlob(content)))
    await Promise.all(layerDigests.map((digest) => this.linkLayer(spec.repository, digest)))
    const platform = spec.platform ?? {os: 'linux', architecture: 'amd64'}
    const config = Buffer.from(
      JSON.stringify({
        architecture: platform.architecture,
        os: platform.os,
        rootfs: {type: 'layers', diff_ids: layerDigests},
        config: {},
        created: '2026-01-01T00:00:00Z',
        seed: spec.seed,
      }),
    )
    const configDigest = await this.putBlob(config)
    await this.linkLayer(spec.repository, configDigest)
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: spec.oci ? MediaTypes.ociManifest : MediaTypes.dockerManifest,
        config: {
          mediaType: spec.oci ? MediaTypes.ociConfig : MediaTypes.dockerConfig,
          size: config.length,
          digest: configDigest,
        },
        layers: layerContents.map((content, i) => ({
          mediaType: spec.oci ? MediaTypes.ociLayerGzip : MediaTypes.dockerLayer,
          size: content.length,
          digest: layerDigests[i],
        })),
      }),
    )
    const manifestDigest = await this.putManifest(spec.repository, manifest, spec.tag)
    return {
      repository: spec.repository,
      tag: spec.tag,
      manifestDigest,
      configDigest,
      layerDigests,
      blobs: [manifestDigest, configDigest, ...layerDigests],
    }
  }

  /** A multi-platform index over images already written to the same repository. */
  async writeIndex(
    repository: string,
    tag: string | undefined,
    children: WrittenImage[],
    platforms: Array<{os: string; architecture: string}>,
  ): Promise<string> {
    const payload = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.ociIndex,
        manifests: await Promise.all(
          children.map(async (child, i) => {
            const info = await this.driver.stat(pathFor({kind: 'blob-data', digest: child.manifestDigest}))
            return {
              mediaType: MediaTypes.dockerManifest,
              size: info?.size ?? 0,
              digest: child.manifestDigest,
              platform: platforms[i],
            }
          }),
        ),
      }),
    )
    return this.putManifest(repository, payload, tag)
  }

  /** A blob uploaded to a repository whose manifest never came (an orphan once old enough). */
  async writeOrphan(repository: string | undefined, seed: string, size: number): Promise<string> {
    const digest = await this.putBlob(seededBytes(`${seed}:orphan`, size))
    if (repository) await this.linkLayer(repository, digest)
    return digest
  }
}
