import {randomUUID} from 'node:crypto'
import {readdir, utimes} from 'node:fs/promises'
import {join} from 'node:path'
import type {StorageDriver} from '../storage/driver.js'
import {pathFor} from '../storage/layout.js'
import {LayoutWriter, seededBytes} from '../sample/layout-writer.js'

export interface PlantedOrphan {
  digest: string
  why: string
}

export interface SampleRegistry {
  repositories: string[]
  tags: Array<{repository: string; tag: string; digest: string}>
  /** blobs nothing references, older than a day: what a sweep must find, exactly */
  orphans: PlantedOrphan[]
  /** a layer pushed minutes ago whose manifest has not come yet: its young _layers link protects it */
  inFlight: string
  /** an upload still being written (`_uploads/<uuid>`): not a blob yet, so only `sweep uploads` sees it */
  upload: {repository: string; uuid: string; bytes: number}
}

/**
 * A small registry in the distribution layout with known orphans: two tags sharing layers, a
 * multi-arch index whose children share a base layer, an image whose manifest was deleted through the
 * API (its manifest, config and own layer are orphans), and blobs uploaded but never referenced.
 */
export async function writeSampleRegistry(driver: StorageDriver, root: string | undefined): Promise<SampleRegistry> {
  const w = new LayoutWriter(driver, 16)
  const base = seededBytes('sample:base-layer', 4096)
  const tags: SampleRegistry['tags'] = []
  const orphans: PlantedOrphan[] = []

  const nginx1 = await w.writeImage({
    repository: 'library/nginx',
    tag: '1.25',
    seed: 'nginx-1.25',
    layers: 2,
    layerSize: 2048,
    sharedLayers: [base],
  })
  const nginx2 = await w.writeImage({
    repository: 'library/nginx',
    tag: 'latest',
    seed: 'nginx-1.27',
    layers: 1,
    layerSize: 2048,
    sharedLayers: [base],
  })
  tags.push(
    {repository: 'library/nginx', tag: '1.25', digest: nginx1.manifestDigest},
    {repository: 'library/nginx', tag: 'latest', digest: nginx2.manifestDigest},
  )

  const amd64 = await w.writeImage({
    repository: 'team/api',
    seed: 'api-amd64',
    layers: 1,
    layerSize: 1024,
    sharedLayers: [base],
    platform: {os: 'linux', architecture: 'amd64'},
    oci: true,
  })
  const arm64 = await w.writeImage({
    repository: 'team/api',
    seed: 'api-arm64',
    layers: 1,
    layerSize: 1024,
    sharedLayers: [base],
    platform: {os: 'linux', architecture: 'arm64'},
    oci: true,
  })
  const index = await w.writeIndex(
    'team/api',
    'v1',
    [amd64, arm64],
    [
      {os: 'linux', architecture: 'amd64'},
      {os: 'linux', architecture: 'arm64'},
    ],
  )
  tags.push({repository: 'team/api', tag: 'v1', digest: index})

  // An image whose manifest was deleted through the registry API: distribution removes the revision
  // link and the tag, and leaves every blob behind.
  const deleted = await w.writeImage({
    repository: 'team/api',
    tag: 'v0',
    seed: 'api-v0',
    layers: 1,
    layerSize: 3000,
    sharedLayers: [base],
  })
  await driver.deleteMany([
    pathFor({kind: 'manifest-revision-link', repository: 'team/api', digest: deleted.manifestDigest}),
    pathFor({kind: 'tag-current-link', repository: 'team/api', tag: 'v0'}),
    pathFor({kind: 'tag-index-link', repository: 'team/api', tag: 'v0', digest: deleted.manifestDigest}),
  ])
  orphans.push(
    {digest: deleted.manifestDigest, why: 'manifest of team/api:v0, deleted through the API'},
    {digest: deleted.configDigest, why: 'config of the deleted team/api:v0'},
    {digest: deleted.layerDigests[1], why: 'layer only the deleted team/api:v0 used'},
  )

  const ci = await w.writeImage({repository: 'tools/ci', tag: 'stable', seed: 'ci', layers: 2, layerSize: 1500})
  tags.push({repository: 'tools/ci', tag: 'stable', digest: ci.manifestDigest})
  orphans.push(
    {
      digest: await w.writeOrphan('tools/ci', 'abandoned-push-1', 5000),
      why: 'uploaded to tools/ci, no manifest ever came',
    },
    {
      digest: await w.writeOrphan('tools/ci', 'abandoned-push-2', 7000),
      why: 'uploaded to tools/ci, no manifest ever came',
    },
    {digest: await w.writeOrphan(undefined, 'stray', 900), why: 'in the blob store with no link at all'},
  )

  // Everything so far happened three days ago.
  if (root) await ageTree(root, new Date(Date.now() - 3 * 86_400_000))
  const inFlight = await w.writeOrphan('tools/ci', 'push-in-progress', 4000)
  const upload = {repository: 'tools/ci', uuid: randomUUID(), bytes: 2500}
  await driver.write(pathFor({kind: 'upload-started-at', ...upload}), Buffer.from(new Date().toISOString()))
  await driver.write(pathFor({kind: 'upload-data', ...upload}), seededBytes('upload-in-progress', upload.bytes))
  orphans.sort((a, b) => (a.digest < b.digest ? -1 : 1))
  return {repositories: ['library/nginx', 'team/api', 'tools/ci'], tags, orphans, inFlight, upload}
}

/** Sets the modification time of every file and directory below `dir`. */
export async function ageTree(dir: string, when: Date): Promise<void> {
  for (const entry of await readdir(dir, {withFileTypes: true})) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) await ageTree(path, when)
    await utimes(path, when, when)
  }
}
