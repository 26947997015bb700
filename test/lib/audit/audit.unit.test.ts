// The pure parts of the audit: the k-way merge, the classification of one blob's row, the sampled bound,
// the inventory's CSV lines.
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {UNKNOWN, inBatches, mergeSorted, mergeSortedBatches} from '../../../src/lib/audit/merge.js'
import {classifyBlob, corruptionBound, type BlobCopy} from '../../../src/lib/audit/classify.js'
import {Bounded} from '../../../src/lib/audit/verify.js'
import {parseCsvLine} from '../../../src/lib/storage/inventory.js'

async function* keys(...list: string[]): AsyncIterable<{key: string}> {
  for (const key of list) yield {key}
}

async function* failingAfter(first: string[], error: Error): AsyncIterable<{key: string}> {
  for (const key of first) yield {key}
  throw error
}

async function collect<T>(rows: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const row of rows) out.push(row)
  return out
}

const show = (slot: unknown) => (slot === UNKNOWN ? '?' : slot === undefined ? '-' : '+')

test('merge: each key once, in byte order, with what every source holds', async () => {
  const failures: unknown[] = []
  const rows = await collect(mergeSorted([keys('a', 'c', 'e'), keys('b', 'c'), keys()], (f) => failures.push(f)))
  assert.deepEqual(
    rows.map((r) => `${r.key}:${r.slots.map(show).join('')}`),
    ['a:+--', 'b:-+-', 'c:++-', 'e:+--'],
  )
  assert.deepEqual(failures, [])
})

test('merge: a source that fails is unknown from then on, never absent', async () => {
  const failures: Array<{source: number}> = []
  const rows = await collect(
    mergeSorted([keys('a', 'b', 'c'), failingAfter(['a'], new Error('page 2: 500'))], (f) => failures.push(f)),
  )
  assert.deepEqual(
    rows.map((r) => `${r.key}:${r.slots.map(show).join('')}`),
    ['a:++', 'b:+?', 'c:+?'],
  )
  assert.equal(failures.length, 1)
  assert.equal(failures[0].source, 1)
})

test('merge: a source going backwards is a failure (the merge would pair the wrong keys)', async () => {
  const failures: unknown[] = []
  const rows = await collect(mergeSorted([keys('a', 'b'), keys('b', 'a')], (f) => failures.push(f)))
  assert.equal(failures.length, 1, 'reported, so the audit exits 3 instead of trusting the rows')
  assert.deepEqual(
    rows.map((r) => `${r.key}:${r.slots.map(show).join('')}`),
    ['a:+-', 'b:++'],
  )
})

async function* pages(...list: Array<string[] | Error>): AsyncIterable<Array<{key: string}>> {
  for (const page of list) {
    if (page instanceof Error) throw page
    yield page.map((key) => ({key}))
  }
}

const batchedRows = async (sources: Array<AsyncIterable<Array<{key: string}>>>, failures: unknown[], per = 1000) =>
  (await collect(mergeSortedBatches(sources, (f) => failures.push(f), per))).map((rows) =>
    rows.map((r) => `${r.key}:${r.slots.map(show).join('')}`),
  )

test('batched merge: keys across page boundaries, empty pages, rows handed over in batches', async () => {
  const failures: unknown[] = []
  const batches = await batchedRows([pages(['a', 'c'], [], ['e']), pages(['b'], ['c', 'd']), pages()], failures, 2)
  assert.deepEqual(batches, [['a:+--', 'b:-+-'], ['c:++-', 'd:-+-'], ['e:+--']])
  assert.deepEqual(failures, [])
})

test('batched merge: a source failing between pages is unknown from then on; going backwards inside a page fails', async () => {
  const failures: Array<{source: number}> = []
  const failed = await batchedRows([pages(['a', 'b', 'c']), pages(['a'], new Error('page 2: 500'))], failures)
  assert.deepEqual(failed.flat(), ['a:++', 'b:+?', 'c:+?'])
  assert.deepEqual(
    failures.map((f) => f.source),
    [1],
  )
  const unsorted: Array<{source: number}> = []
  const rows = await batchedRows([pages(['a', 'c', 'b', 'd']), pages(['b'], ['d'])], unsorted)
  assert.deepEqual(rows.flat(), ['a:+-', 'b:-+', 'c:+-', 'd:?+'])
  assert.deepEqual(
    unsorted.map((f) => f.source),
    [0],
  )
})

test('inBatches: the items read before a failure are handed over, then the failure', async () => {
  const seen: string[][] = []
  await assert.rejects(async () => {
    for await (const batch of inBatches(failingAfter(['a', 'b', 'c'], new Error('cut')), 2))
      seen.push(batch.map((b) => b.key))
  }, /cut/)
  assert.deepEqual(seen, [['a', 'b'], ['c']])
})

test('Bounded: never more than its limit at once, with several callers feeding it; wait sees every task and the first error', async () => {
  const pool = new Bounded(3)
  let active = 0
  let peak = 0
  let done = 0
  const tick = () => new Promise<void>((resolve) => setImmediate(resolve))
  const task = (ticks: number) => async () => {
    peak = Math.max(peak, ++active)
    for (let i = 0; i < ticks; i++) await tick()
    active--
    done++
  }
  // Three callers, each starting a task as soon as it gets a slot: a freed slot is contended.
  await Promise.all(
    [0, 1, 2].map(async (caller) => {
      for (let i = 0; i < 40; i++) await pool.run(task(((i * 7 + caller * 3) % 4) + 1))
    }),
  )
  await pool.wait()
  assert.equal(done, 120)
  assert.equal(peak, 3)
  await pool.run(async () => {
    throw new Error('first')
  })
  await pool.run(async () => {
    await tick()
    throw new Error('second')
  })
  await assert.rejects(pool.wait(), /first/)
  await pool.wait()
})

test('Bounded: a freed slot goes to the caller waiting for it, not to one arriving before it resumes', async () => {
  // A caller arriving a few microtasks after a task ends (as a comparison let go by that end does) must queue.
  for (let hops = 0; hops < 10; hops++) {
    const pool = new Bounded(1)
    let active = 0
    let peak = 0
    let open!: () => void
    const gate = new Promise<void>((resolve) => (open = resolve))
    const body = async () => {
      peak = Math.max(peak, ++active)
      await new Promise<void>((resolve) => setImmediate(resolve))
      active--
    }
    await pool.run(async () => {
      peak = Math.max(peak, ++active)
      await gate
      active--
    })
    const waiter = pool.run(body)
    const arriving = (async () => {
      await gate
      for (let i = 0; i < hops; i++) await null
      await pool.run(body)
    })()
    open()
    await Promise.all([waiter, arriving])
    await pool.wait()
    assert.equal(peak, 1, `a caller arriving ${hops} microtasks after the end`)
  }
})

const old = new Date('2024-01-01T00:00:00Z')
const fresh = new Date('2024-01-02T00:00:00Z')
const cutoff = new Date('2024-01-01T12:00:00Z')
const regions = ['eu', 'us', 'lab']
const copy = (size: number, at = old): BlobCopy => ({size, lastModified: at})

function verdict(
  copies: BlobCopy[],
  extra: {
    referenced?: boolean
    databaseSize?: number
    links?: Array<{region: string; key: string}>
    level?: 'presence' | 'size'
    databaseUsed?: boolean
  } = {},
) {
  const row = {
    digest: 'sha256:' + 'a'.repeat(64),
    key: 'k',
    copies,
    referenced: extra.referenced ?? true,
    databaseSize: extra.databaseSize,
    links: extra.links ?? [],
  }
  return classifyBlob(row, regions, {
    level: extra.level ?? 'size',
    cutoff,
    databaseUsed: extra.databaseUsed ?? extra.databaseSize !== undefined,
  }).findings.map((f) => `${f.kind}@${f.region}`)
}

test('classify: the table of rules', () => {
  assert.deepEqual(verdict([copy(5), copy(5), copy(5)]), [], 'everywhere, same size')
  assert.deepEqual(verdict([copy(5), undefined, copy(5)]), ['missing@us'], 'absent and referenced')
  assert.deepEqual(verdict([copy(5), undefined, copy(5, fresh)]), ['pending@lab'], 'absent while a copy is fresh')
  assert.deepEqual(
    verdict([undefined, undefined, copy(5)], {referenced: false}),
    ['extra@lab'],
    'in one region, referenced nowhere',
  )
  assert.deepEqual(
    verdict([copy(5), copy(5), copy(5)], {referenced: false}),
    [],
    "unreferenced everywhere is the sweep's business",
  )
  assert.deepEqual(verdict([copy(5), 'unknown', copy(5)]), [], 'an unknown region is never missing')
  assert.deepEqual(verdict([copy(5), copy(5), copy(5)], {databaseSize: 5}), [], 'everywhere, the size of its row')
  assert.deepEqual(
    verdict([copy(5), copy(5), copy(5)], {databaseSize: 7}),
    ['size_mismatch@eu', 'size_mismatch@us', 'size_mismatch@lab'],
    'everywhere at one size, not the size of its row',
  )
  assert.deepEqual(
    verdict([copy(5), copy(5), copy(5)], {referenced: false, databaseUsed: true}),
    ['extra@eu', 'extra@us', 'extra@lab'],
    'everywhere, with no row in the database and referenced nowhere',
  )
  assert.deepEqual(
    verdict([copy(5), copy(5), copy(3)]),
    ['size_mismatch@lab'],
    'the size most regions hold is expected',
  )
  assert.deepEqual(verdict([copy(5), copy(5), copy(3)], {level: 'presence'}), [], 'no sizes at presence level')
  assert.deepEqual(
    verdict([copy(5), copy(3), copy(3)], {databaseSize: 5}),
    ['size_mismatch@us', 'size_mismatch@lab'],
    "the database's size wins",
  )
  assert.deepEqual(
    verdict(
      [copy(5), copy(3)]
        .concat([undefined])
        .slice(0, 2)
        .concat([copy(7)]),
    ),
    ['size_mismatch@us', 'size_mismatch@lab'],
    "a three-way tie: the primary's size",
  )
  assert.deepEqual(
    verdict([undefined, undefined, undefined], {links: [{region: 'us', key: 'repositories/a/_layers/sha256/x/link'}]}),
    ['dangling_link@us'],
    'a link whose blob no region holds',
  )
})

test('corruption bound at 95%: rule of three with none found, Clopper-Pearson otherwise', () => {
  assert.ok(Math.abs(corruptionBound(1000, 0) - 0.002991) < 1e-5)
  assert.ok(Math.abs(corruptionBound(100, 1) - 0.0466) < 5e-4, String(corruptionBound(100, 1)))
  assert.equal(corruptionBound(0, 0), 1)
})

test('inventory CSV: quoted fields, doubled quotes, URL-encoded keys left to the caller', () => {
  assert.deepEqual(
    parseCsvLine('"b","docker/registry/v2/blobs/sha256/ab/ab%2Bc/data","12","2024-01-01T00:00:00.000Z","e1"'),
    ['b', 'docker/registry/v2/blobs/sha256/ab/ab%2Bc/data', '12', '2024-01-01T00:00:00.000Z', 'e1'],
  )
  assert.deepEqual(parseCsvLine('"a""b",c,'), ['a"b', 'c', ''])
  assert.throws(() => parseCsvLine('"open'))
})
