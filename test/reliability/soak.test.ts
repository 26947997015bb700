// The soak's npm test subset: each configuration soaked for seconds with a fixed seed; every row must
// survive (the full ten minutes per configuration is `npm run reliability -- --suite soak`).
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {runSoak} from './soak.js'

test('soak subset: pushes, deletes and verified pulls while sweeps run: no failed pull, no blob unknown', async () => {
  const report = await runSoak({seed: 15, scale: 'subset', log: (line) => process.stderr.write(`[soak] ${line}\n`)})
  assert.equal(report.rows.length, 2)
  for (const row of report.rows) {
    assert.equal(row.trials, 1, row.case)
    const figures = JSON.stringify(row.figures)
    assert.deepEqual(row.failures, [], `${row.case}: ${figures}`)
    assert.equal(row.survived, 1, row.case)
    // A soak that never swept, pulled or reused a deleted image's layer has proved nothing.
    assert.ok(Number(row.figures?.sweeps) >= 1, `${row.case}: ${figures}`)
    assert.ok(Number(row.figures?.['blobs quarantined']) > 0, `${row.case}: ${figures}`)
    assert.ok(Number(row.figures?.['blobs verified']) > 0, `${row.case}: ${figures}`)
  }
})
