// The README's command reference is generated from the built command definitions (oclif.manifest.json);
// this fails when a definition changed and `npm run readme` was not run.
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SCRIPT = join(ROOT, 'scripts', 'readme.mjs')

function check(...args: string[]) {
  return spawnSync(process.execPath, [SCRIPT, '--check', ...args], {encoding: 'utf8'})
}

test('the README command reference matches the command definitions', () => {
  const res = check()
  assert.equal(res.status, 0, `${res.stderr}`)
})

test('a changed flag description makes the reference stale', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'regops-readme-'))
  try {
    const manifest = JSON.parse(await readFile(join(ROOT, 'oclif.manifest.json'), 'utf8'))
    const minAge = manifest.commands['sweep:blobs'].flags['min-age']
    assert.ok(minAge?.summary, 'sweep blobs has a --min-age flag with a summary')
    minAge.summary = `${minAge.summary} (reworded)`
    const changed = join(dir, 'manifest.json')
    await writeFile(changed, JSON.stringify(manifest))
    const res = check('--manifest', changed)
    assert.equal(res.status, 1, res.stderr)
    assert.match(res.stderr, /command reference is stale/)
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
    assert.match(readme, /--min-age <duration>/, 'flags, with their value shapes, are in the README')
    assert.match(readme, /env: `REGOPS_DATABASE_URL`/, 'environment bindings are in the README')
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
})
