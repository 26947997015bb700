// The README's first command: nothing but Node and npm ci, under a minute, exactly the planted orphans.
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {runCli} from '../helpers/cli.js'

test('regops quickstart finds exactly the planted orphans with both strategies, in under 60 s', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'regops-quickstart-'))
  try {
    const started = Date.now()
    const res = await runCli(['quickstart', '--dir', join(dir, 'qs'), '--json'], {env: {DATABASE_URL: undefined}})
    const seconds = (Date.now() - started) / 1000
    assert.equal(res.code, 0, res.stdout + res.stderr)
    assert.ok(seconds < 60, `took ${seconds}s`)
    const r = res.json
    assert.equal(r.kind, 'quickstart')
    const planted = r.planted.map((o: {digest: string}) => o.digest).sort()
    assert.equal(planted.length, 6)
    assert.deepEqual(r.found.storage, planted)
    assert.deepEqual(r.found.metadata, planted)
    assert.ok(!r.found.storage.includes(r.inFlight))
    assert.equal(r.matches, true)
    // The candidates files are the sweep's own JSON Lines reports.
    const lines = (await readFile(r.sweeps.storage.reportFile, 'utf8')).trim().split('\n')
    assert.equal(lines.length, 6)
    // The text form names each planted orphan too.
    const text = await runCli(['quickstart', '--dir', join(dir, 'qs2')])
    assert.equal(text.code, 0, text.stderr)
    for (const digest of planted) assert.match(text.stdout, new RegExp(`${digest}.*found.*found`))
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
})
