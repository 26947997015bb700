import type {Db} from '../metadata/db.js'

/**
 * The digest range of the digests whose hex starts with `unit` (a two-hex shard, or a longer part of
 * one), as bounds for a C-collated text comparison.
 */
export function shardRange(unit: string): [string, string] {
  const next = parseInt(unit, 16) + 1
  const end = next === 16 ** unit.length ? 'g' : next.toString(16).padStart(unit.length, '0')
  return [`sha256:${unit}`, `sha256:${end}`]
}

/** Hex characters of the unit the merge and the reader work in: a sixteenth of a two-hex shard. */
export const MERGE_UNIT_LENGTH = 3

/** The merge units of a two-hex shard, in order: `ab` -> `ab0` … `abf`. */
export function mergeUnitsOf(shard: string): string[] {
  return Array.from({length: 16}, (_, i) => shard + i.toString(16))
}

export interface ReferenceQueryOptions {
  /** a repository_blobs row (a _layers link) created at or after this instant protects its blob, as a young link does in the storage strategy */
  linkedSince: Date
}

/**
 * Every way the metadata database says a digest is wanted, as one SQL body over `$cond`: the manifests
 * themselves, their configuration blobs, layers and subjects (the storage walk marks a referrer's subject
 * too), index children by digest whether or not the child is a manifest of the repository (the registry's
 * GC marks them so), the revisions the import could not read (their own digest; what they reference is
 * unknown and the plan refuses to act on that), and blobs linked into a repository since `linkedSince`.
 */
function referencesQuery(cond: (column: string) => string, linkedSince: string): string {
  return `SELECT digest FROM manifests WHERE ${cond('digest')}
     UNION SELECT configuration_blob_digest FROM manifests WHERE ${cond('configuration_blob_digest')}
     UNION SELECT digest FROM layers WHERE ${cond('digest')}
     UNION SELECT subject_digest FROM manifests WHERE ${cond('subject_digest')}
     UNION SELECT child_digest FROM dangling_manifest_references WHERE ${cond('child_digest')}
     UNION SELECT digest FROM unreadable_revisions WHERE ${cond('digest')}
     UNION SELECT blob_digest FROM repository_blobs WHERE ${cond('blob_digest')} AND created_at >= ${linkedSince}`
}

/**
 * Every digest the metadata database says is referenced, from the first shard through the last, sorted
 * in storage byte order (the digest columns are COLLATE "C"), for the merge with the blob listing.
 */
async function referencedDigestsInRange(
  db: Db,
  firstShard: string,
  lastShard: string,
  opts: ReferenceQueryOptions,
): Promise<string[]> {
  const [low] = shardRange(firstShard)
  const [, high] = shardRange(lastShard)
  const result = await db.query<{digest: string}>(
    `${referencesQuery((column) => `${column} >= $1 AND ${column} < $2`, '$3')} ORDER BY 1`,
    [low, high, opts.linkedSince],
  )
  return result.rows.map((row) => row.digest)
}

/**
 * The metadata strategy's references, unit by unit in listing order, read ahead over runs of
 * consecutive units. A unit is a prefix of the digest's hex, all of one length: a two-hex shard, or a
 * sixteenth of one (the merge's unit), so that a shard of millions of digests is not read at once. One
 * query per shard paid the planning and the index probes of seven selects over every partition 256
 * times: 21x the bare blob listing on a 10k-blob store. A run grows while its rows stay few and shrinks
 * when they are many, so one read holds about `targetRows` digests at any size (or one unit's, if more).
 *
 * `start()` begins reading before the merge asks, while the blob listing runs: the queries (planning
 * alone is 70 ms over 64 partitions) then cost no wall time. What is read ahead stays under about
 * `targetRows` digests. Reading the database before the listing ends is as safe as after: a reference
 * added since is to a manifest pushed since, whose blobs are younger than the cutoff or re-checked
 * against the database just before anything is acted on.
 */
export class ShardReferenceReader {
  private readonly ahead = new Map<string, string[]>()
  private aheadRows = 0
  /** units in the next query: starts at one two-hex shard's worth, then follows the rows each run returns */
  private width: number
  /** index in `shards` of the first shard not yet read */
  private next = 0
  private reading: Promise<void> | undefined
  private failure: unknown

  constructor(
    private readonly db: Db,
    /** the shards the merge will ask for, in the order it asks */
    private readonly shards: readonly string[],
    private readonly opts: ReferenceQueryOptions,
    private readonly targetRows = 50_000,
    /** units in one query at most: 64 two-hex shards' worth */
    private readonly maxWidth = shards.length > 0 ? 64 * 16 ** (shards[0]!.length - 2) : 64,
  ) {
    this.width = shards.length > 0 ? 16 ** (shards[0]!.length - 2) : 1
  }

  /** Digests read and not yet handed out. */
  get heldDigests(): number {
    return this.aheadRows
  }

  /** Starts reading ahead now; `read` does the same on its first call. */
  start(): void {
    this.readAhead()
  }

  async read(shard: string): Promise<string[]> {
    for (;;) {
      if (this.failure !== undefined) throw this.failure
      const ready = this.ahead.get(shard)
      if (ready) {
        // Shards read ahead before this one were skipped by the merge (their listing did not finish).
        for (const [passed, digests] of this.ahead) {
          this.ahead.delete(passed)
          this.aheadRows -= digests.length
          if (passed === shard) break
        }
        this.readAhead()
        return ready
      }
      const index = this.shards.indexOf(shard)
      if (index < 0) throw new Error(`shard ${shard} is not one this reader was made for`)
      if (!this.reading) {
        // Asked past what was read ahead: the shards in between were skipped.
        this.dropAhead()
        this.next = index
      }
      this.readAhead()
      await this.reading
    }
  }

  private dropAhead(): void {
    this.ahead.clear()
    this.aheadRows = 0
  }

  private readAhead(): void {
    if (this.reading || this.failure !== undefined || this.next >= this.shards.length) return
    if (this.aheadRows >= this.targetRows) return
    const run = this.runFrom(this.next)
    this.next += run.length
    this.reading = referencedDigestsInRange(this.db, run[0]!, run.at(-1)!, this.opts).then(
      (digests) => {
        this.reading = undefined
        for (const s of run) this.ahead.set(s, [])
        const unitLength = run[0]!.length
        for (const digest of digests) this.ahead.get(digest.slice(7, 7 + unitLength))!.push(digest)
        this.aheadRows += digests.length
        if (digests.length < this.targetRows / 4) this.width = Math.min(this.width * 2, this.maxWidth)
        else if (digests.length > this.targetRows) this.width = Math.max(1, Math.floor(this.width / 2))
        this.readAhead()
      },
      (error: unknown) => {
        this.reading = undefined
        this.failure = error
      },
    )
  }

  /** The shard at `index` and those after it that follow it without a gap, up to the width. */
  private runFrom(index: number): string[] {
    const run = [this.shards[index]!]
    let i = index
    while (run.length < this.width && i + 1 < this.shards.length) {
      const next = this.shards[++i]!
      if (parseInt(next, 16) !== parseInt(run.at(-1)!, 16) + 1) break
      run.push(next)
    }
    return run
  }
}

/** Which of `digests` the metadata database references now (the re-check just before acting). */
export async function referencedAmong(db: Db, digests: string[], opts: ReferenceQueryOptions): Promise<Set<string>> {
  if (digests.length === 0) return new Set()
  const result = await db.query<{digest: string}>(
    referencesQuery((column) => `${column} = ANY($1::text[])`, '$2'),
    [digests, opts.linkedSince],
  )
  return new Set(result.rows.map((row) => row.digest))
}
