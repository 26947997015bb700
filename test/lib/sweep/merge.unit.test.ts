// The pure parts of the sweep's plan: the merge of one prefix, and the listing line it reads.
import {describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mergePrefix} from '../../../src/lib/sweep/merge.js'
import {parseListedBlob} from '../../../src/lib/sweep/enumerate.js'
import {RefusedError} from '../../../src/lib/errors.js'

const hex = (c: string) => `ab${c.repeat(62)}`
const line = (h: string, size: number, mtime: number) => `${h} ${size} ${mtime}`
const OLD = 1_000
const CUTOFF = 5_000
const YOUNG = 9_000

describe('mergePrefix', () => {
  test('referenced, too young and candidates in one prefix, with references the listing lacks', () => {
    const listing = [
      line(hex('0'), 10, OLD),
      line(hex('1'), 11, OLD),
      line(hex('2'), 12, YOUNG),
      line(hex('3'), 13, OLD),
      line(hex('5'), 15, OLD),
    ]
    // hex('4') is referenced but not listed (gone, or in another run): it must not shift the walk.
    const references = [`sha256:${hex('1')}`, `sha256:${hex('4')}`, `sha256:${hex('5')}`]
    const merged = mergePrefix(listing, references, CUTOFF)
    assert.deepEqual(merged.scanned, {blobs: 5, bytes: 61})
    assert.equal(merged.referenced, 2)
    assert.deepEqual(merged.tooYoung, {count: 1, bytes: 12})
    assert.deepEqual(
      merged.candidates.map((c) => c.digest),
      [`sha256:${hex('0')}`, `sha256:${hex('3')}`],
    )
    const first = merged.candidates[0]
    assert.equal(first.key, `blobs/sha256/ab/${hex('0')}/data`)
    assert.equal(first.size, 10)
    assert.equal(first.lastModified, new Date(OLD).toISOString())
    assert.equal(first.reason, 'unreferenced')
  })

  test('many references between two listed blobs are stepped over at once', () => {
    const references = ['1', '2', '3', '4', '7'].map((c) => `sha256:${hex(c)}`)
    const merged = mergePrefix([line(hex('0'), 1, OLD), line(hex('7'), 1, OLD)], references, CUTOFF)
    assert.equal(merged.referenced, 1)
    assert.deepEqual(
      merged.candidates.map((c) => c.digest),
      [`sha256:${hex('0')}`],
    )
  })

  test('a blob at exactly the cutoff is too young', () => {
    const merged = mergePrefix([line(hex('0'), 1, CUTOFF)], [], CUTOFF)
    assert.equal(merged.tooYoung.count, 1)
    assert.equal(merged.candidates.length, 0)
  })

  test('the delta set (references found since the import) protects as the sorted references do', () => {
    const listing = [line(hex('0'), 1, OLD), line(hex('1'), 1, OLD)]
    const merged = mergePrefix(listing, [], CUTOFF, new Set([`sha256:${hex('1')}`]))
    assert.equal(merged.referenced, 1)
    assert.deepEqual(
      merged.candidates.map((c) => c.digest),
      [`sha256:${hex('0')}`],
    )
  })

  test('an unsorted or duplicated listing, or unsorted references, is refused', () => {
    assert.throws(() => mergePrefix([line(hex('1'), 1, OLD), line(hex('0'), 1, OLD)], [], CUTOFF), RefusedError)
    assert.throws(
      () => mergePrefix([line(hex('1'), 1, OLD), line(hex('1'), 1, OLD)], [], CUTOFF),
      /not in strictly increasing/,
    )
    assert.throws(
      () => mergePrefix([line(hex('0'), 1, OLD)], [`sha256:${hex('2')}`, `sha256:${hex('1')}`], CUTOFF),
      /references/,
    )
  })

  test('an empty prefix decides nothing', () => {
    assert.deepEqual(mergePrefix([], [`sha256:${hex('1')}`], CUTOFF), {
      scanned: {blobs: 0, bytes: 0},
      referenced: 0,
      tooYoung: {count: 0, bytes: 0},
      candidates: [],
    })
  })
})

test('parseListedBlob reads the listing line the enumeration writes (hex, size, mtime in ms)', () => {
  assert.deepEqual(parseListedBlob(`${hex('9')} 1234 1700000000123`), {
    hex: hex('9'),
    size: 1234,
    lastModified: 1700000000123,
  })
})
