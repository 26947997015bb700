// The hostile-input suite's seeded subset (npm test): every row's properties and trials hold. The full
// counts run with `npm run reliability -- --suite hostile`.
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {runHostile} from './hostile.js'
import {loadConfigFromText} from '../../src/lib/config/config.js'
import {parseDuration, parseSize} from '../../src/lib/config/duration.js'
import {parseManifestReference} from '../../src/lib/inspect/inspect-manifest.js'
import {ConfigError, InvalidInputError, UsageError} from '../../src/lib/errors.js'

test('hostile input: no row fails at subset scale, seed 1', async () => {
  const report = await runHostile({seed: 1, scale: 'subset', log: () => {}})
  assert.equal(
    report.rows.length,
    8,
    'link, manifest, name and config parsers; load test; store, arguments, config validate',
  )
  const failed = report.rows.flatMap((row) => row.failures.map((f) => `${row.command} (seed ${f.seed}): ${f.reason}`))
  assert.deepEqual(failed, [])
  for (const row of report.rows) {
    assert.ok(row.trials > 0, `${row.command}: no trial ran`)
    assert.equal(row.survived, row.trials, row.command)
  }
})

// The suite's counterexamples that were defects, pinned so the subset always tries them.
test('hostile input the suite found: each is a usage or config error (exit 2), bounded and naming what it is', () => {
  const bomb = [`l0: &l0 [${Array(10).fill('"lol"').join(', ')}]`]
  for (let i = 1; i < 6; i++)
    bomb.push(
      `l${i}: &l${i} [${Array(10)
        .fill(`*l${i - 1}`)
        .join(', ')}]`,
    )
  assert.throws(
    () => loadConfigFromText(`regions:\n  eu: {url: "file:///tmp/x"}\n${bomb.join('\n')}\n`, 'bomb.yaml', {}),
    (e: unknown) => e instanceof ConfigError && e.exitCode === 2 && /bomb\.yaml:line 4\).*alias/.test(e.message),
  )
  assert.throws(
    () => parseManifestReference('\0'),
    (e: unknown) => e instanceof InvalidInputError && e.message.includes("reference '?'"),
  )
  assert.throws(
    () => parseManifestReference('x'.repeat(100_000)),
    (e: unknown) => e instanceof InvalidInputError && e.message.length < 300,
  )
  // A cutoff of now minus 10^12 hours is no date: the sweep stopped with exit 70.
  assert.throws(
    () => parseDuration('999999999999h', '--min-age'),
    (e: unknown) => e instanceof UsageError && /100 years/.test(e.message),
  )
  assert.equal(parseDuration('36500d'), 36_500 * 86_400_000)
  assert.throws(
    () =>
      loadConfigFromText(
        `regions:\n  eu: {url: "file:///tmp/x"}\nsweep: {minAge: "${'x'.repeat(10_000)}"}\n`,
        'f.yaml',
        {},
      ),
    (e: unknown) => e instanceof ConfigError && e.field === 'sweep.minAge' && e.message.length < 300,
  )
  assert.throws(
    () => parseSize('9'.repeat(20)),
    (e: unknown) => e instanceof UsageError && /exactly/.test(e.message),
  )
})
