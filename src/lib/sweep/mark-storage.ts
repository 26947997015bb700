import pLimit from 'p-limit'
import {RegionUnavailableError, type StorageDriver} from '../storage/driver.js'
import {REPOSITORIES_PREFIX} from '../storage/layout.js'
import {anySignal} from '../jobs/signals.js'
import {
  listRepositoryGroups,
  problemOf,
  readRevision,
  readTagLinks,
  type ManifestRead,
  type Problem,
  type RepositoryKeys,
} from '../storage/repositories.js'

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
  /** with deleteUntagged: referrers (signatures, SBOMs: manifests whose subject is kept) are untagged too */
  deleteReferrers?: boolean
  /**
   * with deleteUntagged under --shard: the repositories whose untagged manifests this worker deletes (as
   * import shards them). Another worker's are marked as if kept, so this one never removes a blob that
   * a manifest the owner may yet fail to delete still references; such blobs go in a later run.
   */
  ownsRepository?: (repository: string) => boolean
  /** a shard of a sharded mark: only these repositories are walked (the other shards walk the rest) */
  walksRepository?: (repository: string) => boolean
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
  const signal = opts.signal ? anySignal([opts.signal, stop.signal]) : stop.signal
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
          for await (const group of listRepositoryGroups(driver, namespace, opts.onProblem, {
            signal,
            tags: opts.deleteUntagged,
          })) {
            if (opts.walksRepository && !opts.walksRepository(group.repository)) continue
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
    const reads = await Promise.all(
      revisions.map((link) => readLimit(() => readRevision(driver, repository, link, {verifyLink: false}))),
    )
    result.manifests += reads.length

    let keep = (_digest: string) => true
    if (opts.deleteUntagged && !opts.since && (opts.ownsRepository?.(repository) ?? true)) {
      const tags = await readTagLinks(driver, repository, group.tagLinks, problem)
      // An unreadable tag may point at any manifest: keep them all.
      const kept = tags.some((t) => t.digest === undefined) ? undefined : keptManifests(tags, reads, opts)
      const byDigest = new Map(reads.map((r) => [r.digest, r]))
      keep = (digest) => {
        if (!kept || kept.has(digest)) return true
        const read = byDigest.get(digest)!
        result.untagged.push({
          repository,
          digest,
          revisionKey: read.revisionKey,
          lastModified: read.revisionModified.toISOString(),
        })
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

/**
 * The manifests of one repository that --delete-untagged keeps: what its tags reach through index
 * children, to any depth, and what young or unreadable revisions reach (a young one may be an index
 * still being pushed; an unreadable one is unknown). Unless `deleteReferrers`, a manifest whose subject
 * is kept is kept too, with what it reaches (a signature of an SBOM of a tagged image). The mark and the
 * re-check before acting both decide with this.
 */
export function keptManifests(
  tags: Array<{digest?: string}>,
  reads: Array<Pick<ManifestRead, 'digest' | 'revisionModified' | 'problems' | 'manifest'>>,
  opts: {cutoff: Date; deleteReferrers?: boolean},
): Set<string> {
  const byDigest = new Map(reads.map((r) => [r.digest, r]))
  const kept = new Set<string>()
  const reach = (roots: string[]) => {
    const stack = [...roots]
    while (stack.length > 0) {
      const digest = stack.pop()!
      if (kept.has(digest)) continue
      kept.add(digest)
      // Children of a kept index are kept (distribution's -m forgot this: issue #3178).
      for (const child of byDigest.get(digest)?.manifest?.manifests ?? []) stack.push(child.digest)
    }
  }
  reach(tags.map((t) => t.digest).filter((d): d is string => d !== undefined))
  reach(reads.filter((r) => r.revisionModified >= opts.cutoff || r.problems.length > 0).map((r) => r.digest))
  if (!opts.deleteReferrers) {
    for (let grew = true; grew;) {
      grew = false
      for (const read of reads) {
        const subject = read.manifest?.subject?.digest
        if (subject === undefined || kept.has(read.digest) || !kept.has(subject)) continue
        reach([read.digest])
        grew = true
      }
    }
  }
  return kept
}
