// Many seeds of the oracle (test/helpers/oracle.ts): `npm run oracle -- --seeds 50` (seeds 1..50),
// `--seed 17` (one), `--backend filesystem|s3` (default both), `--bulk 3000` (blobs in the hot prefixes).
// Prints one line per seed and run, the full description of each disagreement, and exits 1 if any.
import {parseArgs} from 'node:util'
import {describeRun, runOracle, type Backend} from '../test/helpers/oracle.js'

const {values} = parseArgs({
  options: {
    seeds: {type: 'string', default: '10'},
    seed: {type: 'string'},
    from: {type: 'string', default: '1'},
    backend: {type: 'string'},
    bulk: {type: 'string', default: '2000'},
  },
})
const seeds = values.seed
  ? [Number(values.seed)]
  : Array.from({length: Number(values.seeds)}, (_, i) => Number(values.from) + i)
const backends: Backend[] = values.backend ? [values.backend as Backend] : ['filesystem', 's3']
let disagreements = 0
// Which runs built the case of issue 16 (a tagged index's child deleted by digest), for coverage.
const issue16: string[] = []
const started = Date.now()
for (const backend of backends) {
  for (const seed of seeds) {
    const t0 = Date.now()
    try {
      const run = await runOracle(seed, backend, {bulkBlobs: Number(values.bulk)})
      const ok =
        [run.storage, run.storageSplit, run.metadata].every((d) => d.missing.length === 0 && d.extra.length === 0) &&
        run.unpullable.length === 0
      const hits16 = run.scenario.deletedChildrenOfTaggedIndexes.length > 0
      if (hits16) issue16.push(`${backend}/${seed}`)
      process.stdout.write(
        `${ok ? 'ok  ' : 'DIFF'} ${backend} seed ${seed}: ${run.expected.length} candidates, ${Date.now() - t0} ms` +
          `${hits16 ? ' (deletes a child of a tagged index, the case of issue 16)' : ''}${run.scenario.subjectsKept.length ? ` (${run.scenario.subjectsKept.length} referrer subject(s) kept)` : ''}\n`,
      )
      if (!ok) {
        disagreements++
        process.stdout.write(describeRun(run) + '\n')
      }
    } catch (e) {
      disagreements++
      process.stdout.write(`FAIL ${backend} seed ${seed}: ${e instanceof Error ? e.stack : String(e)}\n`)
    }
  }
}
process.stdout.write(
  `${seeds.length * backends.length} runs, ${disagreements} disagreement(s), ${Math.round((Date.now() - started) / 1000)} s; ` +
    `the case of issue 16 in: ${issue16.join(' ') || 'none'}\n`,
)
process.exit(disagreements ? 1 : 0)
