// No secret in any output: every command of oclif.manifest.json runs on a success path and on error
// paths (wrong database password, unreachable endpoints, a malformed config, a bad flag) with distinct,
// greppable secrets configured: the S3 access and secret keys, a database password in DATABASE_URL and
// another in the config file, a redis password, the registry password. stdout, stderr (JSON log lines at
// debug level), --json, the journal and jobs rows, and every report and metrics file written are scanned
// for each secret, raw, URL-encoded and base64 (alone and as Basic user:password).
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {readFileSync, readdirSync, statSync, writeFileSync, mkdirSync} from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import {runCli, type CliRun} from '../helpers/cli.js'
import {sharedPostgres} from '../helpers/postgres.js'
import {sharedRadosgw} from '../helpers/radosgw.js'
import {startRedis, type RedisServer} from '../helpers/redis.js'
import {startRegistry, type RegistryServer} from '../helpers/registry.js'
import {pushImage} from '../helpers/images.js'
import {freePort} from '../helpers/ports.js'
import {makeTempDir, removeTempDir} from '../helpers/tmp.js'
import {writeSampleRegistry} from '../../src/lib/quickstart/sample.js'
import {S3Driver} from '../../src/lib/storage/s3.js'

const manifest = JSON.parse(readFileSync(new URL('../../oclif.manifest.json', import.meta.url), 'utf8')) as {
  commands: Record<string, unknown>
}

const tag = randomBytes(4).toString('hex')
const SECRETS = {
  dbEnvPassword: `PgEnvPass-${tag}-x7`,
  dbConfigPassword: `PgCfgPass-${tag}-y8`,
  dbWrongPassword: `PgWrongPass-${tag}-z9`,
  s3WrongSecret: `S3WrongSecret-${tag}-e4`,
  redisPassword: `RedisPass-${tag}-q1`,
  registryPassword: `RegistryPass-${tag}-w2`,
  // the S3 keys are the shared radosgw's, filled in before()
  s3AccessKeyId: '',
  s3SecretAccessKey: '',
}

/** Every form a secret could take in output: raw, URL-encoded, base64 alone and as HTTP Basic user:password. */
function forms(): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const [name, secret] of Object.entries(SECRETS)) {
    out.push([name, secret], [`${name} (url-encoded)`, encodeURIComponent(secret)])
    out.push([`${name} (base64)`, Buffer.from(secret).toString('base64')])
  }
  out.push(['registry Basic', Buffer.from(`ci-bot:${SECRETS.registryPassword}`).toString('base64')])
  return out
}

function leaks(text: string): string[] {
  return forms()
    .filter(([, form]) => form && text.includes(form))
    .map(([name]) => name)
}

interface Case {
  /** argv after the command id (which is split into words) */
  args: string[]
  /** the command reads no configured secret at all: its success run and a bad flag */
  noConfig?: true
  /** the case names an object that does not exist (a not-found is its answer, exit 2) */
  notFound?: true
  /** its success run costs more than the scan can afford (quickstart boots its own PostgreSQL) and reads no secret */
  errorOnly?: true
}

describe('secrets scan: no command prints, logs, journals or reports a configured secret', () => {
  let dir: string
  let out: string
  let redis: RedisServer
  let registry: RegistryServer
  let dbUrl: string
  let goodEnv: Record<string, string>
  let badPasswordEnv: Record<string, string>
  let goodConfig: string
  let unreachableConfig: string
  let s3UnreachableConfig: string
  let badAuthConfig: string
  let malformedConfigs: string[]
  let digest: string
  const scanned: Array<{what: string; text: string}> = []
  const cleanups: Array<() => unknown> = []

  before(async () => {
    dir = makeTempDir('secrets')
    cleanups.push(() => removeTempDir(dir))
    out = path.join(dir, 'out')
    mkdirSync(out)
    const rgw = await sharedRadosgw()
    SECRETS.s3AccessKeyId = rgw.accessKeyId
    SECRETS.s3SecretAccessKey = rgw.secretAccessKey
    const [eu, us] = [await rgw.newBucket('scan-eu'), await rgw.newBucket('scan-us')]
    const regionConfig = (bucket: string) => ({
      kind: 's3' as const,
      name: bucket,
      url: `s3://${bucket}/docker/registry/v2`,
      bucket,
      prefix: 'docker/registry/v2',
      region: 'us-east-1',
      endpoint: rgw.endpoint,
      forcePathStyle: true,
      checksums: 'when_required' as const,
      concurrency: 8,
      accessKeyId: rgw.accessKeyId,
      secretAccessKey: rgw.secretAccessKey,
    })
    const driver = new S3Driver(regionConfig(eu))
    const sample = await writeSampleRegistry(driver, undefined)
    await driver.close()
    digest = sample.tags[0].digest

    // Two login roles with greppable passwords: one for DATABASE_URL, one for the config file.
    const server = await sharedPostgres()
    const adminUrl = await server.createDatabase()
    const database = new URL(adminUrl).pathname.slice(1)
    const admin = new pg.Client({connectionString: adminUrl})
    await admin.connect()
    const [envRole, configRole] = [`scan_env_${tag}`, `scan_cfg_${tag}`]
    await admin.query(`CREATE ROLE ${envRole} LOGIN PASSWORD '${SECRETS.dbEnvPassword}'`)
    await admin.query(`CREATE ROLE ${configRole} LOGIN PASSWORD '${SECRETS.dbConfigPassword}' IN ROLE ${envRole}`)
    await admin.query(`ALTER DATABASE ${database} OWNER TO ${envRole}`)
    await admin.end()
    const dbAt = (role: string, password: string, port = new URL(adminUrl).port) =>
      `postgres://${role}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`
    dbUrl = dbAt(envRole, SECRETS.dbEnvPassword)

    redis = await startRedis()
    cleanups.push(() => redis.stop())
    await redis.cli(['CONFIG', 'SET', 'requirepass', SECRETS.redisPassword])
    registry = await startRegistry({storage: {kind: 'filesystem', root: path.join(dir, 'registry')}})
    cleanups.push(() => registry.stop())
    await pushImage(registry.url, 'scan/app', 'v1', {layers: 1, seed: 'scan'})

    const closed = await freePort()
    const config = (
      name: string,
      o: {s3: string; redis: string; registry: string; db: string; s3Secret?: string; redisPassword?: string},
    ) => {
      const file = path.join(dir, `${name}.yaml`)
      writeFileSync(
        file,
        [
          `database: {url: "${o.db}"}`,
          'regions:',
          `  eu: {url: "s3://${eu}/docker/registry/v2", endpoint: "${o.s3}", accessKeyId: "${rgw.accessKeyId}", secretAccessKey: "${o.s3Secret ?? '${SCAN_S3_SECRET}'}", checksums: when_required}`,
          `  us: {url: "s3://${us}/docker/registry/v2", endpoint: "${o.s3}", accessKeyId: "${rgw.accessKeyId}", secretAccessKey: "\${SCAN_S3_SECRET}", checksums: when_required, empty: true}`,
          'primary: eu',
          'registry:',
          `  url: ${o.registry}`,
          '  username: ci-bot',
          `  password: "${SECRETS.registryPassword}"`,
          `  cache: "redis://:${o.redisPassword ?? SECRETS.redisPassword}@${o.redis}/0"`,
          `sweep: {minAge: 1h, quarantine: "_regops/quarantine", holdFor: 1d}`,
          '',
        ].join('\n'),
      )
      return file
    }
    const configDb = dbAt(configRole, SECRETS.dbConfigPassword)
    goodConfig = config('good', {s3: rgw.endpoint, redis: redis.addr, registry: registry.url, db: configDb})
    // S3 stays reachable here: a refused S3 connection is retried with backoff for ~13 s, which three
    // commands cover below (s3UnreachableConfig) rather than all of them.
    unreachableConfig = config('unreachable', {
      s3: rgw.endpoint,
      redis: `127.0.0.1:${closed}`,
      registry: `http://127.0.0.1:${closed}`,
      db: dbAt(configRole, SECRETS.dbConfigPassword, String(closed)),
    })
    s3UnreachableConfig = config('s3-unreachable', {
      s3: `http://127.0.0.1:${closed}`,
      redis: redis.addr,
      registry: registry.url,
      db: configDb,
    })
    // Wrong credentials everywhere: S3 (SignatureDoesNotMatch, answered at once), redis; the database's
    // wrong password comes with badPasswordEnv.
    badAuthConfig = config('bad-auth', {
      s3: rgw.endpoint,
      redis: redis.addr,
      registry: registry.url,
      db: configDb,
      s3Secret: SECRETS.s3WrongSecret,
      redisPassword: SECRETS.dbWrongPassword,
    })
    // Malformed, each with a secret next to the fault: YAML that does not parse, a bad type, keys split up.
    malformedConfigs = [
      [`database: {url: "${configDb}"`, `registry: {url: http://x, password: "${SECRETS.registryPassword}"`],
      [`database: {url: "mysql://scan:${SECRETS.dbConfigPassword}@127.0.0.1/db"}`],
      ['regions:', `  eu: {url: "s3://${eu}", secretAccessKey: "${rgw.secretAccessKey}", endpoint: "${rgw.endpoint}"}`],
      ['registry:', '  url: http://127.0.0.1:1', `  cache: "memcached://:${SECRETS.redisPassword}@127.0.0.1:1"`],
      ['regions:', `  eu: {url: "s3://${rgw.accessKeyId}:${rgw.secretAccessKey}@${eu}/x"}`],
    ].map((lines, i) => {
      const file = path.join(dir, `malformed-${i}.yaml`)
      writeFileSync(file, lines.join('\n') + '\n')
      return file
    })
    goodEnv = {DATABASE_URL: dbUrl, SCAN_S3_SECRET: rgw.secretAccessKey, REGOPS_LOADTEST_LOOPBACK_ONLY: '1'}
    badPasswordEnv = {...goodEnv, DATABASE_URL: dbAt(envRole, SECRETS.dbWrongPassword)}
    const migrated = await runCli(['db', 'migrate', 'up', '--config', goodConfig], {env: goodEnv})
    assert.equal(migrated.code, 0, migrated.stdout + migrated.stderr)
    const imported = await runCli(['import', '--config', goodConfig], {env: goodEnv})
    assert.equal(imported.code, 0, imported.stdout + imported.stderr)
    // Inputs of the commands that read another command's output: a sweep's --json report, and a plan.
    const report = await runCli(
      ['sweep', 'blobs', '--config', goodConfig, '--report', path.join(out, 'pre.jsonl'), '--json'],
      {env: goodEnv},
    )
    assert.ok(report.code === 0 || report.code === 1, report.stdout + report.stderr)
    writeFileSync(path.join(out, 'sweep-report.json'), report.stdout)
    const plan = await runCli(
      [
        'sweep',
        'blobs',
        '--config',
        goodConfig,
        '--report',
        path.join(out, 'plan.jsonl.report'),
        '--plan-out',
        path.join(out, 'plan.jsonl'),
      ],
      {env: goodEnv},
    )
    assert.ok(plan.code === 0 || plan.code === 1, plan.stdout + plan.stderr)
  })
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup()
  })

  /** One case per command; the run with the good config is expected to succeed or to find something (0 or 1). */
  const cases = (): Record<string, Case> => ({
    doctor: {args: ['--write-check']},
    import: {args: ['--dry-run']},
    journal: {args: []},
    quickstart: {args: ['--dir', path.join(out, 'quickstart')], noConfig: true, errorOnly: true},
    replicate: {args: ['--from', 'eu', '--to', 'us']},
    version: {args: [], noConfig: true},
    'audit:integrity': {args: ['--region', 'eu', '--findings', path.join(out, 'integrity.jsonl')]},
    'audit:regions': {args: ['--regions', 'eu,us', '--findings', path.join(out, 'regions.jsonl')]},
    'config:show': {args: []},
    'config:validate': {args: []},
    'inspect:blob': {args: [digest]},
    'inspect:manifest': {args: ['library/nginx:latest']},
    'inspect:repo': {args: ['library/nginx']},
    'journal:undo': {args: ['1'], notFound: true},
    'jobs:list': {args: []},
    'jobs:show': {args: ['1']},
    'loadtest:merge': {args: [path.join(out, 'pull.json')], noConfig: true},
    'loadtest:pull': {
      args: ['--image', 'scan/app:v1', '--max-pulls', '2', '--rate', '5', '--duration', '1s'],
    },
    'repair:db': {args: ['--repository', 'library/nginx']},
    'repair:links': {args: ['library/nginx']},
    'repair:tag': {args: ['library/nginx:1.25', '--to', digest]},
    'sweep:blobs': {
      args: [
        '--report',
        path.join(out, 'sweep.jsonl'),
        '--metrics-file',
        path.join(out, 'sweep.prom'),
        '--strategy',
        'metadata',
      ],
    },
    'report:merge': {args: [path.join(out, 'sweep-report.json')], noConfig: true},
    'report:usage': {args: ['--region', 'eu']},
    'sweep:apply': {args: [path.join(out, 'plan.jsonl')]},
    'sweep:mark': {args: ['--mark-run', 'scan-1']},
    'sweep:purge': {args: []},
    'sweep:restore': {args: ['--job', '1'], notFound: true},
    'sweep:uploads': {args: []},
    'db:migrate:create': {args: ['scan', '--dir', path.join(out, 'migrations')], noConfig: true},
    'db:migrate:down': {args: ['--dry-run']},
    'db:migrate:status': {args: []},
    'db:migrate:up': {args: []},
  })

  const durations: Array<[string, number]> = []
  async function scanRun(what: string, args: string[], env: Record<string, string>): Promise<CliRun> {
    const started = Date.now()
    const run = await runCli(args, {env})
    durations.push([what, Date.now() - started])
    if (process.env.REGOPS_TEST_DEBUG) process.stderr.write(`[secrets-scan] ${what}: ${Date.now() - started} ms\n`)
    scanned.push({what: `${what}: stdout`, text: run.stdout}, {what: `${what}: stderr`, text: run.stderr})
    return run
  }

  test('every command of the manifest has a case', () => {
    assert.deepEqual(Object.keys(manifest.commands).sort(), Object.keys(cases()).sort())
  })

  test(
    'success paths (text and --json, debug logs), then error paths of every command: nothing leaks',
    {timeout: 600_000},
    async () => {
      const all = cases()
      // The load test report feeds loadtest merge: it runs first.
      const order = ['loadtest:pull', ...Object.keys(all).filter((id) => id !== 'loadtest:pull')]
      const runs: Array<() => Promise<void>> = []
      // Every unexpected exit is collected, so one slow run of the scan shows them all.
      const problems: string[] = []
      const expect = (ok: boolean, message: string) => {
        if (!ok) problems.push(message.slice(0, 1500))
      }
      for (const id of order) {
        const {args, noConfig, errorOnly, notFound} = all[id]
        const base = [...id.split(':'), ...args]
        const withReport = id === 'loadtest:pull' ? ['--report', path.join(out, 'pull.json')] : []
        const debug = ['--log-level', 'debug', '--log-format', 'json']
        if (!errorOnly)
          runs.push(async () => {
            const json = await scanRun(
              `${id} --json`,
              [...base, ...withReport, '--config', goodConfig, '--json', ...debug],
              goodEnv,
            )
            if (!noConfig && !notFound)
              expect(json.code === 0 || json.code === 1, `${id}: exit ${json.code}\n${json.stdout}\n${json.stderr}`)
            expect(json.code !== 70, `${id}: ${json.stdout}${json.stderr}`)
            if (!noConfig)
              await scanRun(`${id} text`, [...base, '--config', goodConfig, '--log-format', 'text'], goodEnv)
          })
        // Every CLI start costs seconds on a loaded 2-core host, so besides the wrong-credentials run each
        // command takes one of the other error paths in turn: unreachable endpoints, one of the malformed
        // files (they all fail in the one config loader every command shares), a bad flag. Each path is run
        // by a third of the commands; the commands without configuration take the bad flag.
        const variant = noConfig ? 2 : order.indexOf(id) % 3
        if (variant === 2) {
          runs.push(async () => {
            const run = await scanRun(`${id} bad flag`, [...base, '--no-such-flag', '--json'], badPasswordEnv)
            expect(run.code === 2, `${id} bad flag: ${run.stdout}${run.stderr}`)
          })
        }
        if (noConfig) continue
        runs.push(async () => {
          const run = await scanRun(
            `${id} wrong passwords`,
            [...base, '--config', badAuthConfig, '--json', ...debug],
            badPasswordEnv,
          )
          expect(run.code !== 70, `${id}: ${run.stdout}${run.stderr}`)
        })
        if (variant === 0) {
          runs.push(async () => {
            const run = await scanRun(
              `${id} unreachable`,
              [...base, '--config', unreachableConfig, '--json', ...debug],
              {
                ...goodEnv,
                DATABASE_URL: '',
              },
            )
            expect(run.code !== 70, `${id}: ${run.stdout}${run.stderr}`)
          })
        }
        if (variant === 1) {
          const i = Math.floor(order.indexOf(id) / 3) % malformedConfigs.length
          runs.push(async () => {
            const run = await scanRun(
              `${id} malformed config ${i}`,
              [...base, '--config', malformedConfigs[i], '--json'],
              {
                SCAN_S3_SECRET: SECRETS.s3SecretAccessKey,
              },
            )
            expect(run.code === 2, `${id} malformed ${i}: ${run.stdout}${run.stderr}`)
          })
        }
        if (['doctor', 'sweep:uploads', 'inspect:repo'].includes(id)) {
          runs.push(async () => {
            const run = await scanRun(
              `${id} s3 unreachable`,
              [...base, '--config', s3UnreachableConfig, '--json'],
              goodEnv,
            )
            expect(run.code !== 70, `${id}: ${run.stdout}${run.stderr}`)
          })
        }
      }
      // The load test report comes first (merge reads it); the rest four at a time.
      await runs.shift()!()
      const queue = [...runs]
      await Promise.all(
        Array.from({length: 4}, async () => {
          for (let next = queue.shift(); next; next = queue.shift()) await next()
        }),
      )

      // What the commands stored and wrote: journal and job rows, reports, findings, metrics, migrations.
      const db = new pg.Client({connectionString: dbUrl})
      await db.connect()
      for (const table of ['regops_journal', 'regops_jobs']) {
        const rows = await db.query(`SELECT row_to_json(t)::text AS row FROM ${table} t`)
        scanned.push({what: `${table} rows`, text: rows.rows.map((r) => r.row).join('\n')})
      }
      await db.end()
      const files = (d: string): string[] =>
        readdirSync(d).flatMap((name) => {
          const p = path.join(d, name)
          return statSync(p).isDirectory() ? files(p) : [p]
        })
      const written = files(out)
      assert.ok(
        written.some((f) => f.endsWith('pull.json')),
        `loadtest report written: ${written.join(', ')}`,
      )
      assert.ok(
        written.some((f) => f.endsWith('sweep.prom')),
        `metrics written: ${written.join(', ')}`,
      )
      for (const file of written.filter((f) => !f.includes(`${path.sep}quickstart${path.sep}`)))
        scanned.push({what: `file ${path.relative(out, file)}`, text: readFileSync(file, 'utf8')})

      const found = scanned.flatMap(({what, text}) => leaks(text).map((secret) => `${what}: ${secret}`))
      assert.deepEqual(found, [], found.join('\n'))
      assert.deepEqual(problems, [], problems.join('\n\n'))
      // The scan saw the places it claims to: a run that printed nothing would pass vacuously.
      assert.ok(scanned.length > 100, `${scanned.length} outputs scanned`)
    },
  )
})
