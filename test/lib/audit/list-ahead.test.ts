// The audit's read-ahead listing against plain per-prefix listings of the same filesystem region: ranges
// that fit in one page, a range larger than a page (split into its prefixes, the cut prefix continued after
// its last key read), keys of no prefix in a range, a resumed run starting mid-range.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {ListAhead} from '../../../src/lib/audit/list-ahead.js'
import {ALL_SHARDS} from '../../../src/lib/storage/layout.js'

let root: string
let driver: FilesystemDriver

async function put(key: string): Promise<void> {
  await mkdir(dirname(join(root, key)), {recursive: true})
  await writeFile(join(root, key), key)
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'regops-list-ahead-'))
  driver = new FilesystemDriver('lab', root, 16)
  const writes: Array<Promise<void>> = []
  // Digit 0 holds 1,500 blobs (more than a page: its range is cut), digit 1 a few, the others none.
  for (let i = 0; i < 1500; i++) {
    const hex = '0' + createHash('sha256').update(`blob ${i}`).digest('hex').slice(1)
    writes.push(put(`blobs/sha256/${hex.slice(0, 2)}/${hex}/data`))
  }
  for (let i = 0; i < 40; i++) {
    const hex = '1' + createHash('sha256').update(`small ${i}`).digest('hex').slice(1)
    writes.push(put(`blobs/sha256/${hex.slice(0, 2)}/${hex}/data`))
  }
  await Promise.all(writes)
  // Keys in a range that belong to no prefix, and one outside the layout inside a prefix.
  await put('blobs/sha256/0x/stray')
  await put('blobs/sha256/1/stray')
  await put('blobs/sha256/13/not-a-digest/data')
})

after(async () => {
  await driver.close()
  await rm(root, {recursive: true, force: true})
})

async function keysOf(objects: AsyncIterable<{key: string}>): Promise<string[]> {
  const out: string[] = []
  for await (const o of objects) out.push(o.key)
  return out
}

for (const [name, prefixes] of [
  ['every prefix', ALL_SHARDS],
  ['a resume from the middle of a range', ALL_SHARDS.slice(3)],
  ['one in-flight listing, little room ahead', ALL_SHARDS.slice(0, 40)],
] as const) {
  test(`read ahead = one listing per prefix: ${name}`, async () => {
    const ahead = new ListAhead(driver, [...prefixes], {
      inFlight: name.startsWith('one') ? 1 : 16,
      maxBuffered: name.startsWith('one') ? 10 : 16_000,
    })
    let total = 0
    for (const prefix of prefixes) {
      const expected = await keysOf(driver.list(`blobs/sha256/${prefix}/`))
      assert.deepEqual(await keysOf(ahead.objects(prefix)), expected, `prefix ${prefix}`)
      total += expected.length
    }
    assert.ok(total > 1000, `listed ${total}: a range larger than a page`)
  })
}

test('read ahead holds at most maxBuffered objects, counting a page for each listing in flight', async () => {
  // A listing counts from its first read to its end. Nothing here is parked mid-prefix (no prefix fills a
  // page), so the listings open at once are the ones in flight.
  let open = 0
  let peak = 0
  const counting = {
    list(prefix: string, options?: Parameters<FilesystemDriver['list']>[1]) {
      const source = driver.list(prefix, options)
      return (async function* () {
        open++
        peak = Math.max(peak, open)
        try {
          yield* source
        } finally {
          open--
        }
      })()
    },
  } as unknown as FilesystemDriver
  // Room for one page ahead: the prefix being compared, and at most one listing ahead of it.
  const ahead = new ListAhead(counting, [...ALL_SHARDS], {inFlight: 16, maxBuffered: 1000})
  for (const prefix of ALL_SHARDS) {
    const expected = await keysOf(driver.list(`blobs/sha256/${prefix}/`))
    assert.deepEqual(await keysOf(ahead.objects(prefix)), expected, `prefix ${prefix}`)
  }
  assert.ok(peak >= 1 && peak <= 2, `${peak} listings in flight at once, for room of one page ahead`)
})
