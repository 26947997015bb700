import {InternalError, InvalidInputError} from '../errors.js'
import type {Logger} from '../output/logger.js'
import type {StorageDriver} from '../storage/driver.js'
import {ALL_SHARDS, parseKey, type PathSpec} from '../storage/layout.js'
import {problemOf, type Problem} from '../storage/repositories.js'
import {formatListedBlob} from '../sweep/enumerate.js'
import {markFromStorage} from '../sweep/mark-storage.js'
import {mergePrefix} from '../sweep/merge.js'
import {ShardLines} from '../sweep/spill.js'
import {pendingUploadStoreOf} from '../sweep/sweep-uploads.js'
import {attributePrefix, referenceLine, sortedUniqueReferences} from './usage-attribute.js'

export type UsageGrouping = 'namespace' | 'repository'

export interface Usage {
  objects: number
  bytes: number
}

export interface MultipartUsage {
  uploads: number
  parts: number
  bytes: number
}

export interface GroupUsage {
  /** the namespace (first component of the repository name) or the repository */
  name: string
  /** blobs its manifests reference; a blob several groups reference counts in each of them */
  attributed: Usage
  /** blobs only its manifests reference: these partition `totals.referenced` with `totals.shared` */
  exclusive: Usage
  /** its _layers links, manifest revision links and tag links */
  metadata: Usage
  /** objects under its _uploads */
  uploads: Usage
  /** S3: its pending multipart uploads (not in the object listing) */
  multipart: MultipartUsage
}

export interface UsageTotals {
  /** every object the listing of the registry root holds */
  listing: Usage
  /** blob data referenced by a manifest revision of some repository */
  referenced: Usage
  /** the part of `referenced` that more than one group references */
  shared: Usage
  /** blob data no manifest revision references (what a sweep would consider) */
  orphaned: Usage
  /** the part of `orphaned` younger than the sweep's minimum age: a sweep would not take it yet */
  orphanedYoung: Usage
  /** blob data of a digest algorithm the mark does not follow (sha512): neither referenced nor orphaned */
  undecidedBlobs: Usage
  /** links and tags under repositories/ */
  metadata: Usage
  /** objects under repositories' _uploads */
  uploads: Usage
  /** objects under the quarantine prefix */
  quarantined: Usage
  /** keys the layout does not recognise */
  outside: Usage
  /** S3: pending multipart uploads, whose parts are not objects of the listing; counted beside it */
  multipart: MultipartUsage
  /** the categories that partition the listing, as checked before the result is returned */
  invariant: string
}

export interface UsageResult {
  kind: 'report-usage'
  region: string
  by: UsageGrouping
  quarantinePrefix: string
  /** the sweep's minimum age that splits `orphanedYoung` off */
  minAge: string
  totals: UsageTotals
  groups: GroupUsage[]
  /** a handful of keys outside the layout, for a first look */
  outsideSample: string[]
  /** referenced digests whose blob data the listing lacks (broken images) */
  referencedMissing: number
  /** false when a repository could not be read: `referenced` may be too low and `orphaned` too high */
  markComplete: boolean
  problems: Problem[]
  notes: string[]
  durationMs: number
}

export interface UsageOptions {
  driver: StorageDriver
  by: UsageGrouping
  quarantinePrefix: string
  minAge: {ms: number; text: string}
  concurrency: number
  logger: Logger
  signal?: AbortSignal
  now?: Date
  onProgress?: (phase: 'list' | 'merge', objects: number) => void
}

const INVARIANT =
  'listing = referenced + orphaned + undecidedBlobs + metadata + uploads + quarantined + outside (objects and bytes); ' +
  'referenced = shared + the sum of the groups’ exclusive'
const OUTSIDE_SAMPLE = 20
/** A mark that never counts a _layers link as young: usage is about what manifests reference. */
const NO_YOUNG_LINKS = new Date(8.64e15)

/**
 * Storage accounting of one region: every object of one listing of the registry root falls in exactly
 * one category, and the blob data is decided from the sweep's own streams: the storage mark, spilled per
 * two-hex prefix as `<hex> <group>` lines, merged prefix by prefix against the blob listing (the sweep's
 * merge for referenced and orphaned, then the attribution to groups), so memory is one prefix's worth
 * plus one accumulator per group. Read only; a report re-runs from scratch, so there is no job or
 * checkpoint.
 */
export async function reportUsage(opts: UsageOptions): Promise<UsageResult> {
  const started = performance.now()
  const zero = (): Usage => ({objects: 0, bytes: 0})
  const totals: UsageTotals = {
    listing: zero(),
    referenced: zero(),
    shared: zero(),
    orphaned: zero(),
    orphanedYoung: zero(),
    undecidedBlobs: zero(),
    metadata: zero(),
    uploads: zero(),
    quarantined: zero(),
    outside: zero(),
    multipart: {uploads: 0, parts: 0, bytes: 0},
    invariant: INVARIANT,
  }
  const result: UsageResult = {
    kind: 'report-usage',
    region: opts.driver.region,
    by: opts.by,
    quarantinePrefix: opts.quarantinePrefix,
    minAge: opts.minAge.text,
    totals,
    groups: [],
    outsideSample: [],
    referencedMissing: 0,
    markComplete: true,
    problems: [],
    notes: [],
    durationMs: 0,
  }
  const onProblem = (problem: Problem) => {
    result.problems.push(problem)
    opts.logger.warn(problem.message, {key: problem.key})
  }
  const groups = new Map<string, GroupUsage>()
  const group = (repository: string): GroupUsage => {
    const name = opts.by === 'namespace' ? repository.split('/')[0] : repository
    let usage = groups.get(name)
    if (!usage) {
      usage = {
        name,
        attributed: zero(),
        exclusive: zero(),
        metadata: zero(),
        uploads: zero(),
        multipart: {uploads: 0, parts: 0, bytes: 0},
      }
      groups.set(name, usage)
    }
    return usage
  }

  const files = ShardLines.create(ALL_SHARDS, 'usage')
  const blobLines = files.sibling('.blobs')
  const referenceLines = files.sibling('.refs')
  try {
    await Promise.all([
      markFromStorage(opts.driver, {
        cutoff: NO_YOUNG_LINKS,
        concurrency: opts.concurrency,
        signal: opts.signal,
        mark: (digest, _reason, source) => {
          if (!digest.startsWith('sha256:')) return
          const hex = digest.slice(7)
          referenceLines.add(hex.slice(0, 2), referenceLine(hex, group(source.repository).name))
        },
        onProblem: (problem) => {
          result.markComplete = false
          onProblem(problem)
        },
      }).then(() => referenceLines.flushAll()),
      listRoot(),
      countMultipart(),
    ])
    blobLines.flushAll()
    await mergeBlobs()
  } finally {
    await files.dispose()
  }

  async function listRoot(): Promise<void> {
    const quarantine = `${opts.quarantinePrefix}/`
    for await (const object of opts.driver.list('', {signal: opts.signal})) {
      add(totals.listing, object.size)
      if (totals.listing.objects % 10_000 === 0) opts.onProgress?.('list', totals.listing.objects)
      if (object.key.startsWith(quarantine)) {
        add(totals.quarantined, object.size)
        continue
      }
      const spec = parseOrUndefined(object.key)
      if (!spec) {
        add(totals.outside, object.size)
        if (result.outsideSample.length < OUTSIDE_SAMPLE) result.outsideSample.push(object.key)
        continue
      }
      switch (spec.kind) {
        case 'blob-data':
          if (spec.digest.startsWith('sha256:')) {
            const hex = spec.digest.slice(7)
            blobLines.add(hex.slice(0, 2), formatListedBlob(hex, object.size, object.lastModified))
          } else add(totals.undecidedBlobs, object.size)
          break
        case 'layer-link':
        case 'manifest-revision-link':
        case 'tag-current-link':
        case 'tag-index-link':
          add(totals.metadata, object.size)
          add(group(spec.repository).metadata, object.size)
          break
        case 'upload-data':
        case 'upload-started-at':
        case 'upload-hash-state':
          add(totals.uploads, object.size)
          add(group(spec.repository).uploads, object.size)
          break
      }
    }
  }

  async function countMultipart(): Promise<void> {
    const store = pendingUploadStoreOf(opts.driver)
    if (!store) return
    try {
      for await (const upload of store.listPendingUploads('')) {
        const parts = await store.pendingUploadParts(upload)
        const spec = parseOrUndefined(upload.key)
        const usages = [totals.multipart]
        if (spec && 'repository' in spec) usages.push(group(spec.repository).multipart)
        for (const usage of usages) {
          usage.uploads++
          usage.parts += parts.parts
          usage.bytes += parts.bytes
        }
      }
    } catch (error) {
      onProblem(problemOf(error, 'storage-error', '(pending multipart uploads)'))
    }
  }

  async function mergeBlobs(): Promise<void> {
    const youngFrom = (opts.now ?? new Date()).getTime() - opts.minAge.ms
    for (const prefix of ALL_SHARDS) {
      opts.signal?.throwIfAborted()
      const listing = await blobLines.read(prefix)
      const references = sortedUniqueReferences(await referenceLines.read(prefix))
      const digests = [...new Set(references.map((line) => `sha256:${line.slice(0, line.indexOf(' '))}`))]
      const merged = mergePrefix(listing, digests, youngFrom)
      const attributed = attributePrefix(listing, references)
      result.referencedMissing += attributed.missing
      let orphanedBytes = merged.scanned.bytes
      for (const blob of attributed.blobs) {
        add(totals.referenced, blob.size)
        orphanedBytes -= blob.size
        if (blob.groups.length > 1) add(totals.shared, blob.size)
        for (const name of blob.groups) {
          const usage = groups.get(name)!
          add(usage.attributed, blob.size)
          if (blob.groups.length === 1) add(usage.exclusive, blob.size)
        }
      }
      // The sweep's merge and the attribution must agree on which blobs are referenced.
      if (attributed.blobs.length !== merged.referenced)
        throw new InternalError(
          new Error(
            `prefix ${prefix}: ${merged.referenced} referenced blobs by the merge, ${attributed.blobs.length} attributed`,
          ),
        )
      totals.orphaned.objects += merged.scanned.blobs - merged.referenced
      totals.orphaned.bytes += orphanedBytes
      totals.orphanedYoung.objects += merged.tooYoung.count
      totals.orphanedYoung.bytes += merged.tooYoung.bytes
      opts.onProgress?.('merge', totals.listing.objects)
    }
  }

  checkInvariant(totals, [...groups.values()])
  result.groups = [...groups.values()].sort(
    (a, b) =>
      b.attributed.bytes +
        b.metadata.bytes +
        b.uploads.bytes -
        (a.attributed.bytes + a.metadata.bytes + a.uploads.bytes) || (a.name < b.name ? -1 : 1),
  )
  if (totals.shared.objects > 0)
    result.notes.push(
      `${totals.shared.objects} blobs (${totals.shared.bytes} bytes) are referenced by more than one ${opts.by}: ` +
        `each counts them in its attributed bytes, so those add up to more than the referenced total; exclusive bytes do not`,
    )
  if (totals.multipart.uploads > 0)
    result.notes.push(
      `${totals.multipart.uploads} pending multipart uploads hold ${totals.multipart.bytes} bytes that no object listing shows ` +
        `(upload debris beside the listing; sweep uploads --delete aborts the abandoned ones)`,
    )
  if (!result.markComplete)
    result.notes.push('some repositories could not be read: referenced bytes may be too low and orphaned too high')
  result.durationMs = Math.round(performance.now() - started)
  return result
}

/**
 * The categories partition the listing; a difference means an object was counted twice or not at all,
 * which is a bug in this report, not a property of the store.
 */
export function checkInvariant(totals: UsageTotals, groups: GroupUsage[]): void {
  const parts = [
    totals.referenced,
    totals.orphaned,
    totals.undecidedBlobs,
    totals.metadata,
    totals.uploads,
    totals.quarantined,
    totals.outside,
  ]
  const sum = parts.reduce((a, b) => ({objects: a.objects + b.objects, bytes: a.bytes + b.bytes}), {
    objects: 0,
    bytes: 0,
  })
  const exclusive = groups.reduce(
    (a, g) => ({objects: a.objects + g.exclusive.objects, bytes: a.bytes + g.exclusive.bytes}),
    {objects: totals.shared.objects, bytes: totals.shared.bytes},
  )
  const mismatches: string[] = []
  if (sum.objects !== totals.listing.objects || sum.bytes !== totals.listing.bytes)
    mismatches.push(
      `the categories hold ${sum.objects} objects, ${sum.bytes} bytes; the listing ${totals.listing.objects}, ${totals.listing.bytes}`,
    )
  if (exclusive.objects !== totals.referenced.objects || exclusive.bytes !== totals.referenced.bytes)
    mismatches.push(
      `shared + exclusive hold ${exclusive.objects} blobs, ${exclusive.bytes} bytes; referenced ${totals.referenced.objects}, ${totals.referenced.bytes}`,
    )
  if (mismatches.length > 0) throw new InternalError(new Error(`usage does not add up: ${mismatches.join('; ')}`))
}

function add(usage: Usage, bytes: number): void {
  usage.objects++
  usage.bytes += bytes
}

function parseOrUndefined(key: string): PathSpec | undefined {
  try {
    return parseKey(key)
  } catch (error) {
    if (error instanceof InvalidInputError) return undefined
    throw error
  }
}
