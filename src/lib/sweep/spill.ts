import {appendFileSync, mkdtempSync} from 'node:fs'
import {open, readFile, rm, type FileHandle} from 'node:fs/promises'
import {StringDecoder} from 'node:string_decoder'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {ExitCode, RefusedError, RegopsError, errorMessage} from '../errors.js'
import {shardOfDigest} from '../storage/layout.js'

/**
 * Lines kept per two-hex shard: the mark set of a storage walk, and the blob listing taken while the
 * mark runs. They stay in memory while few (a small registry pays no file per shard), and past
 * MEMORY_LINES go to a file per shard; the sweep reads the blob listing back a sixteenth of a shard at a
 * time (readUnits), and a shard's marks whole (read), so memory is then a part of a shard, however large
 * the registry is. Lines are buffered and
 * appended in chunks (a write per line costs more than the walk that produced it). Appends are
 * synchronous so that another thread (the filesystem listing worker) can share the directory.
 */
/** Lines buffered per shard once spilling: at most 256 × this many lines are in memory. */
const FLUSH_LINES = 128
/** Bytes read from a shard's file at a time by readUnits. */
const READ_CHUNK = 64 * 1024
/** Lines held in memory before any file is written: a few MiB, the whole of a registry of ~30k blobs. */
export const MEMORY_LINES = 32_768

export class ShardLines {
  private readonly pending = new Map<string, string[]>()
  /** set once lines go to files: from then on every shard's lines are on disk but the last few */
  private spilling: boolean
  count = 0

  constructor(
    readonly dir: string,
    private readonly shards: ReadonlySet<string>,
    private readonly suffix = '',
    /** lines held in memory before spilling to files; 0 writes files from the first line */
    readonly memoryLines = MEMORY_LINES,
  ) {
    this.spilling = memoryLines <= 0
  }

  static create(shards: Iterable<string>, label: string, memoryLines = MEMORY_LINES): ShardLines {
    return new ShardLines(mkdtempSync(join(tmpdir(), `regops-${label}-`)), new Set(shards), '', memoryLines)
  }

  /** Another view of the same directory, for a second kind of line (its own file per shard). */
  sibling(suffix: string): ShardLines {
    return new ShardLines(this.dir, this.shards, suffix, this.memoryLines)
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
    if (this.spilling) {
      if (lines.length >= FLUSH_LINES) this.write(shard, lines)
    } else if (this.count > this.memoryLines) {
      this.spilling = true
      this.flushAll()
    }
  }

  /** A shard is complete: once spilling, its buffered lines go to its file (in memory they stay put). */
  flush(shard: string): void {
    if (this.spilling) this.write(shard, this.pending.get(shard))
  }

  flushAll(): void {
    if (this.spilling) for (const [shard, lines] of this.pending) this.write(shard, lines)
  }

  private write(shard: string, lines: string[] | undefined): void {
    if (!lines || lines.length === 0) return
    appendFileSync(join(this.dir, shard + this.suffix), lines.join('\n') + '\n')
    lines.length = 0
  }

  /**
   * What is still in memory, to hand to another thread: the lines of a listing that never spilled
   * (one that did has them all on disk, and hands nothing).
   */
  takeHeld(): Array<[string, string[]]> | undefined {
    if (this.spilling) {
      this.flushAll()
      return undefined
    }
    const held = [...this.pending]
    this.pending.clear()
    return held
  }

  /**
   * Takes over what another thread wrote for this directory and suffix: the lines it held (see
   * takeHeld), as if added here, or, when it spilled, its files (undefined).
   */
  adopt(held: Array<[string, string[]]> | undefined): void {
    if (held === undefined) this.spilling = true
    else for (const [shard, lines] of held) for (const line of lines) this.add(shard, line)
  }

  /**
   * The shard's lines in the order written. No file means no lines were written to one; any other
   * failure (EMFILE, EIO, ...) stops the sweep: read as "no lines", an unreadable marks file would make
   * every blob of the prefix look unreferenced.
   */
  async read(shard: string): Promise<string[]> {
    const held = this.pending.get(shard) ?? []
    if (!this.spilling) return [...held]
    const file = join(this.dir, shard + this.suffix)
    let written: string[] = []
    try {
      written = (await readFile(file, 'utf8')).split('\n').filter(Boolean)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw spillUnreadable(file, error)
    }
    return written.length === 0 ? [...held] : held.length === 0 ? written : [...written, ...held]
  }

  /**
   * The shard's lines a unit at a time, for lines in byte order (a blob listing): each unit is the lines
   * sharing their first `unitLength` characters, in increasing order, read from the shard's file as a
   * stream. Only one unit's lines are held, however large the shard: a shard of 10^9 / 256 blobs read
   * whole held 1.3 GiB of heap in its merge. A unit after a larger one is refused (the lines are not in
   * byte order), as the merge refuses an unsorted listing.
   */
  async *readUnits(shard: string, unitLength: number): AsyncIterable<{unit: string; lines: string[]}> {
    let unit = ''
    let lines: string[] = []
    const take = (line: string): {unit: string; lines: string[]} | undefined => {
      if (unit !== '' && line.startsWith(unit)) {
        lines.push(line)
        return undefined
      }
      const next = line.slice(0, unitLength)
      if (next < unit)
        throw new RefusedError(
          `the blob listing is not in strictly increasing byte order ('${lines[lines.length - 1]}' then '${line}'): the sweep stops, and decides nothing from there on`,
        )
      const done = lines.length > 0 ? {unit, lines} : undefined
      unit = next
      lines = [line]
      return done
    }
    if (this.spilling) {
      const file = join(this.dir, shard + this.suffix)
      let handle: FileHandle | undefined
      try {
        handle = await open(file, 'r')
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw spillUnreadable(file, error)
      }
      if (handle) {
        try {
          // A small buffer per call: a read stream's 1 MiB buffer for each prefix file (35 KB each at 100k
          // blobs) cost a 100k-blob sweep 0.4 s of CPU.
          const buffer = Buffer.allocUnsafe(READ_CHUNK)
          const decoder = new StringDecoder('utf8')
          let rest = ''
          for (;;) {
            let bytesRead: number
            try {
              ;({bytesRead} = await handle.read(buffer, 0, buffer.length, null))
            } catch (error) {
              throw spillUnreadable(file, error)
            }
            if (bytesRead === 0) break
            const parts = (rest + decoder.write(buffer.subarray(0, bytesRead))).split('\n')
            rest = parts.pop()!
            for (const line of parts) {
              if (line === '') continue
              const done = take(line)
              if (done) yield done
            }
          }
          rest += decoder.end()
          if (rest !== '') {
            const done = take(rest)
            if (done) yield done
          }
        } finally {
          await handle.close()
        }
      }
    }
    for (const line of this.pending.get(shard) ?? []) {
      const done = take(line)
      if (done) yield done
    }
    if (lines.length > 0) yield {unit, lines}
  }

  async dispose(): Promise<void> {
    await rm(this.dir, {recursive: true, force: true})
  }
}

function spillUnreadable(file: string, error: unknown): RegopsError {
  return new RegopsError(`cannot read the sweep's spill file ${file}: ${errorMessage(error)}`, ExitCode.Partial, {
    code: 'SPILL_UNREADABLE',
    cause: error,
  })
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
