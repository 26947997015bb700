import {describe, test, beforeEach, afterEach} from 'node:test'
import assert from 'node:assert/strict'
import {Readable} from 'node:stream'
import {compareKeys, copyBetween, type StorageDriver} from '../../../src/lib/storage/driver.js'
import {NotFoundError, InvalidInputError} from '../../../src/lib/errors.js'

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

/**
 * One suite for every storage driver. `make` returns a fresh, empty storage root each call and
 * `other` a second driver (another region) for cross-driver copies. Every test gets its own fresh pair,
 * so each runs alone (`--test-name-pattern`) as well as in order.
 */
export function storageConformance(
  name: string,
  make: () => Promise<{driver: StorageDriver; other: StorageDriver; cleanup(): Promise<void>}>,
): void {
  describe(`storage conformance: ${name}`, () => {
    let driver: StorageDriver
    let other: StorageDriver
    let cleanup: () => Promise<void>

    beforeEach(async () => {
      ;({driver, other, cleanup} = await make())
    })
    afterEach(async () => {
      await driver?.close()
      await other?.close()
      await cleanup?.()
    })

    // Names chosen so that a naive directory walk gives a different order from S3's byte order.
    // (No key is both an object and a prefix of others: a filesystem cannot hold that.)
    const tricky = [
      't/a-b/x',
      't/a.b/x',
      't/a/b',
      't/a_b/x',
      't/a0',
      't/A',
      't/a/b-c',
      't/a/b0/c',
      't/z',
      't/ä',
      't/a~',
    ]
    const writeTricky = async () => {
      for (const key of [...tricky].reverse()) await driver.write(key, Buffer.from(key))
    }

    test('write, stat, readSmall, read with a range', async () => {
      await driver.write('w/one', Buffer.from('hello world'))
      const info = await driver.stat('w/one')
      assert.equal(info?.key, 'w/one')
      assert.equal(info?.size, 11)
      assert.ok(info!.lastModified.getTime() > Date.now() - 10 * 60_000)
      assert.equal((await driver.readSmall('w/one', 100)).toString(), 'hello world')
      assert.equal((await readAll(await driver.read('w/one', {start: 6, end: 10}))).toString(), 'world')
      assert.equal((await readAll(await driver.read('w/one', {start: 6}))).toString(), 'world')
      // a streamed write with its size
      await driver.write('w/two', Readable.from([Buffer.from('ab'), Buffer.from('cd')]), 4)
      assert.equal((await driver.readSmall('w/two', 4)).toString(), 'abcd')
      // overwrite is whole
      await driver.write('w/one', Buffer.from('x'))
      assert.equal((await driver.readSmall('w/one', 100)).toString(), 'x')
      assert.equal((await driver.stat('w/one'))?.size, 1)
      // an empty object has no first byte to ask for: still sized
      await driver.write('w/empty', Buffer.alloc(0))
      assert.equal((await driver.stat('w/empty'))?.size, 0)
    })

    test('missing objects: stat undefined, read NotFoundError, delete counts as done', async () => {
      assert.equal(await driver.stat('nope/missing'), undefined)
      await assert.rejects(driver.readSmall('nope/missing', 10), NotFoundError)
      await assert.rejects(async () => readAll(await driver.read('nope/missing')), NotFoundError)
      const result = await driver.deleteMany(['nope/missing'])
      assert.deepEqual(result, {deleted: ['nope/missing'], errors: []})
    })

    test('readSmall refuses an object above its limit', async () => {
      await driver.write('big/x', Buffer.alloc(2048, 1))
      await assert.rejects(
        driver.readSmall('big/x', 1024),
        (e: unknown) => e instanceof InvalidInputError && e.code === 'TOO_LARGE',
      )
    })

    test('list yields every key under a prefix in byte order, also for a-b, a.b, a/b, a_b', async () => {
      await writeTricky()
      const listed = (await collect(driver.list('t/'))).map((o) => o.key)
      const expected = [...tricky].sort(compareKeys)
      assert.deepEqual(listed, expected)
      // a partial-name prefix
      assert.deepEqual(
        (await collect(driver.list('t/a.'))).map((o) => o.key),
        ['t/a.b/x'],
      )
      // sizes come with the listing
      const sized = await collect(driver.list('t/a/'))
      assert.deepEqual(
        sized.map((o) => o.size),
        sized.map((o) => Buffer.byteLength(o.key)),
      )
    })

    test('list resumes strictly after startAfter, also inside a skipped subtree', async () => {
      await writeTricky()
      const expected = [...tricky].sort(compareKeys)
      for (const [i, after] of expected.entries()) {
        const listed = (await collect(driver.list('t/', {startAfter: after}))).map((o) => o.key)
        assert.deepEqual(listed, expected.slice(i + 1), `after ${after}`)
      }
      // a startAfter that is not itself a key
      assert.deepEqual(
        (await collect(driver.list('t/', {startAfter: 't/a/b-'}))).map((o) => o.key),
        expected.filter((k) => compareKeys(k, 't/a/b-') > 0),
      )
    })

    test('listDirectories yields the child prefixes in byte order', async () => {
      await writeTricky()
      const dirs = await collect(driver.listDirectories('t/'))
      assert.deepEqual(dirs, ['t/a-b/', 't/a.b/', 't/a/', 't/a_b/'])
      assert.deepEqual(await collect(driver.listDirectories('t/', {startAfter: 't/a.b/'})), ['t/a/', 't/a_b/'])
      assert.deepEqual(await collect(driver.listDirectories('none/')), [])
    })

    test('list pages through more than one page of keys', async () => {
      const keys = Array.from({length: 1105}, (_, i) => `p/${String(i).padStart(5, '0')}`)
      for (let i = 0; i < keys.length; i += 100)
        await Promise.all(keys.slice(i, i + 100).map((k) => driver.write(k, Buffer.from('x'))))
      const listed = (await collect(driver.list('p/'))).map((o) => o.key)
      assert.equal(listed.length, keys.length)
      assert.deepEqual(listed, keys)
      const deleted = await driver.deleteMany(keys)
      assert.equal(deleted.deleted.length, keys.length)
      assert.deepEqual(deleted.errors, [])
      assert.deepEqual(await collect(driver.list('p/')), [])
    })

    test('copy within a storage and copyBetween two storages', async () => {
      await driver.write('c/src', Buffer.from('payload'))
      await driver.copy('c/src', 'c/dst/deeper')
      assert.equal((await driver.readSmall('c/dst/deeper', 100)).toString(), 'payload')
      await assert.rejects(driver.copy('c/missing', 'c/x'), NotFoundError)
      const info = await copyBetween(driver, other, 'c/src', 'copied/src')
      assert.equal(info.size, 7)
      assert.equal((await other.readSmall('copied/src', 100)).toString(), 'payload')
    })

    test('deleteMany removes exactly the keys named', async () => {
      await driver.write('d/keep', Buffer.from('k'))
      await driver.write('d/go/1', Buffer.from('1'))
      await driver.write('d/go/2', Buffer.from('2'))
      const result = await driver.deleteMany(['d/go/1', 'd/go/2'])
      assert.deepEqual(result.deleted.sort(), ['d/go/1', 'd/go/2'])
      assert.deepEqual(
        (await collect(driver.list('d/'))).map((o) => o.key),
        ['d/keep'],
      )
    })
  })
}
