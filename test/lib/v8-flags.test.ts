// The sweep keeps V8's young generation at its initial size from its first line (peak RSS), and puts the
// setting back after its listing worker starts: starting a worker resets it for the whole process. These
// run a child node on the built module, without tsx: a test process's young generation has grown before
// the test begins, and tsx's module hooks run on a thread of their own, which resets the setting too.
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {fileURLToPath} from 'node:url'

const FLAGS = fileURLToPath(new URL('../../dist/lib/v8-flags.js', import.meta.url))

/** The young generation's size in MiB after a child applies the startup flags for `argv` and allocates objects that survive a few scavenges. */
function youngGenerationMiB(argv: string[], worker: 'none' | 'restored' | 'not restored'): number {
  const script = `
    import {getHeapSpaceStatistics} from 'node:v8'
    import {Worker} from 'node:worker_threads'
    import {once} from 'node:events'
    import {applyStartupFlags, restoreFlagsAfterWorkerStart} from ${JSON.stringify(FLAGS)}
    applyStartupFlags(${JSON.stringify(argv)})
    if (${JSON.stringify(worker)} !== 'none') {
      const w = new Worker('0', {eval: true})
      if (${JSON.stringify(worker)} === 'restored') w.once('online', restoreFlagsAfterWorkerStart)
      await once(w, 'exit')
    }
    const kept = []
    for (let i = 0; i < 3e6; i++) {
      kept.push({i, s: 'x' + i})
      if (kept.length > 200000) kept.length = 0
    }
    const young = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')
    console.log(young.space_size)`
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
  })
  assert.equal(run.status, 0, run.stderr)
  return Number(run.stdout.trim()) / 1048576
}

test('a sweep keeps its young generation small, also after its worker starts; an import lets it grow', () => {
  const sweep = youngGenerationMiB(['sweep', 'blobs', '--json'], 'restored')
  assert.ok(sweep <= 2, `sweep: young generation ${sweep} MiB`)
  assert.ok(youngGenerationMiB(['sweep:blobs'], 'none') <= 2)
  const imported = youngGenerationMiB(['import', '--json'], 'none')
  assert.ok(imported >= 8, `import: young generation ${imported} MiB (V8's default grows it)`)
})

test('without the restore, starting a worker lets the young generation grow again', () => {
  const grown = youngGenerationMiB(['sweep', 'blobs'], 'not restored')
  assert.ok(grown >= 8, `young generation ${grown} MiB: if this fails, node no longer resets the setting`)
})
