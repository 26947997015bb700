// TLS verification is on by default on every outbound HTTPS client: the S3 read path (undici), the S3
// write path (AWS SDK) and the registry client of the load test. A private CA is trusted through
// caFile; insecureSkipTlsVerify (or loadtest pull --insecure) turns the check off and is warned on
// stderr and in --json warnings every time. The server is a real loopback TLS front with a certificate
// made by openssl for this run, in front of the shared radosgw and a docker-registry.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import path from 'node:path'
import {runCli, type CliRun} from '../helpers/cli.js'
import {sharedPostgres} from '../helpers/postgres.js'
import {sharedRadosgw} from '../helpers/radosgw.js'
import {startRegistry, type RegistryServer} from '../helpers/registry.js'
import {pushImage} from '../helpers/images.js'
import {makeTempDir, removeTempDir} from '../helpers/tmp.js'
import {makeTestPki, startTlsFront, type TestPki, type TlsFront} from './tls-helpers.js'

const OFF = /TLS certificate verification is OFF/

describe('TLS: verified by default, caFile for a private CA, insecure only when asked and always warned', () => {
  let pki: TestPki
  let s3Front: TlsFront
  let registryFront: TlsFront
  let registry: RegistryServer
  let dir: string
  let dbUrl: string
  let bucket: string
  let keys: {accessKeyId: string; secretAccessKey: string}
  const cleanups: Array<() => unknown> = []

  before(async () => {
    pki = makeTestPki()
    cleanups.push(() => pki.remove())
    dir = makeTempDir('tls')
    cleanups.push(() => removeTempDir(dir))
    const rgw = await sharedRadosgw()
    keys = {accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey}
    bucket = await rgw.newBucket('tls')
    s3Front = await startTlsFront(pki, rgw.endpoint)
    cleanups.push(() => s3Front.close())
    registry = await startRegistry({storage: {kind: 'filesystem', root: path.join(dir, 'registry')}})
    cleanups.push(() => registry.stop())
    await pushImage(registry.url, 'tls/app', 'v1', {layers: 1, seed: 'tls'})
    registryFront = await startTlsFront(pki, registry.url)
    cleanups.push(() => registryFront.close())
    dbUrl = await (await sharedPostgres()).createDatabase()
  })
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup()
  })

  /** A config whose one region is the bucket behind the TLS front, with `tls` added to the region. */
  function config(name: string, regionTls: string, registryTls = ''): string {
    const file = path.join(dir, `${name}.yaml`)
    writeFileSync(
      file,
      [
        `database: {url: "${dbUrl}"}`,
        'regions:',
        `  secure: {url: "s3://${bucket}/docker/registry/v2", endpoint: "${s3Front.url}", accessKeyId: "${keys.accessKeyId}", secretAccessKey: "${keys.secretAccessKey}", checksums: when_required, empty: true${regionTls}}`,
        `registry: {url: "${registryFront.url}"${registryTls}}`,
        '',
      ].join('\n'),
    )
    return file
  }

  const regionRow = (run: CliRun) => run.json?.checks?.find((c: {component: string}) => c.component === 'region')
  const registryRow = (run: CliRun) => run.json?.checks?.find((c: {component: string}) => c.component === 'registry')

  test('no option: the read path refuses the certificate, exit 3, naming the endpoint and what to do', async () => {
    const run = await runCli(['sweep', 'uploads', '--config', config('plain', ''), '--json'])
    assert.equal(run.code, 3, run.stdout + run.stderr)
    assert.equal(run.json.kind, 'error')
    assert.match(run.json.error.message, /TLS certificate of https:\/\/127\.0\.0\.1:\d+ is not trusted/)
    assert.ok(run.json.error.message.includes(s3Front.url), run.json.error.message)
    assert.match(run.json.error.hint ?? '', /caFile/)
    assert.doesNotMatch(run.stdout + run.stderr, OFF)
  })

  test('no option: doctor --write-check fails the region (read and SDK write path) and the registry by name', async () => {
    const run = await runCli(['doctor', '--write-check', '--config', config('plain-doctor', ''), '--json'])
    assert.equal(run.code, 1, run.stdout + run.stderr)
    assert.equal(regionRow(run).status, 'fail', JSON.stringify(regionRow(run)))
    assert.match(regionRow(run).detail, /not trusted/)
    const put = run.json.permissions.find((p: {probe: string}) => p.probe === 'put')
    assert.equal(put.outcome, 'error')
    assert.match(put.detail, /not trusted/)
    assert.equal(registryRow(run).status, 'fail', JSON.stringify(registryRow(run)))
    assert.match(registryRow(run).detail, /TLS certificate of https:\/\/127\.0\.0\.1:\d+ is not trusted/)
  })

  test('a caFile of another CA does not help: caFile is the trust, not a switch', async () => {
    const run = await runCli([
      'sweep',
      'uploads',
      '--config',
      config('other', `, caFile: "${pki.otherCaFile}"`),
      '--json',
    ])
    assert.equal(run.code, 3, run.stdout + run.stderr)
    assert.match(run.json.error.message, /not trusted/)
  })

  test('caFile: both S3 paths work (list, read, SDK write, delete) and nothing is warned', async () => {
    const file = config('ca', `, caFile: "${pki.caFile}"`, `, caFile: "${pki.caFile}"`)
    const sweep = await runCli(['sweep', 'uploads', '--config', file, '--json'])
    assert.equal(sweep.code, 0, sweep.stdout + sweep.stderr)
    assert.deepEqual(sweep.json.warnings, [])
    const doctor = await runCli(['doctor', '--write-check', '--config', file, '--json'])
    assert.equal(regionRow(doctor).status, 'ok', JSON.stringify(regionRow(doctor)))
    assert.deepEqual(doctor.json.permissionSets.secure, {read: true, write: true, delete: true, multipart: true})
    assert.equal(registryRow(doctor).status, 'ok', JSON.stringify(registryRow(doctor)))
    assert.doesNotMatch(doctor.stdout + doctor.stderr, OFF)
  })

  test('insecureSkipTlsVerify: works, and says so on stderr and in --json warnings every run', async () => {
    const file = config('insecure', ', insecureSkipTlsVerify: true')
    const json = await runCli(['sweep', 'uploads', '--config', file, '--json'])
    assert.equal(json.code, 0, json.stdout + json.stderr)
    assert.ok(
      json.json.warnings.some((w: string) => OFF.test(w) && w.includes(s3Front.url)),
      JSON.stringify(json.json.warnings),
    )
    const text = await runCli(['sweep', 'uploads', '--config', file, '--log-format', 'text'])
    assert.equal(text.code, 0, text.stdout + text.stderr)
    assert.match(text.stderr, /warn: TLS certificate verification is OFF for region 'secure'/)
  })

  test('loadtest pull: refused certificate stops the run with exit 2; --insecure pulls and warns; caFile pulls', async () => {
    const pull = [
      'loadtest',
      'pull',
      '--image',
      'tls/app:v1',
      '--max-pulls',
      '2',
      '--rate',
      '10',
      '--duration',
      '1s',
      '--json',
    ]
    const refused = await runCli([...pull, '--config', config('lt-plain', '')])
    assert.equal(refused.code, 2, refused.stdout + refused.stderr)
    assert.equal(refused.json.error.code, 'TLS_UNTRUSTED')
    assert.ok(refused.json.error.message.includes(registryFront.url), refused.json.error.message)

    const insecure = await runCli([...pull, '--config', config('lt-insecure', ''), '--insecure'])
    assert.equal(insecure.code, 0, insecure.stdout + insecure.stderr)
    assert.equal(insecure.json.pulls.succeeded, 2, JSON.stringify(insecure.json.pulls))
    assert.ok(
      insecure.json.warnings.some((w: string) => OFF.test(w) && w.includes('registry')),
      insecure.stdout,
    )

    const trusted = await runCli([...pull, '--config', config('lt-ca', '', `, caFile: "${pki.caFile}"`)])
    assert.equal(trusted.code, 0, trusted.stdout + trusted.stderr)
    assert.equal(trusted.json.pulls.succeeded, 2, JSON.stringify(trusted.json.pulls))
    assert.deepEqual(trusted.json.warnings, [])
  })
})
