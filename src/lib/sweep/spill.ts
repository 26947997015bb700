import {appendFileSync, mkdtempSync} from 'node:fs'
import {readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {ExitCode, RegopsError, errorMessage} from '../errors.js'
import {shardOfDigest} from '../storage/layout.js'

/**
 * Lines kept per two-hex shard in files instead of memory: the mark set of a storage walk, and the
 * blob listing taken while the mark runs. The sweep reads back one shard at a time, so memory is one
 * shard's worth, about 1/256 of the whole, however large the registry is. Lines are buffered and
 * appended in chunks (a write per line costs more than the walk that produced it). Appends are
 * synchronous so that another thread (the filesystem listing worker) can share the directory.
 */
/** Lines buffered per shard: at most 256 × this many lines are in memory, whatever the registry's size. */
const FLUSH_LINES = 128

export class ShardLines {
  private readonly pending = new Map<string, string[]>()
  count = 0

  constructor(
    readonly dir: string,
    private readonly shards: ReadonlySet<string>,
    private readonly suffix = '',
  ) {}

  static create(shards: Iterable<string>, label: string): ShardLines {
    return new ShardLines(mkdtempSync(join(tmpdir(), `regops-${label}-`)), new Set(shards))
  }

  /** Another view of the same directory, for a second kind of line (its own file per shard). */
  sibling(suffix: string): ShardLines {
    return new ShardLines(this.dir, this.shards, suffix)
  }

  wants(shard: string): boolean {
    return this.shards.has(shard)
  }

  add(shard: string, line: string): void {
    if (!this.shards.has(shard)) return
    let lines = this.pending.get(shard)
    if (!lines) this.pending.set(shard, (lines = []))
    lines.push(line)
    this.count++
    if (lines.length >= FLUSH_LINES) this.flush(shard, lines)
  }

  /** Writes what is buffered for a shard (the shard's lines are then complete on disk, if it is done). */
  flush(shard: string, lines = this.pending.get(shard)): void {
    if (!lines || lines.length === 0) return
    appendFileSync(join(this.dir, shard + this.suffix), lines.join('\n') + '\n')
    lines.length = 0
  }

  flushAll(): void {
    for (const [shard, lines] of this.pending) this.flush(shard, lines)
  }

  /**
   * The shard's lines in the order written. No file means no lines were written; any other failure
   * (EMFILE, EIO, ...) stops the sweep: read as "no lines", an unreadable marks file would make every
   * blob of the prefix look unreferenced.
   */
  async read(shard: string): Promise<string[]> {
    this.flush(shard)
    const file = join(this.dir, shard + this.suffix)
    try {
      return (await readFile(file, 'utf8')).split('\n').filter(Boolean)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw new RegopsError(`cannot read the sweep's spill file ${file}: ${errorMessage(error)}`, ExitCode.Partial, {
        code: 'SPILL_UNREADABLE',
        cause: error,
      })
    }
  }

  async dispose(): Promise<void> {
    await rm(this.dir, {recursive: true, force: true})
  }
}

/** The mark set: referenced sha256 digests, read back sorted and deduplicated. */
export class MarkSpill {
  constructor(readonly lines: ShardLines) {}

  add(digest: string): void {
    if (digest.startsWith('sha256:')) this.lines.add(shardOfDigest(digest), digest.slice(7))
  }

  get count(): number {
    return this.lines.count
  }

  async read(shard: string): Promise<string[]> {
    const hexes = await this.lines.read(shard)
    hexes.sort()
    const out: string[] = []
    for (const hex of hexes) if (out[out.length - 1] !== `sha256:${hex}`) out.push(`sha256:${hex}`)
    return out
  }
}
