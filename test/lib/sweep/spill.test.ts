// The sweep's per-shard lines: held in memory while few, spilled to a file per shard past a bound, and
// handed back from the filesystem listing worker either way.
import {after, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, readdir, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {MarkSpill, ShardLines} from '../../../src/lib/sweep/spill.js'
import {enumerateBlobs} from '../../../src/lib/sweep/enumerate.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {writeSampleRegistry} from '../../../src/lib/quickstart/sample.js'
import type {FileRegionConfig} from '../../../src/lib/config/config.js'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

const SHARDS = Array.from({length: 256}, (_, i) => i.toString(16).padStart(2, '0'))

async function everyShard(lines: Pick<ShardLines, 'read'>): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {}
  for (const shard of SHARDS) {
    const read = await lines.read(shard)
    if (read.length > 0) out[shard] = read
  }
  return out
}

test('lines stay in memory below the bound, go to files past it, and read back the same in order', async () => {
  const written = Array.from({length: 10}, (_, i) => [i % 2 ? 'a0' : '0b', `line ${i}`] as const)
  const expected = {
    '0b': ['line 0', 'line 2', 'line 4', 'line 6', 'line 8'],
    a0: ['line 1', 'line 3', 'line 5', 'line 7', 'line 9'],
  }

  const held = ShardLines.create(SHARDS, 'spilltest')
  cleanups.push(() => held.dispose())
  for (const [shard, line] of written) held.add(shard, line)
  held.flushAll()
  assert.deepEqual(await readdir(held.dir), [], 'no file for a handful of lines')
  assert.deepEqual(await everyShard(held), expected)

  const spilled = ShardLines.create(SHARDS, 'spilltest', 3)
  cleanups.push(() => spilled.dispose())
  for (const [shard, line] of written) spilled.add(shard, line)
  // Past the bound every line so far is on disk; what follows is buffered until a flush or a read.
  assert.deepEqual((await readdir(spilled.dir)).sort(), ['0b', 'a0'])
  assert.deepEqual(await everyShard(spilled), expected)
  spilled.flushAll()
  assert.deepEqual(await everyShard(spilled), expected)
})

test('the filesystem listing worker hands back the same listing whether it held it or spilled it', async () => {
  const root = await mkdtemp(join(tmpdir(), 'regops-spill-store-'))
  cleanups.push(() => rm(root, {recursive: true, force: true}))
  const registryRoot = join(root, 'docker/registry/v2')
  const driver = new FilesystemDriver('spill', registryRoot)
  await writeSampleRegistry(driver, root)
  const region: FileRegionConfig = {
    name: 'spill',
    kind: 'file',
    url: `file://${registryRoot}`,
    root: registryRoot,
    concurrency: 8,
  }
  const options = {concurrency: 8, onProblem: (p: unknown) => assert.fail(`problem: ${JSON.stringify(p)}`)}

  const inThread = ShardLines.create(SHARDS, 'spill-a').sibling('.blobs')
  cleanups.push(() => inThread.dispose())
  const done = await enumerateBlobs(driver, SHARDS, inThread, options)
  assert.equal(done.completed.length, 256)
  const expected = await everyShard(inThread)
  assert.ok(Object.values(expected).flat().length >= 10, 'the sample store has blobs to list')

  // The worker thread loads the built module: under the test runner's tsx hooks, Node 20 cannot start a
  // worker from TypeScript source (scripts/test.sh builds first).
  const built = (await import(
    new URL('../../../dist/lib/sweep/enumerate.js', import.meta.url).href
  )) as typeof import('../../../src/lib/sweep/enumerate.js')
  const builtSpill = (await import(
    new URL('../../../dist/lib/sweep/spill.js', import.meta.url).href
  )) as typeof import('../../../src/lib/sweep/spill.js')
  for (const memoryLines of [0, 2, 1_000_000]) {
    const lines = builtSpill.ShardLines.create(SHARDS, `spill-w${memoryLines}`, memoryLines).sibling('.blobs')
    cleanups.push(() => lines.dispose())
    const result = await built.enumerateBlobsInWorker(region, SHARDS, lines, options)
    assert.equal(result.completed.length, 256)
    assert.deepEqual(await everyShard(lines), expected, `memoryLines ${memoryLines}`)
    const files = await readdir(lines.dir)
    assert.equal(files.length > 0, memoryLines < 1_000_000, `files written with memoryLines ${memoryLines}`)
  }
})

test('readUnits hands a shard back a unit at a time, the same lines in the same order, held or spilled', async () => {
  // Sorted lines of shard ab over a few units, with the last ones still buffered when read (spilled
  // mode keeps up to a flush's worth in memory): readUnits must join the file and the buffer.
  const hexes = Array.from({length: 3000}, (_, i) => `ab${((i * 7919) % 4096).toString(16).padStart(3, '0')}${i}`)
  const sorted = [...new Set(hexes)].sort()
  const lines = sorted.map((hex) => `${hex} 10 1700000000000`)
  for (const memoryLines of [1_000_000, 100, 0]) {
    const spill = ShardLines.create(SHARDS, 'unittest', memoryLines)
    cleanups.push(() => spill.dispose())
    for (const line of lines) spill.add('ab', line)
    const units: string[] = []
    const back: string[] = []
    let largest = 0
    for await (const {unit, lines: unitLines} of spill.readUnits('ab', 3)) {
      units.push(unit)
      largest = Math.max(largest, unitLines.length)
      for (const line of unitLines) {
        assert.equal(line.slice(0, 3), unit, `line ${line} handed in unit ${unit}`)
        back.push(line)
      }
    }
    assert.deepEqual(back, lines, `memoryLines ${memoryLines}`)
    assert.deepEqual(units, [...new Set(lines.map((line) => line.slice(0, 3)))], 'each unit once, in order')
    assert.equal(units.length, 16)
    assert.ok(largest < lines.length / 8, `${largest} lines held at once of ${lines.length}`)
    assert.deepEqual(await spill.read('ab'), lines, 'read() still gives the whole shard')
  }
})

test('readUnits refuses a shard whose units go backwards (an unsorted listing), spilled or held', async () => {
  // Held in memory, in the buffered tail of a spilled shard, and inside its file (past a flush's worth).
  for (const [memoryLines, before] of [
    [1_000_000, 0],
    [0, 0],
    [0, 300],
  ] as const) {
    const spill = ShardLines.create(SHARDS, 'unittest', memoryLines)
    cleanups.push(() => spill.dispose())
    for (let i = 0; i < before; i++) spill.add('ab', `ab0${i.toString(16).padStart(4, '0')} 1 1`)
    for (const hex of ['ab1', 'ab2', 'ab1f']) spill.add('ab', `${hex} 1 1`)
    for (let i = 0; i < before; i++) spill.add('ab', `ab3${i.toString(16).padStart(4, '0')} 1 1`)
    await assert.rejects(
      async () => {
        for await (const unit of spill.readUnits('ab', 3)) void unit
      },
      (error: Error & {exitCode?: number}) =>
        /not in strictly increasing byte order \('ab2 1 1' then 'ab1f 1 1'\)/.test(error.message) &&
        error.exitCode === 4,
    )
  }
})

test('marks handed out a unit at a time: sorted, deduplicated, the same whether the shard is split by unit or read whole', async () => {
  // Marks in walk order: shuffled, with repeats (a layer many manifests share), over every unit of shard
  // ab but one (af: never marked), and a few in another shard.
  const random = (() => {
    let x = 7
    return () => (x = (x * 48271) % 2147483647) / 2147483647
  })()
  const hexOf = (i: number) => `ab${((i * 7919) % 4096).toString(16).padStart(3, '0')}${String(i).padStart(59, '0')}`
  const marks: string[] = []
  for (let i = 0; i < 5000; i++) {
    const hex = hexOf(Math.floor(random() * 2500))
    if (!hex.startsWith('abf')) marks.push(`sha256:${hex}`)
  }
  const expected = [...new Set(marks)].sort()
  for (const [memoryLines, splitBytes] of [
    [1_000_000, 0],
    [0, 1 << 30],
    [0, 0],
    [100, 0],
  ] as const) {
    const spill = new MarkSpill(ShardLines.create(SHARDS, 'marks', memoryLines))
    cleanups.push(() => spill.lines.dispose())
    for (const digest of marks) spill.add(digest)
    spill.add(`sha256:cd${'0'.repeat(62)}`)
    // 100: the last lines are still buffered in memory when the shard is split (not flushed).
    if (memoryLines !== 100) spill.lines.flushAll()
    const split = memoryLines < 1_000_000 && splitBytes === 0
    const units = await spill.units('ab', 3, splitBytes)
    const back: string[] = []
    let largest = 0
    // Every other unit is skipped, as the merge skips units without blobs: skipping loses nothing after.
    for (let u = 0; u < 16; u += u === 4 ? 2 : 1) {
      const unit = `ab${u.toString(16)}`
      const got = await units.read(unit)
      assert.deepEqual(
        got,
        expected.filter((d) => d.startsWith(`sha256:${unit}`)),
        `unit ${unit}, ${memoryLines}/${splitBytes}`,
      )
      largest = Math.max(largest, got.length)
      back.push(...got)
    }
    assert.deepEqual(
      back,
      expected.filter((d) => !d.startsWith('sha256:ab5')),
    )
    assert.ok(largest < expected.length / 8, `${largest} marks at once of ${expected.length}`)
    const unitDir = join(spill.lines.dir, 'ab.units')
    assert.equal(
      await readdir(unitDir).then(
        () => true,
        () => false,
      ),
      split,
      `unit files written: ${split}`,
    )
    await units.dispose()
    await assert.rejects(readdir(unitDir), /ENOENT/, 'the unit files go with the shard')
    assert.deepEqual(await spill.read('cd'), [`sha256:cd${'0'.repeat(62)}`], 'other shards untouched')
  }
})
