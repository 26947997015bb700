// The CLI's contract with operators and scripts, through the built CLI (and one test-only command on the
// real base command): exit codes, the --json envelope, validating flags, and the first paths a new user takes.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {runCli, type CliRun} from '../helpers/cli.js'
import {FilesystemDriver} from '../../src/lib/storage/filesystem.js'
import {writeSampleRegistry} from '../../src/lib/quickstart/sample.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/throwing-command.ts', import.meta.url))
let dir: string
let config: string

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'regops-contract-'))
  const root = join(dir, 'store')
  await writeSampleRegistry(new FilesystemDriver('local', root), root)
  config = join(dir, 'regops.yaml')
  await writeFile(config, `regions:\n  local: {url: "file://${root}"}\nprimary: local\n`)
})

after(async () => {
  await rm(dir, {recursive: true, force: true})
})

function runFixture(args: string[]): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, ...args], {
      cwd: fileURLToPath(new URL('../../', import.meta.url)),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code, signal) => {
      let json: unknown
      try {
        json = JSON.parse(stdout)
      } catch {
        json = undefined
      }
      resolve({code, signal, stdout, stderr, json})
    })
  })
}

describe('errors and the --json envelope', () => {
  test('a TypeError from a service is a bug: exit 70, code INTERNAL, resources released', async () => {
    const res = await runFixture(['bug', '--json'])
    assert.equal(res.code, 70, res.stdout + res.stderr)
    assert.equal(res.json?.kind, 'error', res.stdout)
    assert.equal(res.json.error.code, 'INTERNAL')
    assert.equal(res.json.error.exitCode, 70)
    assert.match(res.json.error.message, /internal error: .*undefined/)
    assert.match(res.json.error.hint, /bug in regops/)
    assert.match(res.stderr, /sigint-listeners=0/)
    const text = await runFixture(['bug'])
    assert.equal(text.code, 70)
    assert.match(text.stderr, /^error: internal error:/m)
  })

  test('warnings reach --json as warnings[] and stay on stderr', async () => {
    const res = await runFixture(['warn', '--json'])
    assert.equal(res.code, 0, res.stderr)
    assert.equal(res.json.kind, 'fixture')
    assert.deepEqual(res.json.warnings, ['something odd, carried on'])
    assert.match(res.stderr, /something odd, carried on/)
  })

  test('kind is the command id', async () => {
    const show = await runCli(['config', 'show', '--config', config, '--json'])
    assert.equal(show.code, 0, show.stderr)
    assert.equal(show.json.kind, 'config-show')
    assert.deepEqual(show.json.warnings, [])
    const validate = await runCli(['config', 'validate', '--config', config, '--json'])
    assert.equal(validate.json.kind, 'config-validate')
  })
})

describe('flags validate their input', () => {
  test('a duration needs a unit: --min-age 48 is refused, saying 48h or 48s', async () => {
    const res = await runCli(['sweep', 'blobs', '--config', config, '--min-age', '48', '--json'])
    assert.equal(res.code, 2, res.stdout + res.stderr)
    assert.equal(res.json.error.code, 'USAGE')
    assert.match(res.json.error.message, /say 48h or 48s/)
  })

  test('--metadata-authoritative without --strategy metadata names the flag it needs', async () => {
    const res = await runCli(['sweep', 'blobs', '--config', config, '--metadata-authoritative', '--json'])
    assert.equal(res.code, 2, res.stdout + res.stderr)
    assert.equal(res.json.error.code, 'USAGE')
    assert.match(res.json.error.message, /--metadata-authoritative goes with --strategy metadata/)
  })

  test('below 1h needs --force, and the value understood is echoed', async () => {
    const refused = await runCli(['sweep', 'blobs', '--config', config, '--min-age', '30m', '--json'])
    assert.equal(refused.code, 4, refused.stdout + refused.stderr)
    assert.match(refused.json.error.message, /--min-age 30m is below 1h/)
    const uploads = await runCli(['sweep', 'uploads', '--config', config, '--older-than', '10m'])
    assert.equal(uploads.code, 4, uploads.stderr)
    assert.match(uploads.stderr, /--older-than 10m is below 1h/)
    const forced = await runCli([
      'sweep',
      'blobs',
      '--config',
      config,
      '--min-age',
      '48h',
      '--report',
      join(dir, 'a.jsonl'),
      '--json',
    ])
    assert.equal(forced.json.kind, 'sweep-blobs', forced.stdout + forced.stderr)
    assert.equal(forced.json.gracePeriod, '2d')
    const text = await runCli([
      'sweep',
      'blobs',
      '--config',
      config,
      '--min-age',
      '0',
      '--force',
      '--report',
      join(dir, 'b.jsonl'),
    ])
    assert.equal(text.code, 1, text.stderr)
    assert.match(text.stdout, /grace period 0s/)
  })

  test('--dry-run is accepted where dry-run is the default, and refused with --delete', async () => {
    const dry = await runCli([
      'sweep',
      'blobs',
      '--config',
      config,
      '--dry-run',
      '--min-age',
      '0',
      '--force',
      '--report',
      join(dir, 'c.jsonl'),
      '--json',
    ])
    assert.equal(dry.code, 1, dry.stdout + dry.stderr)
    assert.equal(dry.json.mode, 'dry-run')
    const both = await runCli(['sweep', 'blobs', '--config', config, '--dry-run', '--delete', '--json'])
    assert.equal(both.code, 2, both.stdout)
    assert.match(both.json.error.message, /cannot also be provided/)
    const uploads = await runCli(['sweep', 'uploads', '--config', config, '--dry-run', '--json'])
    assert.equal(uploads.json.kind, 'sweep-uploads', uploads.stdout + uploads.stderr)
  })

  test('sweep restore needs exactly one of --job and --digest', async () => {
    const res = await runCli(['sweep', 'restore', '--config', config, '--json'])
    assert.equal(res.code, 2)
    assert.match(res.json.error.message, /Exactly one of the following must be provided: --digest, --job/)
  })
})

describe('new-user paths', () => {
  test('help for a command, a suggestion for a typo (text and JSON), the version', async () => {
    const help = await runCli(['help', 'sweep', 'blobs'])
    assert.equal(help.code, 0, help.stderr)
    assert.match(help.stdout, /\$ regops sweep blobs/)
    assert.match(help.stdout, /EXIT CODES/)
    const typo = await runCli(['swep'])
    assert.equal(typo.code, 2)
    assert.match(typo.stderr, /swep is not a regops command; did you mean sweep\?/)
    const json = await runCli(['swep', '--json'])
    assert.equal(json.code, 2)
    assert.deepEqual(json.json.error, {
      code: 'COMMAND_NOT_FOUND',
      message: 'swep is not a regops command; did you mean sweep?',
      exitCode: 2,
      hint: 'regops help lists the commands',
    })
    const short = await runCli(['-v'])
    assert.match(short.stdout, /^regops\/\d+\.\d+\.\d+ /)
    const version = await runCli(['version', '--json'])
    assert.equal(version.json.kind, 'version')
    assert.match(version.json.version, /^\d+\.\d+\.\d+/)
  })

  test('doctor and config validate with no configuration exit 2 and say where they looked', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'regops-empty-'))
    try {
      const doctor = await runCli(['doctor', '--json'], {cwd: empty})
      assert.equal(doctor.code, 2, doctor.stdout + doctor.stderr)
      assert.equal(doctor.json.error.code, 'NOTHING_CONFIGURED')
      assert.match(doctor.json.error.message, /no database and no region configured/)
      assert.match(
        doctor.json.error.message,
        /--config, \$REGOPS_CONFIG \(not set\), .*regops-empty-[^/]*\/regops\.yaml/,
      )
      const regionOnly = await runCli(['doctor', '--config', config, '--json'], {cwd: empty})
      assert.equal(regionOnly.code, 2)
      assert.match(regionOnly.json.error.message, /no database configured; config file .*regops\.yaml/)
      const validate = await runCli(['config', 'validate'], {cwd: empty})
      assert.equal(validate.code, 2)
      assert.match(validate.stderr, /no configuration file found \(looked for --config, \$REGOPS_CONFIG/)
      const sweep = await runCli(['sweep', 'blobs'], {cwd: empty})
      assert.equal(sweep.code, 2)
      assert.match(sweep.stderr, /hint: no config file found \(looked for/)
    } finally {
      await rm(empty, {recursive: true, force: true})
    }
  })

  test("library notices (the AWS SDK's Node-version warning) stay off stderr below --log-level debug", async () => {
    const s3 = join(dir, 's3.yaml')
    await writeFile(
      s3,
      [
        'database:',
        '  url: postgres://regops@127.0.0.1:1/none',
        'regions:',
        '  eu: {url: "s3://b/docker/registry/v2", endpoint: "http://127.0.0.1:1", accessKeyId: AKIATEST, secretAccessKey: not-a-secret-key}',
        '',
      ].join('\n'),
    )
    const quiet = await runCli(['doctor', '--config', s3, '--timeout', '5'])
    assert.equal(quiet.code, 1, quiet.stdout + quiet.stderr)
    assert.doesNotMatch(quiet.stderr, /Warning/)
    const debug = await runCli([
      'doctor',
      '--config',
      s3,
      '--timeout',
      '5',
      '--log-level',
      'debug',
      '--log-format',
      'json',
    ])
    const lines = debug.stderr
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    assert.ok(
      lines.some((l) => l.level === 'debug' && /NodeVersionSupportWarning/.test(l.msg)),
      debug.stderr,
    )
  })
})
