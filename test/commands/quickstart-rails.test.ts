// quickstart's rails: --dir replaces only what quickstart itself made, and a Ctrl-C (SIGINT to the
// whole foreground process group, PostgreSQL included) cleans up and exits 130.
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {BIN, runCli} from '../helpers/cli.js'

test('quickstart --dir refuses a directory it did not create, and leaves it as it was', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'regops-qsdir-'))
  try {
    const mine = join(dir, 'mine')
    await mkdir(mine)
    await writeFile(join(mine, 'notes.txt'), 'precious')
    const res = await runCli(['quickstart', '--dir', mine])
    assert.equal(res.code, 4, res.stdout + res.stderr)
    assert.match(res.stderr, /holds files quickstart did not create \(notes\.txt\)/)
    assert.deepEqual(await readdir(mine), ['notes.txt'])
    assert.equal(await readFile(join(mine, 'notes.txt'), 'utf8'), 'precious')
    // A plain file is refused too.
    const file = join(dir, 'file')
    await writeFile(file, 'x')
    assert.equal((await runCli(['quickstart', '--dir', file])).code, 4)
    assert.equal(await readFile(file, 'utf8'), 'x')
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
})

test('Ctrl-C during quickstart after PostgreSQL started: exit 130, no stack, no temporary directory left', async () => {
  // Its own TMPDIR, so "no temporary directory left" is exact; traversable by the postgres user.
  const tmp = await mkdtemp(join(tmpdir(), 'regops-qsint-'))
  await chmod(tmp, 0o755)
  try {
    // The steps are logged at debug level (the formatter's table shows them once at the end).
    const env: NodeJS.ProcessEnv = {...process.env, TMPDIR: tmp, REGOPS_LOG_FORMAT: 'text', REGOPS_LOG_LEVEL: 'debug'}
    delete env.DATABASE_URL
    // --log-level debug: the steps are log lines only at debug (the table says them once at the end).
    // detached: its own process group, which the test signals as a terminal's Ctrl-C would.
    const child = spawn(process.execPath, [BIN, 'quickstart', '--dir', join(tmp, 'qs'), '--log-level', 'debug'], {
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (d) => (stdout += d))
    let signalled = false
    child.stderr!.on('data', (d) => {
      stderr += d
      if (!signalled && /start an embedded PostgreSQL/.test(stderr)) {
        signalled = true
        process.kill(-child.pid!, 'SIGINT')
      }
    })
    const [code] = (await new Promise((resolve) => child.on('close', (...args) => resolve(args)))) as [
      number | null,
      string | null,
    ]
    assert.ok(signalled, `PostgreSQL never started: ${stderr}`)
    assert.equal(code, 130, stdout + stderr)
    assert.doesNotMatch(stderr, /Unhandled|\n\s+at /, 'no unhandled error, no stack')
    assert.match(stderr, /interrupted by SIGINT/)
    const left = (await readdir(tmp)).filter((name) => name.startsWith('regops-quickstart-pg-'))
    assert.deepEqual(left, [], 'the temporary PostgreSQL data directory is removed')
  } finally {
    await rm(tmp, {recursive: true, force: true})
  }
})
