import {RefusedError} from '../errors.js'
import {parseListedBlob} from '../sweep/enumerate.js'

/** One referenced blob of a prefix with the groups (namespaces or repositories) whose manifests reference it. */
export interface AttributedBlob {
  digest: string
  size: number
  groups: string[]
}

/**
 * The referencing groups of each listed blob of one digest prefix: the blob listing (lines
 * `<hex> <size> <mtime ms>`, as the sweep's enumeration writes them, strictly increasing) walked in step
 * with the prefix's references as lines `<hex> <group>`, sorted and unique. One pass over each; a blob
 * no group references is not yielded (the sweep's merge decides orphans). References to a blob the
 * listing lacks are counted as `missing`.
 */
export function attributePrefix(
  listing: readonly string[],
  references: readonly string[],
): {blobs: AttributedBlob[]; missing: number} {
  for (let r = 1; r < references.length; r++) {
    if (!(references[r - 1] < references[r])) throw unsorted(references[r - 1], references[r])
  }
  const blobs: AttributedBlob[] = []
  let missing = 0
  let previousMissing = ''
  let r = 0
  for (const line of listing) {
    const blob = parseListedBlob(line)
    while (r < references.length && hexOf(references[r]) < blob.hex) {
      const hex = hexOf(references[r++])
      if (hex !== previousMissing) missing++
      previousMissing = hex
    }
    const groups: string[] = []
    while (r < references.length && hexOf(references[r]) === blob.hex) groups.push(groupOf(references[r++]))
    if (groups.length > 0) blobs.push({digest: `sha256:${blob.hex}`, size: blob.size, groups})
  }
  for (; r < references.length; r++) {
    const hex = hexOf(references[r])
    if (hex !== previousMissing) missing++
    previousMissing = hex
  }
  return {blobs, missing}
}

/** The reference lines of a prefix as read back from the spill: sorted, duplicates dropped. */
export function sortedUniqueReferences(lines: string[]): string[] {
  lines.sort()
  const out: string[] = []
  for (const line of lines) if (out[out.length - 1] !== line) out.push(line)
  return out
}

export function referenceLine(hex: string, group: string): string {
  return `${hex} ${group}`
}

function hexOf(line: string): string {
  return line.slice(0, line.indexOf(' '))
}

function groupOf(line: string): string {
  return line.slice(line.indexOf(' ') + 1)
}

function unsorted(before: string, after: string): RefusedError {
  return new RefusedError(
    `the usage references are not in strictly increasing order ('${before}' then '${after}'): the prefix is not attributed`,
  )
}
