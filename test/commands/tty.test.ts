// Human output on a terminal: a table and a spinner, and the command still ends (a pty that reports
// no width once made the spinner loop forever).
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {BIN} from '../helpers/cli.js'
import {FilesystemDriver} from '../../src/lib/storage/filesystem.js'
import {writeSampleRegistry} from '../../src/lib/quickstart/sample.js'

test('sweep blobs on a pseudo-terminal: box table, exit 1, done in seconds', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'regops-tty-'))
  try {
    const root = join(dir, 'store')
    await writeSampleRegistry(new FilesystemDriver('local', root), root)
    const config = join(dir, 'regops.yaml')
    await writeFile(config, `regions:\n  local: {url: "file://${root}"}\n`)
    // script(1) runs the command on a pty (stdin, stdout and stderr are all a terminal); -e passes its exit code.
    const run = spawnSync(
      'script',
      [
        '-qec',
        `${process.execPath} ${BIN} sweep blobs --config ${config} --report ${join(dir, 'r.jsonl')}`,
        '/dev/null',
      ],
      {
        encoding: 'utf8',
        timeout: 60_000,
        env: {...process.env, COLUMNS: '', LINES: ''},
      },
    )
    assert.equal(run.error, undefined, `did not end: ${run.error}`)
    assert.equal(run.status, 1, run.stdout)
    assert.match(run.stdout, /┌/, 'a box table on a terminal')
    assert.match(run.stdout, /would remove 6 blobs/)
    assert.ok(run.stdout.length < 20_000, `output of ${run.stdout.length} bytes: the spinner ran away`)
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
})
