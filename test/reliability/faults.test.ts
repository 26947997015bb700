// The npm test subset of the injected-faults suite (test/reliability/faults.ts): one seeded trial per row,
// each command run through 5% faults and compared with the same command without them.
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {runFaults} from './faults.js'

test('under 5% injected faults, sweep, import, audit, replicate and the load test give the same result as without faults', async () => {
  const report = await runFaults({seed: 1, scale: 'subset', log: () => undefined})
  assert.equal(report.rows.length, 7, report.rows.map((r) => r.case).join('\n'))
  const failed = report.rows.flatMap((row) => row.failures.map((f) => `${row.command} (seed ${f.seed}): ${f.reason}`))
  assert.deepEqual(failed, [])
  for (const row of report.rows) {
    assert.equal(row.trials, 1, row.case)
    assert.equal(row.survived, 1, row.case)
  }
})
