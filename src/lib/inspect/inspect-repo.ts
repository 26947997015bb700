import type {StorageDriver} from '../storage/driver.js'
import type {Problem} from '../storage/repositories.js'
import {readRepository} from './repository-view.js'

export interface RepositoryInspection {
  kind: 'inspect-repo'
  repository: string
  region: string
  found: boolean
  tags: Array<{tag: string; digest?: string; lastModified?: string; historyLength: number}>
  manifests: Array<{digest: string; mediaType?: string; tags: string[]; lastModified: string}>
  layerLinks: number
  /** manifest, config and layer bytes summed over every manifest, a blob counted once per manifest using it */
  totalBytes: number
  /** the same bytes with every distinct blob counted once: what the repository holds */
  uniqueBytes: number
  /** the newest revision or tag link: the last push, as storage records it */
  lastPush?: string
  problems: Problem[]
}

/** A repository's tags, manifests, sizes and last push, from storage. */
export async function inspectRepository(driver: StorageDriver, repository: string): Promise<RepositoryInspection> {
  const view = await readRepository(driver, repository)
  const sizes = new Map<string, number>()
  let totalBytes = 0
  const count = (digest: string, size: number) => {
    totalBytes += size
    sizes.set(digest, size)
  }
  for (const read of view.revisions) {
    if (read.payload) count(read.digest, read.payload.length)
    if (read.manifest?.config) count(read.manifest.config.digest, read.manifest.config.size)
    for (const layer of read.manifest?.layers ?? []) count(layer.digest, layer.size)
  }
  const times = [
    ...view.revisions.map((r) => r.revisionModified),
    ...view.tags.flatMap((t) => (t.currentModified ? [t.currentModified] : [])),
  ]
  const lastPush = times.length ? new Date(Math.max(...times.map((t) => t.getTime()))).toISOString() : undefined
  return {
    kind: 'inspect-repo',
    repository,
    region: driver.region,
    found: view.exists,
    tags: view.tags.map((t) => ({
      tag: t.tag,
      digest: t.current,
      lastModified: t.currentModified?.toISOString(),
      historyLength: t.history.length,
    })),
    manifests: view.revisions.map((r) => ({
      digest: r.digest,
      mediaType: r.manifest?.mediaType,
      tags: view.tags.filter((t) => t.current === r.digest).map((t) => t.tag),
      lastModified: r.revisionModified.toISOString(),
    })),
    layerLinks: view.layerLinks.length,
    totalBytes,
    uniqueBytes: [...sizes.values()].reduce((a, b) => a + b, 0),
    ...(lastPush ? {lastPush} : {}),
    problems: view.problems,
  }
}
