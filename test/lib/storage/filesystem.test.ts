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
