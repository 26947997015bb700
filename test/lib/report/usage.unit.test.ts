import {test} from 'node:test'
import assert from 'node:assert/strict'
import {attributePrefix, sortedUniqueReferences} from '../../../src/lib/report/usage-attribute.js'
import {checkInvariant, type UsageTotals} from '../../../src/lib/report/usage.js'

const hex = (c: string) => c.repeat(64)

test('attributePrefix: groups per listed blob, unreferenced blobs left out, missing references counted', () => {
  const listing = [`${hex('a')} 10 0`, `${hex('b')} 20 0`, `${hex('d')} 40 0`]
  const references = sortedUniqueReferences([
    `${hex('d')} beta`,
    `${hex('a')} beta`,
    `${hex('a')} alpha`,
    `${hex('a')} alpha`,
    `${hex('c')} alpha`,
    `${hex('e')} alpha`,
    `${hex('e')} beta`,
  ])
  const {blobs, missing} = attributePrefix(listing, references)
  assert.deepEqual(blobs, [
    {digest: `sha256:${hex('a')}`, size: 10, groups: ['alpha', 'beta']},
    {digest: `sha256:${hex('d')}`, size: 40, groups: ['beta']},
  ])
  assert.equal(missing, 2, 'c and e are referenced, not listed')
})

test('attributePrefix refuses unsorted references', () => {
  assert.throws(() => attributePrefix([], [`${hex('b')} x`, `${hex('a')} x`]), /strictly increasing/)
})

test('checkInvariant: a category that does not add up is a bug (exit 70)', () => {
  const u = (objects: number, bytes: number) => ({objects, bytes})
  const totals: UsageTotals = {
    listing: u(6, 100),
    referenced: u(2, 30),
    shared: u(1, 10),
    orphaned: u(1, 20),
    orphanedYoung: u(0, 0),
    undecidedBlobs: u(0, 0),
    metadata: u(1, 10),
    uploads: u(1, 10),
    quarantined: u(1, 25),
    outside: u(0, 5),
    multipart: {uploads: 1, parts: 1, bytes: 999},
    invariant: '',
  }
  const groups = [
    {
      name: 'a',
      attributed: u(2, 30),
      exclusive: u(1, 20),
      metadata: u(1, 10),
      uploads: u(1, 10),
      multipart: {uploads: 0, parts: 0, bytes: 0},
    },
  ]
  checkInvariant(totals, groups)
  assert.throws(
    () => checkInvariant({...totals, outside: u(0, 4)}, groups),
    (e: {exitCode?: number; message: string}) => e.exitCode === 70 && /listing 6, 100/.test(e.message),
  )
  assert.throws(() => checkInvariant(totals, [{...groups[0], exclusive: u(1, 19)}]), /shared \+ exclusive/)
})
