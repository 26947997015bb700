import pLimit from 'p-limit'
import {zeroCounts, zeroWrites} from './import-counts.js'
import type {ImportShared, RepositoryOutcome} from './import-repository.js'
import {pathFor} from '../storage/layout.js'
import {listLayerLinks, listRevisionLinks, listTags, readRevision, type LinkEntry} from '../storage/repositories.js'

/** The walk without a database: counts what an import would find, and every problem. */
export async function dryRunRepository(shared: ImportShared, name: string): Promise<RepositoryOutcome> {
  const {driver} = shared
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
    shared.signal.throwIfAborted()
    const reads = await Promise.all(links.map((link) => readLimit(() => readRevision(driver, name, link))))
    for (const read of reads) {
      for (const p of read.problems) shared.report(p)
      const m = read.manifest
      if (!m) continue
      if (m.class === 'unknown') {
        shared.report({
          kind: 'unknown-media-type',
          key: pathFor({kind: 'blob-data', digest: read.digest}),
          repository: name,
          digest: read.digest,
          message: `manifest media type '${m.mediaType}' is not one regops knows`,
        })
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
    else if (!manifests.has(child))
      shared.report({
        kind: 'missing-child',
        key: pathFor({kind: 'blob-data', digest: parent}),
        repository: name,
        digest: parent,
        message: `index references ${child}, which is not a manifest of ${name}: edge kept as dangling (the child's manifest blob stays referenced)`,
      })
  }
  const tags = await listTags(driver, name, shared.report, shared.concurrency)
  for (const t of tags) {
    if (t.digest === undefined) continue
    if (manifests.has(t.digest)) counts.tags++
    else
      shared.report({
        kind: 'dangling-tag',
        key: t.key,
        repository: name,
        digest: t.digest,
        message: `tag ${t.tag} points at ${t.digest}, which is not a manifest of ${name}`,
      })
  }
  counts.blobs = blobs.size
  shared.live.blobs += blobs.size
  return {counts, written: zeroWrites()}
}
