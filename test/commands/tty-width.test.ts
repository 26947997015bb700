// Tables fit the terminal: at 100 columns no line of doctor or sweep blobs is wider than 100
// (cells wrap within their column instead of the terminal wrapping the whole box into garbage).
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../helpers/postgres.js'
import {BIN} from '../helpers/cli.js'
import {FilesystemDriver} from '../../src/lib/storage/filesystem.js'
import {writeSampleRegistry} from '../../src/lib/quickstart/sample.js'
import {renderTable, wrapCell} from '../../src/lib/output/format.js'

// What the terminal shows: a carriage return (or a cursor move to column 1, as spinners redraw) starts
// the line over, so only the text after the last one stays on screen.
const visible = (text: string) =>
  text
    .split('\n')
    .map((line) =>
      line
        .replace(/\r$/, '')
        .split(/\r|\x1b\[1?G/)
        .pop()!
        .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ''),
    )
    .join('\n')
const widest = (text: string) =>
  Math.max(
    ...visible(text)
      .split('\n')
      .map((line) => [...line].length),
  )

test('renderTable fits a given width, wrapping long cells and breaking long words, and keeps every word', () => {
  const digest = `sha256:${'ab'.repeat(32)}`
  const rows = [
    [
      'region',
      'lab',
      `file:///var/lib/a/rather/long/path/to/the/registry/docker/registry/v2`,
      'ok',
      `list, read ok; blobs/ and repositories/ present ${digest}`,
      12,
    ],
  ]
  const head = ['check', 'name', 'target', 'status', 'detail', 'ms']
  const natural = renderTable(head, rows, true, 0)
  assert.ok(widest(natural) > 100, 'the test table is wider than 100 columns unfitted')
  const fitted = renderTable(head, rows, true, 100)
  assert.ok(widest(fitted) <= 100, visible(fitted))
  assert.doesNotMatch(fitted, /…/, 'nothing cut off')
  const wrapped = wrapCell(`detail ${digest}`, 20).split('\n')
  assert.ok(
    wrapped.every((line) => line.length <= 20),
    wrapped.join('|'),
  )
  assert.equal(wrapped.join(''), `detail${digest}`, 'a word longer than its column is broken across lines, not cut')
  assert.equal(
    renderTable(['a'], [['b']], true, 100),
    renderTable(['a'], [['b']], true, 0),
    'a table that fits is unchanged',
  )
})

test('doctor and sweep blobs on a 100-column pseudo-terminal: no line wider than 100', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'regops-width-'))
  try {
    // A long root path: the doctor row carries it, the sweep's problems and report path do not.
    const root = join(dir, 'a-rather-long-directory-name-for-the-registry-store', 'docker', 'registry', 'v2')
    await writeSampleRegistry(new FilesystemDriver('local', root), root)
    const config = join(dir, 'regops.yaml')
    // doctor refuses a configuration without a database (exit 2), so the terminal shows a real table.
    const dbUrl = await (await sharedPostgres()).createDatabase()
    await writeFile(config, `regions:\n  local: {url: "file://${root}"}\ndatabase:\n  url: ${dbUrl}\n`)
    const onTerminal = (command: string) =>
      spawnSync('script', ['-qec', `stty cols 100 rows 40; ${process.execPath} ${BIN} ${command}`, '/dev/null'], {
        encoding: 'utf8',
        timeout: 60_000,
        cwd: dir,
        env: {...process.env, COLUMNS: '', LINES: '', DATABASE_URL: ''},
      })
    const doctor = onTerminal(`doctor --config ${config}`)
    assert.equal(doctor.error, undefined)
    assert.match(doctor.stdout, /┌/, 'a box table on a terminal')
    assert.match(visible(doctor.stdout), /blobs\/ and/)
    assert.ok(widest(doctor.stdout) <= 100, visible(doctor.stdout))
    const sweep = onTerminal(`sweep blobs --config ${config} --report r.jsonl`)
    assert.equal(sweep.status, 1, sweep.stdout)
    assert.match(sweep.stdout, /┌/)
    assert.ok(widest(sweep.stdout) <= 100, visible(sweep.stdout))
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
})

test('quickstart on a 100-column pseudo-terminal: no line wider than 100', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'regops-width-qs-'))
  try {
    const run = spawnSync(
      'script',
      ['-qec', `stty cols 100 rows 40; ${process.execPath} ${BIN} quickstart --dir ${join(dir, 'qs')}`, '/dev/null'],
      {encoding: 'utf8', timeout: 120_000, cwd: dir, env: {...process.env, COLUMNS: '', LINES: '', DATABASE_URL: ''}},
    )
    assert.equal(run.error, undefined)
    assert.equal(run.status, 0, visible(run.stdout))
    // The steps table and the orphans table (full digests) both have to fit.
    assert.match(run.stdout, /┌/, 'box tables on a terminal')
    assert.match(visible(run.stdout), /sha256:/)
    assert.ok(widest(run.stdout) <= 100, visible(run.stdout))
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
})
