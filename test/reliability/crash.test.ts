// npm test's share of the crash matrix (test/reliability/crash.ts): one seeded trial of each row, every
// row must survive all its trials. `npm run reliability -- --suite crash` runs the full counts.
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {runCrash} from './crash.js'

test('crash matrix, seeded subset: every kill ends, after the resume, where an uninterrupted run ends', async () => {
  const report = await runCrash({seed: 1, scale: 'subset', log: (line) => process.stderr.write(`[crash] ${line}\n`)})
  assert.deepEqual(
    report.rows.map((row) => row.trials),
    [1, 1, 1, 1, 1, 1, 1],
    'one trial per row',
  )
  const failures = report.rows.flatMap((row) => row.failures.map((f) => `${row.case} (seed ${f.seed}): ${f.reason}`))
  assert.deepEqual(failures, [], failures.join('\n'))
  for (const row of report.rows) assert.equal(row.survived, row.trials, row.case)
})
