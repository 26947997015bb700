import {test} from 'node:test'
import assert from 'node:assert/strict'
import {
  LayoutError,
  parseKey,
  pathFor,
  parseLink,
  shardsFor,
  ALL_SHARDS,
  isRepositoryName,
  isTag,
  type PathSpec,
} from '../../../src/lib/storage/layout.js'
import {InvalidInputError} from '../../../src/lib/errors.js'

const HEX = 'ab'.padEnd(64, '0')
const D = `sha256:${HEX}`
const HEX512 = 'cd'.padEnd(128, '1')
const D512 = `sha512:${HEX512}`

const table: Array<[PathSpec, string]> = [
  [{kind: 'blob-data', digest: D}, `blobs/sha256/ab/${HEX}/data`],
  [{kind: 'blob-data', digest: D512}, `blobs/sha512/cd/${HEX512}/data`],
  [
    {kind: 'layer-link', repository: 'library/ubuntu', digest: D},
    `repositories/library/ubuntu/_layers/sha256/${HEX}/link`,
  ],
  [
    {kind: 'manifest-revision-link', repository: 'a', digest: D},
    `repositories/a/_manifests/revisions/sha256/${HEX}/link`,
  ],
  [
    {kind: 'tag-current-link', repository: 'team/app.web', tag: 'v1.2.3'},
    `repositories/team/app.web/_manifests/tags/v1.2.3/current/link`,
  ],
  [
    {kind: 'tag-index-link', repository: 'a-b/c__d', tag: 'latest', digest: D},
    `repositories/a-b/c__d/_manifests/tags/latest/index/sha256/${HEX}/link`,
  ],
  [
    {kind: 'upload-data', repository: 'x/y', uuid: '0b9e1c3a-1111-2222-3333-444455556666'},
    'repositories/x/y/_uploads/0b9e1c3a-1111-2222-3333-444455556666/data',
  ],
  [{kind: 'upload-started-at', repository: 'x', uuid: 'abc'}, 'repositories/x/_uploads/abc/startedat'],
  [
    {kind: 'upload-hash-state', repository: 'x', uuid: 'abc', algorithm: 'sha256', offset: 1024},
    'repositories/x/_uploads/abc/hashstates/sha256/1024',
  ],
]

test('pathFor and parseKey are inverses over the layout table', () => {
  for (const [spec, key] of table) {
    assert.equal(pathFor(spec), key, `pathFor ${JSON.stringify(spec)}`)
    assert.deepEqual(parseKey(key), spec, `parseKey ${key}`)
  }
})

test('unparsable keys give a LayoutError that carries the key', () => {
  const bad = [
    'blobs/sha256/zz/' + HEX + '/data', // fan-out does not match
    'blobs/sha256/ab/' + HEX, // no /data
    'blobs/md5/ab/abcdef/data',
    'blobs/sha256/ab/ABCDEF' + HEX.slice(6) + '/data', // upper-case hex
    // the length of a sha256 blob's data key, each wrong in one place (its fast path must not take them)
    'blobs/sha256/ab/' + HEX.slice(0, 63) + 'g/data',
    'blobs/sha256/ab/' + HEX + '/datx',
    'blobs/sha256/ab' + HEX + '//data',
    'blobs/sha256/ba/' + HEX + '/data',
    'blobs/sha257/ab/' + HEX + '/data',
    'repositories/UPPER/_layers/sha256/' + HEX + '/link',
    'repositories/_layers/sha256/' + HEX + '/link', // no name
    'repositories/a/_manifests/tags/-bad/current/link',
    'repositories/a/_manifests/revisions/sha256/short/link',
    'repositories/a/_weird/x',
    'other/thing',
  ]
  for (const key of bad) {
    assert.throws(
      () => parseKey(key),
      (error: unknown) => error instanceof LayoutError && error.key === key && error.message.includes(key),
      key,
    )
  }
})

test('pathFor refuses invalid names, tags and digests', () => {
  assert.throws(() => pathFor({kind: 'blob-data', digest: 'sha256:xyz'}), InvalidInputError)
  assert.throws(() => pathFor({kind: 'layer-link', repository: 'Bad/Name', digest: D}), /invalid repository name/)
  assert.throws(() => pathFor({kind: 'tag-current-link', repository: 'a', tag: '.hidden'}), /invalid tag/)
  assert.throws(() => pathFor({kind: 'layer-link', repository: 'a/../b', digest: D}), InvalidInputError)
})

test('OCI name and tag grammar', () => {
  for (const ok of ['a', 'a/b', 'library/ubuntu', 'a.b', 'a_b', 'a__b', 'a---b', 'a0/b1/c2'])
    assert.ok(isRepositoryName(ok), ok)
  for (const bad of ['', 'A', 'a/', '/a', 'a//b', 'a___b', '-a', 'a-', 'a..b', 'a/_b', 'x'.repeat(256)])
    assert.ok(!isRepositoryName(bad), bad)
  for (const ok of ['latest', 'v1.0', '_x', 'A-b_c.d', 'x'.repeat(128)]) assert.ok(isTag(ok), ok)
  for (const bad of ['', '.x', '-x', 'x'.repeat(129), 'a/b', 'a:b']) assert.ok(!isTag(bad), bad)
})

test('link files: a digest, or a CORRUPT_LINK error naming the key', () => {
  assert.equal(parseLink(Buffer.from(D), 'k'), D)
  assert.equal(parseLink(`${D}\n`, 'k'), D)
  assert.throws(
    () => parseLink(Buffer.from('garbage\x00\x01'), 'repositories/a/_layers/sha256/x/link'),
    (e: unknown) =>
      e instanceof InvalidInputError &&
      e.code === 'CORRUPT_LINK' &&
      e.message.includes('repositories/a/_layers/sha256/x/link'),
  )
})

test('shards partition the 256 prefixes into contiguous ranges', () => {
  for (const n of [1, 2, 3, 7, 256]) {
    const all = Array.from({length: n}, (_, i) => shardsFor(i, n)).flat()
    assert.deepEqual(all, [...ALL_SHARDS], `n=${n}`)
  }
})
