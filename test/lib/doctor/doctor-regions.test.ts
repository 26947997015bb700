// doctor says whether a region looks like a registry, not only whether it answers: a URL with a typo
// lists fine and holds nothing, and a store without repositories/ would be "all orphans" to a sweep.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdir, mkdtemp, rename, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {startRadosgw, type RadosgwServer} from '../../helpers/radosgw.js'
import {loadConfigFromText} from '../../../src/lib/config/config.js'
import {runDoctor} from '../../../src/lib/doctor/doctor.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {S3Driver} from '../../../src/lib/storage/s3.js'
import {writeSampleRegistry} from '../../../src/lib/quickstart/sample.js'

async function regionChecks(regionsYaml: string): Promise<Record<string, {status: string; detail: string}>> {
  // doctor refuses a configuration without a database, so each check runs beside a real one.
  const dbUrl = await (await sharedPostgres()).createDatabase()
  const config = loadConfigFromText(`database:\n  url: ${dbUrl}\nregions:\n${regionsYaml}`, 'test.yaml', {})
  const result = await runDoctor(config, {writeCheck: false, timeoutMs: 20_000})
  return Object.fromEntries(result.checks.filter((c) => c.component === 'region').map((c) => [c.name, c]))
}

describe('doctor: does the region look like a registry? (filesystem)', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'regops-doctor-fs-'))
    const root = join(dir, 'good', 'docker', 'registry', 'v2')
    await writeSampleRegistry(new FilesystemDriver('good', root), root)
    const orphaned = join(dir, 'norepos')
    await writeSampleRegistry(new FilesystemDriver('norepos', orphaned), orphaned)
    await rename(join(orphaned, 'repositories'), join(orphaned, 'repositories.old'))
    await mkdir(join(dir, 'new'))
  })
  after(() => rm(dir, {recursive: true, force: true}))

  test('a registry root is ok; a typo, a store without repositories/, an undeclared empty one are not', async () => {
    const checks = await regionChecks(
      [
        `  good: {url: "file://${dir}/good/docker/registry/v2"}`,
        `  typo: {url: "file://${dir}/good/docker/registry/v3"}`,
        `  norepos: {url: "file://${dir}/norepos"}`,
        `  fresh: {url: "file://${dir}/new"}`,
        `  declared: {url: "file://${dir}/new", empty: true}`,
        `  declaredbutfull: {url: "file://${dir}/good/docker/registry/v2", empty: true}`,
      ].join('\n') + '\n',
    )
    assert.equal(checks.good.status, 'ok', checks.good.detail)
    assert.match(checks.good.detail, /blobs\/ and repositories\/ present/)
    assert.equal(checks.typo.status, 'fail', checks.typo.detail)
    assert.match(checks.typo.detail, /not a registry root/)
    assert.equal(checks.norepos.status, 'fail', checks.norepos.detail)
    assert.match(checks.norepos.detail, /without repositories\//)
    assert.equal(checks.fresh.status, 'fail', checks.fresh.detail)
    assert.equal(checks.declared.status, 'ok', checks.declared.detail)
    assert.match(checks.declared.detail, /declared empty/)
    assert.equal(checks.declaredbutfull.status, 'warn', checks.declaredbutfull.detail)
  })
})

describe('doctor: does the region look like a registry? (radosgw)', () => {
  let rgw: RadosgwServer
  before(async () => {
    rgw = await startRadosgw({buckets: ['doc']})
    const region = {
      kind: 's3' as const,
      name: 'doc',
      url: 's3://doc/docker/registry/v2',
      bucket: 'doc',
      prefix: 'docker/registry/v2',
      region: 'us-east-1',
      endpoint: rgw.endpoint,
      forcePathStyle: true,
      checksums: 'when_required' as const,
      concurrency: 16,
      accessKeyId: rgw.accessKeyId,
      secretAccessKey: rgw.secretAccessKey,
    }
    const driver = new S3Driver(region)
    await writeSampleRegistry(driver, undefined)
    await driver.close()
  })
  after(async () => {
    await rgw?.stop()
  })

  test('the registry prefix is ok; the same bucket with a typo in the prefix is not', async () => {
    const s3 = (prefix: string, extra = '') =>
      `{url: "s3://doc/${prefix}", endpoint: "${rgw.endpoint}", checksums: when_required, accessKeyId: "${rgw.accessKeyId}", secretAccessKey: "${rgw.secretAccessKey}"${extra}}`
    const checks = await regionChecks(
      `  good: ${s3('docker/registry/v2')}\n  typo: ${s3('docker/registry/v3')}\n  declared: ${s3('fresh', ', empty: true')}\n`,
    )
    assert.equal(checks.good.status, 'ok', checks.good.detail)
    assert.equal(checks.typo.status, 'fail', checks.typo.detail)
    assert.match(checks.typo.detail, /no blobs\/ and no repositories\//)
    assert.equal(checks.declared.status, 'ok', checks.declared.detail)
  })
})
