// The seeded oracle on S3 (radosgw): registry states generated from a seed through the real docker-registry
// API (moved tags, deleted indexes and children, mounts whose source is deleted, a shared config,
// referrers, dangling references, blobs crowded into three prefixes, pushes after the import), and the
// exact candidate sets of both strategies compared with `garbage-collect --dry-run`. More seeds:
// `npm run oracle -- --seeds 50`; one seed: `npm run oracle -- --seed N --backend s3`.
import {describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {describeRun, runOracle} from '../../helpers/oracle.js'
import {NPM_TEST_SEEDS} from '../../helpers/scenario.js'

describe('seeded oracle: sweep vs garbage-collect --dry-run (s3)', () => {
  for (const seed of NPM_TEST_SEEDS) {
    test(`seed ${seed}: both strategies name exactly what the registry's GC names`, async () => {
      const run = await runOracle(seed, 's3', {bulkBlobs: 150})
      const message = describeRun(run)
      assert.ok(run.expected.length > 150, message)
      assert.deepEqual(run.storage, {missing: [], extra: []}, message)
      assert.deepEqual(run.storageSplit, {missing: [], extra: []}, message)
      assert.deepEqual(run.metadata, {missing: [], extra: []}, message)
      assert.deepEqual(run.unpullable, [], message)
    })
  }
})
