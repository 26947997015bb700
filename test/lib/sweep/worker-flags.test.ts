// Operators start a large job with node flags (`node --max-old-space-size=4096 regops …`). The sweep's
// listing worker inherited them and node refused V8 flags in a worker (ERR_WORKER_INVALID_EXEC_ARGV):
// the sweep failed with exit 70. The worker takes only the module hooks.
import {after, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {runCli} from '../../helpers/cli.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {LayoutWriter} from '../../../src/lib/sample/layout-writer.js'
import {ageTree} from '../../../src/lib/quickstart/sample.js'
import {workerExecArgv} from '../../../src/lib/sweep/enumerate.js'

let root: string | undefined
after(async () => {
  if (root) await rm(root, {recursive: true, force: true})
})

test('workerExecArgv keeps module hooks (both spellings) and drops V8 flags', () => {
  assert.deepEqual(
    workerExecArgv([
      '--max-old-space-size=4096',
      '--import',
      'tsx',
      '--stack-size=2000',
      '--require=./a.cjs',
      '-r',
      'b',
    ]),
    ['--import', 'tsx', '--require=./a.cjs', '-r', 'b'],
  )
})

test('a filesystem sweep started with node heap and stack flags runs and finds its orphans', async () => {
  root = await mkdtemp(join(tmpdir(), 'regops-worker-flags-'))
  const store = join(root, 'store')
  const writer = new LayoutWriter(new FilesystemDriver('local', store))
  await writer.writeImage({repository: 'app/web', tag: 'v1', seed: 'web', layers: 2, layerSize: 64})
  for (let i = 0; i < 5; i++) await writer.writeOrphan(undefined, `orphan-${i}`, 32)
  await ageTree(store, new Date(Date.now() - 3 * 86_400_000))
  const config = join(root, 'regops.yaml')
  await writeFile(config, `regions:\n  local: {url: "file://${store}"}\n`)
  const report = join(root, 'candidates.jsonl')
  const run = await runCli(['sweep', 'blobs', '--config', config, '--report', report, '--json'], {
    nodeArgs: ['--max-old-space-size=512', '--stack-size=2000'],
  })
  assert.equal(run.code, 1, run.stdout + run.stderr)
  assert.equal((run.json as {candidates: {count: number}}).candidates.count, 5)
  assert.equal((await readFile(report, 'utf8')).trim().split('\n').length, 5)
})
