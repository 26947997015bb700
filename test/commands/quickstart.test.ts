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
    // Numbers that agree, or say what they count: every blob in storage is referenced, too young, or an orphan.
    for (const strategy of ['storage', 'metadata']) {
      const sweep = r.sweeps[strategy]
      assert.equal(sweep.scanned.blobs, sweep.referenced + sweep.tooYoung.count + sweep.candidates.count)
      const detail = r.steps.find(
        (s: {step: string}) => s.step === `sweep blobs, strategy ${strategy} (dry-run)`,
      ).detail
      assert.equal(
        detail,
        `${sweep.scanned.blobs} blobs in storage: ${sweep.referenced} referenced (by a manifest or a _layers link younger than 24h), ${sweep.tooYoung.count} unreferenced but younger than 24h, ${sweep.candidates.count} orphans`,
      )
    }
    const importDetail = r.steps.find((s: {step: string}) => s.step === 'import storage into the database').detail
    assert.match(importDetail, new RegExp(`${r.import.blobs} blobs named by a manifest or a _layers link$`))
    // The in-flight layer is kept by its young link (a reference), not for its own age.
    assert.equal(r.sweeps.storage.marked.youngLinks, 1)
    // The upload still being written is one `sweep uploads` finds, as quickstart says.
    assert.deepEqual(r.uploads, {found: 1, abandoned: 0})
    const uploads = await runCli(['sweep', 'uploads', '--config', join(dir, 'qs', 'regops.yaml'), '--json'])
    assert.equal(uploads.code, 0, uploads.stderr)
    assert.equal(uploads.json.uploads, 1)
    assert.equal(uploads.json.abandoned.count, 0)
    // The second region: the audit names exactly the planted drift, the repair fixes it, the re-audit is clean.
    assert.deepEqual(
      r.drift.planted.map((p: {kind: string}) => p.kind),
      ['missing', 'corrupt', 'tag_mismatch'],
    )
    assert.deepEqual(
      r.drift.found.map((f: {kind: string; key: string; region: string}) => `${f.kind} ${f.region} ${f.key}`).sort(),
      r.drift.planted.map((p: {kind: string; key: string}) => `${p.kind} copy ${p.key}`).sort(),
    )
    assert.equal(r.drift.named, true)
    assert.ok(r.drift.repair.copied >= 3, JSON.stringify(r.drift.repair))
    assert.equal(r.drift.repair.failed, 0)
    assert.deepEqual(r.drift.after, [])
    // The load test pulled every sample tag from the repaired copy, bodies re-hashed, with no error.
    assert.ok(r.loadtest.succeeded >= 10, JSON.stringify(r.loadtest))
    assert.equal(r.loadtest.succeeded + r.loadtest.cutOff, r.loadtest.started)
    assert.equal(r.loadtest.failed, 0)
    assert.deepEqual(r.loadtest.errors, {})
    assert.equal(r.loadtest.images.length, 4)
    // The copy is a region of the config quickstart wrote: the audit from the CLI finds it clean now.
    const config = join(dir, 'qs', 'regops.yaml')
    const audit = await runCli([
      'audit',
      'regions',
      '--config',
      config,
      '--findings',
      join(dir, 'audit.jsonl'),
      '--json',
    ])
    assert.equal(audit.code, 0, audit.stdout + audit.stderr)
    assert.deepEqual(audit.json.regions, ['local', 'copy'])
    // The candidates files are the sweep's own JSON Lines reports.
    const lines = (await readFile(r.sweeps.storage.reportFile, 'utf8')).trim().split('\n')
    assert.equal(lines.length, 6)
    // The text form names each planted orphan too.
    const text = await runCli(['quickstart', '--dir', join(dir, 'qs2')])
    assert.equal(text.code, 0, text.stderr)
    for (const digest of planted) assert.match(text.stdout, new RegExp(`${digest}.*found.*found`))
    assert.match(text.stdout, /left alone, referenced by its _layers link \(younger than --min-age 24h\)/)
    assert.match(text.stdout, /_uploads .*not a blob yet.*sweep uploads found 1 upload\(s\) in progress, 0 abandoned/)
    // The planted drift, named in the text form, each repaired; the load test's pulls.
    for (const p of r.drift.planted) assert.match(text.stdout, new RegExp(`${p.kind}\t${p.key}\t.*\tfound\trepaired`))
    assert.match(text.stdout, /load test: \d+ of \d+ pulls .* from the repaired copy, every body re-hashed; 0 failed/)
    assert.match(text.stdout, /the audit named exactly the planted drift, the repair fixed it/)
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
})
