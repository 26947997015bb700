import {RefusedError} from '../errors.js'
import {pathFor} from '../storage/layout.js'
import {parseListedBlob} from './enumerate.js'
import type {SweepCandidate} from './types.js'

export interface PrefixMerge {
  scanned: {blobs: number; bytes: number}
  referenced: number
  tooYoung: {count: number; bytes: number}
  candidates: SweepCandidate[]
}

/**
 * Decides one digest prefix, or a run of one (the sweep merges a sixteenth of a prefix at a time): its blob listing (lines `<hex> <size> <mtime ms>`, in byte order) against
 * the referenced digests (`sha256:<hex>`, sorted, unique) walked in step, so the cost is one pass over
 * each. A blob is referenced if it is in `references` or in `delta` (references found by re-walking
 * storage since an import), too young if modified at or after the cutoff, else a candidate. Both inputs
 * must be strictly increasing: a merge over unsorted input would call a referenced blob unreferenced, so
 * it refuses instead.
 */
export function mergePrefix(
  listing: readonly string[],
  references: readonly string[],
  cutoffMs: number,
  delta?: ReadonlySet<string>,
): PrefixMerge {
  for (let r = 1; r < references.length; r++) {
    if (!(references[r - 1] < references[r])) throw unsorted('references', references[r - 1], references[r])
  }
  const merged: PrefixMerge = {
    scanned: {blobs: 0, bytes: 0},
    referenced: 0,
    tooYoung: {count: 0, bytes: 0},
    candidates: [],
  }
  let previous = ''
  let r = 0
  for (const line of listing) {
    const blob = parseListedBlob(line)
    if (!(previous < blob.hex)) throw unsorted('blob listing', previous, blob.hex)
    previous = blob.hex
    const digest = `sha256:${blob.hex}`
    merged.scanned.blobs++
    merged.scanned.bytes += blob.size
    while (r < references.length && references[r] < digest) r++
    if ((r < references.length && references[r] === digest) || delta?.has(digest)) {
      merged.referenced++
      continue
    }
    if (blob.lastModified >= cutoffMs) {
      merged.tooYoung.count++
      merged.tooYoung.bytes += blob.size
      continue
    }
    merged.candidates.push({
      kind: 'blob',
      digest,
      key: pathFor({kind: 'blob-data', digest}),
      size: blob.size,
      lastModified: new Date(blob.lastModified).toISOString(),
      reason: 'unreferenced',
    })
  }
  return merged
}

function unsorted(what: string, before: string, after: string): RefusedError {
  return new RefusedError(
    `the ${what} is not in strictly increasing byte order ('${before}' then '${after}'): the sweep stops, and decides nothing from there on`,
  )
}
