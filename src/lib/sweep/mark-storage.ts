import pLimit from 'p-limit'
import {RegionUnavailableError, type StorageDriver} from '../storage/driver.js'
import {REPOSITORIES_PREFIX} from '../storage/layout.js'
import {listRepositoryGroups, problemOf, readRevision, readTagLinks, type Problem, type RepositoryKeys} from '../storage/repositories.js'

export type MarkReason = 'manifest' | 'reference' | 'young-link'

export interface UntaggedManifest {
  repository: string
  digest: string
  revisionKey: string
  lastModified: string
}

export interface StorageMarkOptions {
  /** links younger than this protect their blob (an upload may be about to get its manifest) */
  cutoff: Date
  /** only revisions and links modified at or after this instant are read (the re-check before acting) */
  since?: Date
  /** untagged manifests (not reachable from a tag through index children) are left unmarked and reported */
  deleteUntagged?: boolean
  concurrency: number
  signal?: AbortSignal
  /** `source`: the repository (and the manifest) whose link or manifest marked it */
  mark: (digest: string, reason: MarkReason, source: MarkSource) => void
  onProblem: (problem: Problem) => void
}

export interface MarkSource {
  repository: string
  /** the manifest whose reference it is; null for a young _layers link */
  manifest: string | null
}

export interface StorageMarkResult {
  repositories: number
  manifests: number
  youngLinks: number
  untagged: UntaggedManifest[]
}

/**
 * The mark phase of the `storage` strategy: every repository's manifest revisions are read and every
 * digest they reference is marked; so is every blob with a `_layers` link newer than the cutoff.
 * Repositories are walked in parallel, and within one repository manifests are read in parallel.
 */
export async function markFromStorage(driver: StorageDriver, opts: StorageMarkOptions): Promise<StorageMarkResult> {
  const result: StorageMarkResult = {repositories: 0, manifests: 0, youngLinks: 0, untagged: []}
  const namespaceLimit = pLimit(Math.max(1, Math.min(16, Math.ceil(opts.concurrency / 4))))
  const readLimit = pLimit(opts.concurrency)
  // One flat listing per top-level namespace, namespaces in parallel: repositories are grouped from
  // the sorted keys, and each group's manifests are read while the listing goes on.
  const namespaces: string[] = []
  try {
    for await (const dir of driver.listDirectories(REPOSITORIES_PREFIX, {signal: opts.signal})) namespaces.push(dir)
  } catch (error) {
    if (error instanceof RegionUnavailableError) throw error
    opts.onProblem(problemOf(error, 'storage-error', REPOSITORIES_PREFIX))
    return result
  }
  // A region that cannot be read stops the mark at the first sign, as one error: as a problem per
  // namespace and repository it would read like a finding, repeated, after every retry budget ran out.
  const stop = new AbortController()
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal
  let regionFailure: RegionUnavailableError | undefined
  const failed = (error: unknown): boolean => {
    if (opts.signal?.aborted) throw error
    if (error instanceof RegionUnavailableError) {
      regionFailure ??= error
      stop.abort(error)
    }
    return regionFailure !== undefined
  }
  const markOpts = {...opts, signal}
  await Promise.all(
    namespaces.map((namespace) =>
      namespaceLimit(async () => {
        const pending: Array<Promise<void>> = []
        try {
          for await (const group of listRepositoryGroups(driver, namespace, opts.onProblem, {signal, tags: opts.deleteUntagged})) {
            result.repositories++
            pending.push(markRepository(driver, group, markOpts, readLimit, result, failed))
            // Bounded: at most a few repositories read behind the listing.
            if (pending.length >= 8) await pending.shift()
          }
        } catch (error) {
          if (!failed(error)) opts.onProblem(problemOf(error, 'storage-error', namespace))
        }
        await Promise.all(pending)
      }),
    ),
  )
  if (regionFailure) throw regionFailure
  return result
}

async function markRepository(
  driver: StorageDriver,
  group: RepositoryKeys,
  opts: StorageMarkOptions,
  readLimit: ReturnType<typeof pLimit>,
  result: StorageMarkResult,
  failed: (error: unknown) => boolean,
): Promise<void> {
  opts.signal?.throwIfAborted()
  const {repository} = group
  const problem = (p: Problem) => opts.onProblem(p)
  try {
    // Young _layers links protect their blobs: a push links its layers before it puts the manifest.
    for (const link of group.layerLinks) {
      if (link.lastModified >= opts.cutoff) {
        opts.mark(link.digest, 'young-link', {repository, manifest: null})
        result.youngLinks++
      }
    }
    const revisions = opts.since ? group.revisions.filter((link) => link.lastModified >= opts.since!) : group.revisions
    // The digest in a revision link's path is what the mark needs; the link's content is not read
    // (import validates it). A corrupt link still keeps its manifest, which is the safe side.
    const reads = await Promise.all(revisions.map((link) => readLimit(() => readRevision(driver, repository, link, {verifyLink: false}))))
    result.manifests += reads.length

    let keep = (_digest: string) => true
    if (opts.deleteUntagged && !opts.since) {
      const tags = await readTagLinks(driver, repository, group.tagLinks, problem)
      const byDigest = new Map(reads.map((r) => [r.digest, r]))
      const reachable = new Set<string>()
      const stack = tags.map((t) => t.digest).filter((d): d is string => d !== undefined)
      while (stack.length > 0) {
        const digest = stack.pop()!
        if (reachable.has(digest)) continue
        reachable.add(digest)
        // Children of a tagged index are reachable (distribution's -m forgot this: issue #3178).
        for (const child of byDigest.get(digest)?.manifest?.manifests ?? []) stack.push(child.digest)
      }
      keep = (digest) => {
        if (reachable.has(digest)) return true
        const read = byDigest.get(digest)!
        // Young manifests may be the children of an index still being pushed; unreadable ones are unknown.
        if (read.revisionModified >= opts.cutoff || read.problems.length > 0 || tags.some((t) => t.digest === undefined)) return true
        result.untagged.push({repository, digest, revisionKey: read.revisionKey, lastModified: read.revisionModified.toISOString()})
        return false
      }
    }
    for (const read of reads) {
      for (const p of read.problems) problem(p)
      if (!keep(read.digest)) continue
      const source = {repository, manifest: read.digest}
      opts.mark(read.digest, 'manifest', source)
      for (const ref of read.manifest?.references ?? []) opts.mark(ref, 'reference', source)
    }
  } catch (error) {
    if (!failed(error)) problem(problemOf(error, 'storage-error', `repositories/${repository}/`, {repository}))
  }
}
