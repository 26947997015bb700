import {appendFileSync, closeSync, mkdtempSync, openSync, readSync} from 'node:fs'
import {appendFile, mkdir, readFile, rm, stat} from 'node:fs/promises'
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
/**
 * Lines held in memory before any file is written: a few MiB, the whole of a registry of ~30k blobs.
 * REGOPS_SPILL_MEMORY_LINES sets it (0: files from the first line), for the tests that compare the
 * spilled paths against the registry's GC on small stores.
 */
export const MEMORY_LINES = sizeFromEnvironment('REGOPS_SPILL_MEMORY_LINES', 32_768)

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
   * whole peaked at 1.3 GiB of RSS in its merge. A unit after a larger one is refused (the lines are not in
   * byte order), as the merge refuses an unsorted listing.
   */
  async *readUnits(shard: string, unitLength: number): AsyncIterable<{unit: string; lines: string[]}> {
    let unit = ''
    let lines: string[] = []
    for await (const chunk of this.lineChunks(shard)) {
      for (const line of chunk) {
        if (unit !== '' && line.startsWith(unit)) {
          lines.push(line)
          continue
        }
        const next = line.slice(0, unitLength)
        if (next < unit)
          throw new RefusedError(
            `the blob listing is not in strictly increasing byte order ('${lines[lines.length - 1]}' then '${line}'): the sweep stops, and decides nothing from there on`,
          )
        if (lines.length > 0) yield {unit, lines}
        unit = next
        lines = [line]
      }
    }
    if (lines.length > 0) yield {unit, lines}
  }

  /** Bytes of the shard's file (0 when it has none): what read() would load. */
  async fileSize(shard: string): Promise<number> {
    if (!this.spilling) return 0
    const file = join(this.dir, shard + this.suffix)
    try {
      return (await stat(file)).size
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0
      throw spillUnreadable(file, error)
    }
  }

  /**
   * The shard's lines in the order written, a chunk at a time: its file read as a stream, then the lines
   * still buffered. A missing file is no lines; any other failure stops the sweep (see read()).
   */
  async *lineChunks(shard: string): AsyncIterable<string[]> {
    if (this.spilling) {
      const file = join(this.dir, shard + this.suffix)
      // Read synchronously, as they were written: this process's own files in the temp directory, a page
      // cache read of 64 KiB at most per call. Through the thread pool, an open, a read or two and a close
      // per prefix were each a wait; with the report's waits (report-target.ts) they left a merge of 100k
      // blobs on S3 idle for most of its 0.45 s.
      let fd: number | undefined
      try {
        fd = openSync(file, 'r')
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw spillUnreadable(file, error)
      }
      if (fd !== undefined) {
        try {
          // A small buffer per call: a read stream's 1 MiB buffer for each prefix file (35 KB each at 100k
          // blobs) cost a 100k-blob sweep 0.4 s of CPU.
          const buffer = Buffer.allocUnsafe(READ_CHUNK)
          const decoder = new StringDecoder('utf8')
          let rest = ''
          for (;;) {
            let bytesRead: number
            try {
              bytesRead = readSync(fd, buffer, 0, buffer.length, null)
            } catch (error) {
              throw spillUnreadable(file, error)
            }
            if (bytesRead === 0) break
            const parts = (rest + decoder.write(buffer.subarray(0, bytesRead))).split('\n')
            rest = parts.pop()!
            // The yield is outside the read's catch: what the caller throws there is not an unreadable file.
            yield parts.filter(Boolean)
          }
          rest += decoder.end()
          if (rest !== '') yield [rest]
        } finally {
          closeSync(fd)
        }
      }
    }
    const held = this.pending.get(shard)
    if (held && held.length > 0) yield [...held]
  }

  async dispose(): Promise<void> {
    await rm(this.dir, {recursive: true, force: true})
  }
}

const spillUnreadable = (file: string, error: unknown) => spillFailure('read', file, error)
const spillUnwritable = (file: string, error: unknown) => spillFailure('write', file, error)

function spillFailure(action: 'read' | 'write', file: string, error: unknown): RegopsError {
  return new RegopsError(`cannot ${action} the sweep's spill file ${file}: ${errorMessage(error)}`, ExitCode.Partial, {
    code: action === 'read' ? 'SPILL_UNREADABLE' : 'SPILL_UNWRITABLE',
    cause: error,
  })
}

/**
 * A shard's marks file larger than this is split into a file per merge unit before it is sorted, so that
 * a unit's marks are sorted at once rather than the shard's: about 60,000 marks. At 10^9 blobs a shard
 * has millions (a few hundred MiB of strings, and the sort's copy); a smaller file is read whole, which
 * spares a small registry 16 files per shard. REGOPS_SPLIT_MARKS_BYTES sets it (0: split every spilled
 * shard), for the tests that compare both ways against the registry's GC.
 */
export const SPLIT_MARKS_BYTES = sizeFromEnvironment('REGOPS_SPLIT_MARKS_BYTES', 4 * 1024 * 1024)

/** A non-negative integer from the environment, or the default when unset or not one. */
function sizeFromEnvironment(name: string, fallback: number): number {
  const text = process.env[name]
  const value = Number(text)
  return text !== undefined && text !== '' && Number.isSafeInteger(value) && value >= 0 ? value : fallback
}

/** Lines buffered per unit while a shard's marks are split by unit. */
const SPLIT_FLUSH_LINES = 4096

/** A shard's marks, sorted and deduplicated, handed out a unit at a time (units asked in increasing order). */
export interface UnitMarks {
  read(unit: string): Promise<string[]>
  dispose(): Promise<void>
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
    return sortedDigests(await this.lines.read(shard))
  }

  /**
   * The shard's marks a unit (its first `unitLength` hex characters) at a time. Marks are written in walk
   * order, so a unit's marks are anywhere in the shard's file: a large file is first split into a file
   * per unit (one pass, buffered appends), then each unit's file is read and sorted when asked for.
   */
  async units(shard: string, unitLength: number, splitBytes = SPLIT_MARKS_BYTES): Promise<UnitMarks> {
    if ((await this.lines.fileSize(shard)) <= splitBytes) {
      const marks = await this.read(shard)
      let next = 0
      return {
        read: async (unit) => {
          const low = `sha256:${unit}`
          while (next < marks.length && marks[next]! < low) next++
          const first = next
          while (next < marks.length && marks[next]!.startsWith(low)) next++
          return marks.slice(first, next)
        },
        dispose: async () => {},
      }
    }
    const dir = join(this.lines.dir, `${shard}.units`)
    try {
      await mkdir(dir, {recursive: true})
    } catch (error) {
      throw spillUnwritable(dir, error)
    }
    const buffered = new Map<string, string[]>()
    const write = async (unit: string, lines: string[]): Promise<void> => {
      const file = join(dir, unit)
      try {
        await appendFile(file, lines.join('\n') + '\n')
      } catch (error) {
        throw spillUnwritable(file, error)
      }
      lines.length = 0
    }
    for await (const chunk of this.lines.lineChunks(shard)) {
      for (const hex of chunk) {
        const unit = hex.slice(0, unitLength)
        let lines = buffered.get(unit)
        if (!lines) buffered.set(unit, (lines = []))
        lines.push(hex)
        if (lines.length >= SPLIT_FLUSH_LINES) await write(unit, lines)
      }
    }
    for (const [unit, lines] of buffered) if (lines.length > 0) await write(unit, lines)
    return {
      read: async (unit) => {
        if (!buffered.has(unit)) return []
        const file = join(dir, unit)
        let text: string
        try {
          text = await readFile(file, 'utf8')
        } catch (error) {
          throw spillUnreadable(file, error)
        }
        await rm(file, {force: true})
        return sortedDigests(text.split('\n').filter(Boolean))
      },
      dispose: () => rm(dir, {recursive: true, force: true}),
    }
  }
}

/** Hex digests as sorted, deduplicated `sha256:` digests. */
function sortedDigests(hexes: string[]): string[] {
  hexes.sort()
  const out: string[] = []
  for (const hex of hexes) if (out[out.length - 1] !== `sha256:${hex}`) out.push(`sha256:${hex}`)
  return out
}
