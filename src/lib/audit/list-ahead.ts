import {listInPages, type ListOptions, type ObjectInfo, type StorageDriver} from '../storage/driver.js'

/** What is read ahead of the prefix being compared: one S3 page per listing (S3 answers at most 1000 keys). */
const READ_AHEAD_ITEMS = 1000

export interface ListAheadOptions {
  /** listings in flight at once (the driver caps its own requests too) */
  inFlight: number
  /**
   * Objects held ahead of the prefix being compared, over every listing: those read, and a page for each
   * listing in flight (a page being read is held as a whole, as text and then as objects).
   */
  maxBuffered: number
  signal?: AbortSignal
}

interface PrefixListing {
  /** objects read ahead */
  items: ObjectInfo[]
  /** the rest of the prefix, listed when it is compared; undefined when `items` is the whole prefix */
  rest?: () => AsyncIterator<ObjectInfo[]>
}

interface Deferred<T> {
  promise: Promise<T>
  resolve: (value: T) => void
  reject: (error: unknown) => void
  settled: boolean
}

function deferred<T>(): Deferred<T> {
  const d = {settled: false} as Deferred<T>
  d.promise = new Promise<T>((resolve, reject) => {
    d.resolve = (value) => ((d.settled = true), resolve(value))
    d.reject = (error) => ((d.settled = true), reject(error))
  })
  d.promise.catch(() => {}) // read (and reported) when its prefix is compared
  return d
}

/**
 * A listing unit: a group of prefixes sharing their first hex digit, listed as one range (`blobs/sha256/a`),
 * or one prefix, possibly continuing after a key a group already read.
 */
type Unit = {kind: 'group'; digit: string; prefixes: string[]} | {kind: 'prefix'; prefix: string; startAfter?: string}

/**
 * A region's blob listing, prefix by prefix in order, read ahead with bounded concurrency and memory.
 *
 * One LIST per prefix and region, one after another, cost a round trip each: 512 requests for two regions
 * at any bucket size, 1.7 s at 10k blobs where `rclone check --fast-list` takes 0.8 s. Here the prefixes
 * sharing a first hex digit are listed as one range (16 requests when the bucket is small: 0.25 s for all
 * 10k), several ranges in flight. A range whose first page is full (the bucket is large) is not followed
 * page by page (its pages would pile up ahead of the comparison): its remaining prefixes are listed one by
 * one instead, each ahead by at most one page. What waits ahead is bounded by `maxBuffered` objects; the
 * prefix being compared streams the rest of its listing, so a prefix of millions never sits in memory.
 */
export class ListAhead {
  private readonly listings = new Map<string, Deferred<PrefixListing>>()
  private readonly queue: Unit[] = []
  /** each prefix's position, to keep the queue in prefix order */
  private readonly position: Map<string, number>
  private running = 0
  private buffered = 0

  constructor(
    private readonly driver: StorageDriver,
    private readonly prefixes: string[],
    private readonly opts: ListAheadOptions,
  ) {
    this.position = new Map(prefixes.map((p, i) => [p, i]))
    for (const prefix of prefixes) this.listings.set(prefix, deferred())
    const byDigit = new Map<string, string[]>()
    for (const prefix of prefixes) {
      const group = byDigit.get(prefix[0])
      if (group) group.push(prefix)
      else byDigit.set(prefix[0], [prefix])
    }
    for (const [digit, group] of byDigit)
      this.queue.push(group.length > 1 ? {kind: 'group', digit, prefixes: group} : {kind: 'prefix', prefix: group[0]})
  }

  /** The objects under `blobs/sha256/<prefix>/`, in byte order. Prefixes are to be asked for in order. */
  async *objects(prefix: string): AsyncIterable<ObjectInfo> {
    for await (const batch of this.batches(prefix)) yield* batch
  }

  /** The same objects as they were read: what was read ahead at once, then the rest a page at a time. */
  async *batches(prefix: string): AsyncIterable<ObjectInfo[]> {
    const listing = this.listings.get(prefix)
    if (!listing) throw new Error(`prefix ${prefix} is not among the listed ones`)
    // The prefix being compared is listed now, whatever is in flight ahead of it (nothing waits for it).
    const queued = this.queue.findIndex((unit) => this.firstPrefix(unit) === prefix)
    if (queued >= 0) this.start(this.queue.splice(queued, 1)[0])
    this.pump()
    let taken: PrefixListing
    try {
      taken = await listing.promise
    } finally {
      this.listings.delete(prefix)
    }
    this.buffered -= taken.items.length
    this.pump()
    if (taken.items.length > 0) yield taken.items
    if (!taken.rest) return
    const rest = taken.rest()
    yield* {[Symbol.asyncIterator]: () => rest}
  }

  private firstPrefix(unit: Unit): string {
    return unit.kind === 'group' ? unit.prefixes[0] : unit.prefix
  }

  private pump(): void {
    while (
      this.queue.length > 0 &&
      this.running < this.opts.inFlight &&
      this.buffered + (this.running + 1) * READ_AHEAD_ITEMS <= this.opts.maxBuffered
    )
      this.start(this.queue.shift()!)
  }

  private start(unit: Unit): void {
    this.running++
    const done = unit.kind === 'group' ? this.listGroup(unit) : this.listPrefix(unit.prefix, unit.startAfter)
    void done.finally(() => {
      this.running--
      this.pump()
    })
  }

  /** Queued in prefix order, so that the listing nearest to the comparison goes first. */
  private enqueue(units: Unit[]): void {
    for (const unit of units) {
      const at = this.position.get(this.firstPrefix(unit))!
      const index = this.queue.findIndex((u) => this.position.get(this.firstPrefix(u))! > at)
      if (index < 0) this.queue.push(unit)
      else this.queue.splice(index, 0, unit)
    }
  }

  private resolve(prefix: string, listing: PrefixListing): void {
    const pending = this.listings.get(prefix)
    if (!pending || pending.settled) return
    this.buffered += listing.items.length
    pending.resolve(listing)
  }

  private async listGroup(unit: Extract<Unit, {kind: 'group'}>): Promise<void> {
    let items: ObjectInfo[]
    let full: boolean
    try {
      const iterator = this.pages(`blobs/sha256/${unit.digit}`)
      ;({items, full} = await readAhead(iterator))
      if (full) await iterator.return?.()
    } catch {
      // A failed range says nothing of which prefix broke: each is listed on its own, and fails on its own.
      this.enqueue(unit.prefixes.map((prefix) => ({kind: 'prefix' as const, prefix})))
      return
    }
    const byPrefix = new Map<string, ObjectInfo[]>(unit.prefixes.map((p) => [p, []]))
    for (const item of items) {
      // The range also holds keys of no listed prefix ('blobs/sha256/ax…'): a prefix's own listing never sees them.
      const prefix = item.key.length > 16 && item.key[15] === '/' ? item.key.slice(13, 15) : undefined
      if (prefix !== undefined) byPrefix.get(prefix)?.push(item)
    }
    if (!full) {
      for (const [prefix, objects] of byPrefix) this.resolve(prefix, {items: objects})
      return
    }
    // The range is larger than a page: prefixes before the last key's are complete; the last key's prefix
    // continues after it; the ones after it are listed one by one.
    const last = items[items.length - 1].key
    const lastPrefix = last.startsWith('blobs/sha256/') ? last.slice(13, 15) : ''
    const later: Unit[] = []
    for (const [prefix, objects] of byPrefix) {
      if (prefix < lastPrefix) this.resolve(prefix, {items: objects})
      else if (prefix === lastPrefix) this.resolve(prefix, {items: objects, rest: () => this.iterate(prefix, last)})
      else later.push({kind: 'prefix', prefix})
    }
    this.enqueue(later)
  }

  /** One prefix: its first page read ahead, the rest left to when it is compared. */
  private async listPrefix(prefix: string, startAfter?: string): Promise<void> {
    const iterator = this.iterate(prefix, startAfter)
    let items: ObjectInfo[]
    let full: boolean
    try {
      ;({items, full} = await readAhead(iterator))
    } catch (error) {
      this.listings.get(prefix)?.reject(error)
      return
    }
    // The driver's listing stops between pages: the parked iterator asks for the next page when it is read.
    this.resolve(prefix, {items, rest: full ? () => iterator : undefined})
  }

  private iterate(prefix: string, startAfter?: string): AsyncIterator<ObjectInfo[]> {
    return this.pages(`blobs/sha256/${prefix}/`, startAfter)
  }

  /** The driver's listing a page at a time: as it reads them when it can (S3), else in batches of a page. */
  private pages(prefix: string, startAfter?: string): AsyncIterator<ObjectInfo[]> {
    const pages = listInPages(this.driver, prefix, {startAfter, signal: this.opts.signal}, READ_AHEAD_ITEMS)
    return pages[Symbol.asyncIterator]()
  }
}

/** Pages until a page's worth is read ahead (`full`: there may be more) or the listing ends. */
async function readAhead(iterator: AsyncIterator<ObjectInfo[]>): Promise<{items: ObjectInfo[]; full: boolean}> {
  let items: ObjectInfo[] = []
  for (;;) {
    const next = await iterator.next()
    if (next.done) return {items, full: false}
    items = items.length === 0 ? next.value : items.concat(next.value)
    if (items.length >= READ_AHEAD_ITEMS) return {items, full: true}
  }
}
