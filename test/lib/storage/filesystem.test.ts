import {mkdtemp, rm, writeFile, mkdir} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {InvalidInputError} from '../../../src/lib/errors.js'
import {storageConformance} from './conformance.js'

storageConformance('filesystem', async () => {
  const a = await mkdtemp(join(tmpdir(), 'regops-fs-a-'))
  const b = await mkdtemp(join(tmpdir(), 'regops-fs-b-'))
  return {
    driver: new FilesystemDriver('a', a),
    other: new FilesystemDriver('b', b),
    cleanup: async () => {
      await rm(a, {recursive: true, force: true})
      await rm(b, {recursive: true, force: true})
    },
  }
})

test('filesystem driver refuses keys that escape the root, and hides its temp files', async () => {
  const root = await mkdtemp(join(tmpdir(), 'regops-fs-'))
  try {
    const driver = new FilesystemDriver('a', root)
    await assert.rejects(driver.readSmall('../etc/passwd', 10), InvalidInputError)
    await mkdir(join(root, 'x'), {recursive: true})
    await writeFile(join(root, 'x', '.regops-tmp-123'), 'partial')
    await writeFile(join(root, 'x', 'real'), 'r')
    const keys: string[] = []
    for await (const o of driver.list('x/')) keys.push(o.key)
    assert.deepEqual(keys, ['x/real'])
  } finally {
    await rm(root, {recursive: true, force: true})
  }
})

test('filesystem listing: keys in UTF-8 byte order where UTF-16 order differs (a surrogate pair)', async () => {
  const root = await mkdtemp(join(tmpdir(), 'regops-fs-'))
  try {
    const driver = new FilesystemDriver('a', root)
    // U+FF5E sorts before U+1F600 in UTF-8 (ef bd 9e < f0 9f 98 80), after its surrogates in UTF-16.
    for (const name of ['\u{1f600}', '\uff5e', 'z']) {
      await mkdir(join(root, 'x', name), {recursive: true})
      await writeFile(join(root, 'x', name, 'f'), name)
    }
    const keys: string[] = []
    for await (const o of driver.list('x/')) keys.push(o.key)
    assert.deepEqual(keys, ['x/z/f', 'x/\uff5e/f', 'x/\u{1f600}/f'])
  } finally {
    await rm(root, {recursive: true, force: true})
  }
})

test('filesystem listing with a leafFile hint: the named file is looked up; without it the directory is read', async () => {
  const root = await mkdtemp(join(tmpdir(), 'regops-fs-'))
  try {
    const driver = new FilesystemDriver('a', root)
    const files = ['l/a/link', 'l/b/other', 'l/b/zz', 'l/c/link', 'l/d/link/x', 'l/e-file']
    for (const f of files) {
      await mkdir(join(root, f, '..'), {recursive: true})
      await writeFile(join(root, f), f)
    }
    const list = async (options = {}) => {
      const found: Array<[string, number]> = []
      for await (const o of driver.list('l/', options)) found.push([o.key, o.size])
      return found
    }
    const plain = await list()
    assert.deepEqual(
      plain.map(([k]) => k),
      files,
    )
    const hinted = await list({leafFile: (dir: string) => (/^l\/[a-z]\/$/.test(dir) ? 'link' : undefined)})
    // b has no link (its entries are listed), d's link is a directory (read as usual): the same keys.
    assert.deepEqual(hinted, plain)
    // startAfter past every key, or before them all: nothing, or everything.
    assert.deepEqual(await list({startAfter: 'l/z', leafFile: () => 'link'}), [])
    assert.deepEqual(await list({startAfter: 'm', leafFile: () => 'link'}), [])
    assert.deepEqual(await list({startAfter: 'a', leafFile: () => 'link'}), plain)
    // startAfter inside the hinted part: only later keys.
    const later = await list({startAfter: 'l/a/link', leafFile: () => 'link'})
    assert.deepEqual(
      later.map(([k]) => k),
      files.slice(1),
    )
  } finally {
    await rm(root, {recursive: true, force: true})
  }
})
