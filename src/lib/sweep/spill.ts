import {createWriteStream, type WriteStream} from 'node:fs'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {once} from 'node:events'
import {shardOfDigest} from '../storage/layout.js'

/**
 * The mark set of a storage walk, spilled to one file per two-hex shard instead of held in memory.
 * The sweep reads back one shard at a time (sorted, deduplicated), so memory is one shard's marks,
 * about 1/256 of the whole, however large the registry is.
 */
export class ShardSpill {
  private readonly streams = new Map<string, WriteStream>()
  /** pending lines per shard, written in chunks: one write per digest costs more than the walk */
  private readonly pending = new Map<string, string[]>()
  private closed = false
  count = 0

  private constructor(
    readonly dir: string,
    private readonly shards: ReadonlySet<string>,
  ) {}

  static async create(shards: Iterable<string>): Promise<ShardSpill> {
    return new ShardSpill(await mkdtemp(join(tmpdir(), 'regops-marks-')), new Set(shards))
  }

  /** Records a sha256 digest as referenced. Digests outside this worker's shards are dropped. */
  add(digest: string): void {
    if (!digest.startsWith('sha256:')) return
    const shard = shardOfDigest(digest)
    if (!this.shards.has(shard)) return
    let lines = this.pending.get(shard)
    if (!lines) this.pending.set(shard, (lines = []))
    lines.push(digest.slice(7))
    this.count++
    if (lines.length >= 1024) this.flush(shard, lines)
  }

  private flush(shard: string, lines: string[]): void {
    if (lines.length === 0) return
    let stream = this.streams.get(shard)
    if (!stream) {
      stream = createWriteStream(join(this.dir, shard), {flags: 'a'})
      this.streams.set(shard, stream)
    }
    stream.write(lines.join('\n') + '\n')
    lines.length = 0
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const [shard, lines] of this.pending) this.flush(shard, lines)
    await Promise.all(
      [...this.streams.values()].map(async (stream) => {
        stream.end()
        await once(stream, 'close')
      }),
    )
  }

  /** The shard's marked digests, sorted in byte order and deduplicated. */
  async read(shard: string): Promise<string[]> {
    await this.close()
    let text: string
    try {
      text = await readFile(join(this.dir, shard), 'utf8')
    } catch {
      return []
    }
    const hexes = text.split('\n').filter(Boolean)
    hexes.sort()
    const out: string[] = []
    for (const hex of hexes) if (out[out.length - 1] !== `sha256:${hex}`) out.push(`sha256:${hex}`)
    return out
  }

  async dispose(): Promise<void> {
    await this.close()
    await rm(this.dir, {recursive: true, force: true})
  }
}
