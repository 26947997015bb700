// The npm test subset of the crash-repair suite: one trial per row with seed 1, whose kill plan is the first
// write, after it landed and before its journal outcome (the window a resume or re-run must close).
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {runCrashRepair} from './crash-repair.js'

test('crash-repair subset: audit --repair, replicate and repair links killed after their first write end as an uninterrupted run would', async () => {
  const report = await runCrashRepair({seed: 1, scale: 'subset', log: () => {}})
  assert.deepEqual(
    report.rows.map((row) => row.command),
    [
      'regops audit regions --level checksum --repair --from eu',
      'regops replicate --from eu --to fresh --apply',
      'regops repair links team/links --apply',
    ],
  )
  const failures = report.rows.flatMap((row) => row.failures.map((f) => `${row.command} (seed ${f.seed}): ${f.reason}`))
  assert.deepEqual(failures, [], failures.join('\n'))
  for (const row of report.rows) {
    assert.equal(row.trials, 1, row.command)
    assert.equal(row.survived, 1, row.command)
    assert.equal(
      row.figures?.['kills between a write and its journal outcome'],
      1,
      `${row.command}: ${JSON.stringify(row.figures)}`,
    )
  }
})
