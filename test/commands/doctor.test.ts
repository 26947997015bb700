// doctor, config show/validate and the no-secrets rule, through the built CLI against real parts.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, rm, writeFile, mkdir} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../helpers/postgres.js'
import {startRadosgw, type RadosgwServer} from '../helpers/radosgw.js'
import {startRegistry, type RegistryServer} from '../helpers/registry.js'
import {runCli} from '../helpers/cli.js'

const REGISTRY_PASSWORD = 'Reg1stry-Pa55-QmZx'
let dir: string
let rgw: RadosgwServer
let registry: RegistryServer
let config: string
let dbUrl: string
let dbPassword: string

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'regops-doctor-'))
  rgw = await startRadosgw({buckets: ['doctor']})
  registry = await startRegistry({storage: {kind: 'filesystem', root: join(dir, 'registry')}})
  dbUrl = await (await sharedPostgres()).createDatabase()
  dbPassword = decodeURIComponent(new URL(dbUrl).password)
  await mkdir(join(dir, 'lab'), {recursive: true})
  config = join(dir, 'regops.yaml')
  await writeFile(
    config,
    [
      'database:',
      `  url: ${dbUrl}`,
      'regions:',
      `  eu: {url: "s3://doctor/docker/registry/v2", endpoint: "${rgw.endpoint}", accessKeyId: "${rgw.accessKeyId}", secretAccessKey: "\${EU_SECRET}", checksums: when_required, empty: true}`,
      `  lab: {url: "file://${join(dir, 'lab')}", empty: true}`,
      'primary: eu',
      'registry:',
      `  url: ${registry.url}`,
      '  username: ci-bot',
      '  password: ${REGISTRY_PASSWORD}',
      '',
    ].join('\n'),
  )
  assert.equal((await runCli(['db', 'migrate', 'up', '--config', config], {env: secretsEnv()})).code, 0)
})

after(async () => {
  await registry?.stop()
  await rgw?.stop()
  await rm(dir, {recursive: true, force: true})
})

function secretsEnv(): Record<string, string> {
  return {EU_SECRET: rgw.secretAccessKey, REGISTRY_PASSWORD}
}

function secrets(): string[] {
  return [rgw.secretAccessKey, rgw.accessKeyId, REGISTRY_PASSWORD, dbPassword]
}

function assertNoSecrets(text: string, what: string): void {
  for (const secret of secrets()) assert.ok(!text.includes(secret), `${what} leaked a secret: ${text.slice(0, 400)}`)
}

describe('doctor', () => {
  test('every check ok against the test bed, with --write-check (exit 0)', async () => {
    const res = await runCli(['doctor', '--config', config, '--write-check', '--json'], {env: secretsEnv()})
    assert.equal(res.code, 0, res.stdout + res.stderr)
    assert.equal(res.json.kind, 'doctor')
    type Check = {component: string; name: string; status: string; detail: string}
    const checks: Check[] = res.json.checks
    // The test bed's bucket has no lifecycle rule: that row warns (exit stays 0); every other row is ok.
    const lifecycle = checks.filter((c) => c.component === 'lifecycle')
    assert.deepEqual(
      lifecycle.map((c) => [c.name, c.status]),
      [['eu', 'warn']],
    )
    assert.match(lifecycle[0].detail, /no AbortIncompleteMultipartUpload lifecycle rule/)
    const byName = Object.fromEntries(checks.filter((c) => c.component !== 'lifecycle').map((c) => [c.name, c]))
    for (const name of ['postgres', 'eu', 'lab', 'registry'])
      assert.equal(byName[name]?.status, 'ok', `${name}: ${JSON.stringify(byName[name])}`)
    assert.deepEqual(res.json.permissionSets.eu, {read: true, write: true, delete: true, multipart: true})
    assert.deepEqual(res.json.permissionSets.lab, {read: true, write: true, delete: true, multipart: false})
    assert.match(byName.postgres.detail, /PostgreSQL 1\d/)
    assertNoSecrets(res.stdout + res.stderr, 'doctor --json')
  })

  test('with the S3 server stopped, the S3 row says what failed and the exit code is non-zero', async () => {
    await rgw.killGateway()
    try {
      for (const json of [true, false]) {
        const res = await runCli(['doctor', '--config', config, ...(json ? ['--json'] : [])], {env: secretsEnv()})
        assert.notEqual(res.code, 0)
        assertNoSecrets(res.stdout + res.stderr, `doctor ${json ? '--json' : 'text'}`)
        if (json) {
          const eu = res.json.checks.find((c: {name: string}) => c.name === 'eu')
          assert.equal(eu.status, 'fail')
          assert.match(eu.detail, /ECONNREFUSED/)
          assert.equal(res.json.checks.find((c: {name: string}) => c.name === 'lab').status, 'ok')
        } else {
          assert.match(res.stdout, /eu.*fail.*ECONNREFUSED/)
        }
      }
    } finally {
      await rgw.startGateway()
    }
  })
})

describe('configuration and secrets', () => {
  test('config show prints *** for every secret, as text and as --json', async () => {
    for (const json of [true, false]) {
      const res = await runCli(['config', 'show', '--config', config, ...(json ? ['--json'] : [])], {env: secretsEnv()})
      assert.equal(res.code, 0, res.stderr)
      assertNoSecrets(res.stdout + res.stderr, 'config show')
      if (json) {
        assert.equal(res.json.config.registry.password, '***')
        assert.equal(res.json.config.regions.eu.secretAccessKey, '***')
        assert.match(res.json.config.database.url, /:\*\*\*@/)
      } else assert.match(res.stdout, /\*\*\*/)
    }
  })

  test('error paths do not print secrets either', async () => {
    // A database that refuses the password, a region whose bucket does not exist, a bad flag.
    const broken = join(dir, 'broken.yaml')
    const badDb = new URL(dbUrl)
    badDb.password = 'Wr0ng-' + dbPassword
    await writeFile(
      broken,
      `database:\n  url: ${badDb}\nregions:\n  eu: {url: "s3://nope-bucket/x", endpoint: "${rgw.endpoint}", accessKeyId: "${rgw.accessKeyId}", secretAccessKey: "${rgw.secretAccessKey}"}\nregistry:\n  url: ${registry.url}\n  password: ${REGISTRY_PASSWORD}\n`,
    )
    for (const args of [
      ['db', 'migrate', 'status', '--config', broken],
      ['db', 'migrate', 'status', '--config', broken, '--json'],
      ['doctor', '--config', broken, '--json'],
      ['sweep', 'blobs', '--config', broken, '--delete'],
      ['sweep', 'blobs', '--config', broken, '--json', '--min-age', 'soon'],
      ['config', 'show', '--config', broken, '--bogus-flag'],
    ]) {
      const res = await runCli(args)
      assert.notEqual(res.code, 0, args.join(' '))
      assertNoSecrets(res.stdout + res.stderr, args.join(' '))
      assert.ok(!res.stdout.includes('Wr0ng-'), 'the wrong password is a secret too')
    }
  })

  test('a malformed config exits 2 naming the field and line', async () => {
    const cases: Array<[string, RegExp]> = [
      ['regions:\n  eu: {url: "s3://b/p"\n  us: [\n', /line \d/],
      ['regions:\n  eu: {url: "s3://b/p"}\nprimary: us\n', /primary .*line 3.*unknown region 'us'/],
      ['regions:\n  eu:\n    url: "http//no-scheme"\n', /regions\.eu\.url .*line 3/],
    ]
    for (const [text, pattern] of cases) {
      const file = join(dir, `bad-${Math.random().toString(36).slice(2)}.yaml`)
      await writeFile(file, text)
      for (const command of [['config', 'validate'], ['doctor']]) {
        const res = await runCli([...command, '--config', file, '--json'])
        assert.equal(res.code, 2, `${command.join(' ')}: ${res.stdout}`)
        assert.equal(res.json.error.code, 'CONFIG_INVALID')
        assert.match(res.json.error.message, pattern)
        const text2 = await runCli([...command, '--config', file])
        assert.equal(text2.code, 2)
        assert.match(text2.stderr, pattern)
      }
    }
  })

  test('--help lists the topics and the exit-code table', async () => {
    const res = await runCli(['--help'])
    assert.equal(res.code, 0)
    for (const topic of ['config', 'db', 'sweep', 'doctor', 'import', 'jobs'])
      assert.match(res.stdout, new RegExp(`\\b${topic}\\b`))
    assert.match(res.stdout, /EXIT CODES[\s\S]*\b4\s+refused/)
    const sub = await runCli(['sweep', 'blobs', '--help'])
    assert.match(sub.stdout, /EXIT CODES/)
  })
})
