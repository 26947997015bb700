import type {Db} from '../metadata/db.js'
import type {ObjectInfo, StorageDriver} from '../storage/driver.js'
import {pathFor} from '../storage/layout.js'
import {ShardLines} from '../sweep/spill.js'
import {ListAhead, type ListAheadOptions} from './list-ahead.js'

/** Where a region's blob listing comes from: LIST, or an S3 Inventory report read into per-prefix files. */
export interface BlobListingSource {
  readonly kind: 'list' | 'inventory'
  /** the blobs under `blobs/sha256/<prefix>/`, in byte order */
  listPrefix(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo>
  /** the same, a batch at a time as the source holds them (a page read ahead): merged without an await each */
  listPrefixInBatches?(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo[]>
  dispose(): Promise<void>
}

/** LIST, read ahead over `prefixes`, which are then to be asked for in that order. */
export function listingSource(driver: StorageDriver, prefixes: string[], options: ListAheadOptions): BlobListingSource {
  const ahead = new ListAhead(driver, prefixes, options)
  return {
    kind: 'list',
    listPrefix: (prefix) => ahead.objects(prefix),
    listPrefixInBatches: (prefix) => ahead.batches(prefix),
    dispose: async () => {},
  }
}

export function blobPrefix(prefix: string): string {
  return `blobs/sha256/${prefix}/`
}

export interface LinkEntryLine {
  key: string
  links: Array<{region: string; key: string}>
}

/**
 * The links (revision and _layers) naming blobs, kept per prefix in files while the repositories are
 * walked, then read back one prefix at a time, sorted by blob key, as one more source of the merge.
 */
export class LinkSpill {
  /** prefixes some link names: the others have no file to read (opening 256 absent files cost 0.3 s) */
  private readonly named = new Set<string>()

  constructor(private readonly lines: ShardLines) {}

  static create(prefixes: string[]): LinkSpill {
    return new LinkSpill(ShardLines.create(prefixes, 'audit-links'))
  }

  add(prefix: string, hex: string, region: string, key: string): void {
    this.named.add(prefix)
    this.lines.add(prefix, `${hex}\t${region}\t${key}`)
  }

  /** The prefix's links by blob, in one batch: its lines are read whole anyway. */
  async *listPrefix(prefix: string): AsyncIterable<LinkEntryLine[]> {
    if (!this.named.has(prefix)) return
    const lines = await this.lines.read(prefix)
    lines.sort()
    const entries: LinkEntryLine[] = []
    let current: LinkEntryLine | undefined
    for (const line of lines) {
      const [hex, region, key] = line.split('\t')
      const blobKey = pathFor({kind: 'blob-data', digest: `sha256:${hex}`})
      if (current?.key !== blobKey) {
        current = {key: blobKey, links: []}
        entries.push(current)
      }
      current.links.push({region, key})
    }
    yield entries
  }

  dispose(): Promise<void> {
    return this.lines.dispose()
  }
}

/** Rows of the database's blobs table read per page, so a prefix of a huge table never sits in memory. */
const DATABASE_PAGE = 5000

/** The database's blobs of one prefix as {key, size}, in byte order (the digest column is COLLATE "C"), a page at a time. */
export async function* databaseBlobs(db: Db, prefix: string): AsyncIterable<Array<{key: string; size: number}>> {
  let after = `sha256:${prefix}`
  const upper = `sha256:${prefix}g` // 'g' sorts after every hex digit
  for (;;) {
    const page = await db.query<{digest: string; size: string}>(
      `SELECT digest, size FROM blobs WHERE digest > $1 AND digest < $2 ORDER BY digest LIMIT ${DATABASE_PAGE}`,
      [after, upper],
    )
    yield page.rows.map((row) => ({key: pathFor({kind: 'blob-data', digest: row.digest}), size: Number(row.size)}))
    if (page.rows.length < DATABASE_PAGE) return
    after = page.rows[page.rows.length - 1].digest
  }
}
