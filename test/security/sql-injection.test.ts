// Parameterized SQL only. (1) SQL metacharacters fed through every name that reaches a query (repository
// names, tags, digests, job and journal ids, region names), via the built CLI against a real PostgreSQL:
// the tables survive, and each command answers with a clear error or a correct not-found, never exit 70.
// (2) A static scan of src/: no SQL text is built from a variable, except the constants listed here.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import pg from 'pg'
import {runCli} from '../helpers/cli.js'
import {sharedPostgres} from '../helpers/postgres.js'
import {makeTempDir, removeTempDir} from '../helpers/tmp.js'
import {writeSampleRegistry} from '../../src/lib/quickstart/sample.js'
import {FilesystemDriver} from '../../src/lib/storage/filesystem.js'
import {LayoutWriter} from '../../src/lib/sample/layout-writer.js'

const HOSTILE = [
  "x'; DROP TABLE blobs; --",
  "library/nginx'; DELETE FROM tags; --",
  '$1',
  '1; DROP TABLE regops_journal',
  'a\\b\\\\c',
  "sha256:' OR '1'='1",
  '%',
  '1 OR 1=1',
]

/** Each command that passes a name to a query, with the hostile value in that place. */
function commandsWith(value: string, digest: string): string[][] {
  return [
    ['inspect', 'repo', value],
    ['inspect', 'manifest', `${value}:latest`],
    ['inspect', 'manifest', `library/nginx:${value}`],
    ['inspect', 'blob', value],
    ['inspect', 'blob', digest, '--repository', value],
    ['repair', 'links', value],
    ['repair', 'tag', `${value}:latest`, '--to', digest],
    ['repair', 'tag', `library/nginx:${value}`, '--to', digest],
    ['repair', 'tag', 'library/nginx:latest', '--to', value],
    ['repair', 'db', '--repository', value],
    ['import', '--dry-run', '--repository', value],
    ['import', '--resume', value],
    ['jobs', 'show', value],
    ['jobs', 'list', '--kind', value],
    ['journal', '--job', value],
    ['journal', '--digest', value],
    ['journal', 'undo', value],
    ['sweep', 'restore', '--job', value],
    ['sweep', 'restore', '--digest', value],
    ['sweep', 'purge', '--job', value],
    ['sweep', 'uploads', '--region', value],
    ['inspect', 'repo', 'library/nginx', '--region', value],
  ]
}

describe('SQL metacharacters in every name that reaches a query', () => {
  let dir: string
  let config: string
  let dbUrl: string
  let digest: string
  before(async () => {
    dir = makeTempDir('sqli')
    const root = path.join(dir, 'registry')
    const sample = await writeSampleRegistry(new FilesystemDriver('lab', root), root)
    digest = sample.tags[0].digest
    dbUrl = await (await sharedPostgres()).createDatabase()
    config = path.join(dir, 'regops.yaml')
    writeFileSync(config, `database: {url: "${dbUrl}"}\nregions:\n  lab: {url: "file://${root}"}\n`)
    for (const args of [['db', 'migrate', 'up'], ['import']]) {
      const run = await runCli([...args, '--config', config])
      assert.equal(run.code, 0, run.stdout + run.stderr)
    }
  })
  after(() => removeTempDir(dir))

  async function tableCounts(): Promise<Record<string, number>> {
    const client = new pg.Client({connectionString: dbUrl})
    await client.connect()
    try {
      const counts: Record<string, number> = {}
      for (const table of ['blobs', 'tags', 'manifests', 'repositories', 'regops_journal', 'regops_jobs']) {
        counts[table] = (await client.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n
      }
      return counts
    } finally {
      await client.end()
    }
  }

  test('every hostile name: a clear error or a not-found (never 70), and every table as it was', async () => {
    const before = await tableCounts()
    assert.ok(before.blobs > 0 && before.tags > 0, JSON.stringify(before))
    const failures: string[] = []
    // Every command gets the DROP TABLE name and one other hostile value in turn: a CLI start costs seconds.
    const queue = commandsWith(HOSTILE[0], digest).flatMap((args, i) => [
      args,
      commandsWith(HOSTILE[1 + (i % (HOSTILE.length - 1))], digest)[i],
    ])
    await Promise.all(
      Array.from({length: 4}, async () => {
        for (let args = queue.shift(); args; args = queue.shift()) {
          const run = await runCli([...args, '--config', config, '--json'])
          const error = run.json?.error
          const clear = run.code === 0 || run.code === 1 || ([2, 4].includes(run.code!) && error?.message)
          if (!clear || run.code === 70 || run.code === 3)
            failures.push(`${JSON.stringify(args)} → exit ${run.code}: ${(run.stdout + run.stderr).slice(0, 300)}`)
        }
      }),
    )
    assert.deepEqual(failures, [], failures.join('\n'))
    assert.deepEqual(await tableCounts(), before)
  })

  test('a NUL byte from storage (a manifest media type) is refused cleanly by import, never exit 70', async () => {
    // argv cannot carry NUL; storage can: a manifest's JSON may hold \u0000, which PostgreSQL text refuses.
    const root = path.join(dir, 'nul')
    const writer = new LayoutWriter(new FilesystemDriver('nul', root))
    const config = await writer.putBlob(Buffer.from('{}'))
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json\u0000evil',
      config: {mediaType: 'application/vnd.oci.image.config.v1+json\u0000', digest: config, size: 2},
      layers: [],
    }
    await writer.putManifest('nul/app', Buffer.from(JSON.stringify(manifest)), 'v1')
    await writer.putManifest('nul/app', Buffer.from(JSON.stringify({...manifest, mediaType: undefined})), 'v2')
    const nulConfig = path.join(dir, 'nul.yaml')
    writeFileSync(nulConfig, `database: {url: "${dbUrl}"}\nregions:\n  nul: {url: "file://${root}"}\n`)
    const before = await tableCounts()
    const run = await runCli(['import', '--config', nulConfig, '--json'])
    assert.notEqual(run.code, 70, run.stdout + run.stderr)
    assert.match(run.stdout + run.stderr, /nul\/app/, 'the error names the repository')
    const after = await tableCounts()
    for (const table of ['blobs', 'tags', 'manifests']) assert.ok(after[table] >= before[table], `${table} shrank`)
  })
})

describe('static scan: no SQL built from a variable', () => {
  /**
   * Interpolations into SQL text that are allowed, by file and expression, each with why it is safe.
   * A new one needs an entry here (and a reason): everything else goes through $n parameters.
   */
  const ALLOWED: Record<string, string> = {
    'src/lib/audit/sources.ts: DATABASE_PAGE': 'a numeric constant (page size) in LIMIT',
    'src/lib/metadata/embedded.ts: Math.floor(opts.partitions)': 'an integer; ALTER DATABASE … SET takes no parameters',
    'src/lib/metadata/import-db-repository.ts: gone':
      'a constant SQL subquery of the same function, itself using $1/$2',
    'src/lib/metadata/import-db-group.ts: source':
      'a constant unnest(...) JOIN fragment of the same function; every value is a $n array parameter',
    'src/lib/metadata/import-db-group.ts: edgeRows': 'a constant unnest(...) fragment; values are $n array parameters',
    'src/lib/metadata/import-db-group.ts: child': 'a constant correlated subquery of the same function',
    'src/lib/metadata/migrations.ts: MIGRATIONS_TABLE': 'a constant identifier (the migrations table name)',
    'src/lib/metadata/migrations.ts: MIGRATION_LOCK_KEY': 'a constant bigint advisory lock key',
    "src/lib/sweep/journal.ts: opts.oldestFirst ? 'ASC' : 'DESC'": 'one of two keywords, chosen by a boolean',
    "src/lib/sweep/references.ts: cond('digest')": 'column names written as literals, compared with $n',
    "src/lib/sweep/references.ts: cond('configuration_blob_digest')": 'as above',
    "src/lib/sweep/references.ts: cond('subject_digest')": 'as above',
    "src/lib/sweep/references.ts: cond('child_digest')": 'as above',
    "src/lib/sweep/references.ts: cond('blob_digest')": 'as above',
    'src/lib/sweep/references.ts: linkedSince': "a placeholder ('$3') chosen by the caller, never a value",
  }
  const SQL =
    /\b(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|WHERE|VALUES|CREATE\s|ALTER\s|DROP\s|TRUNCATE)\b/

  function sources(dir: string): string[] {
    return readdirSync(dir).flatMap((name) => {
      const p = path.join(dir, name)
      return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : []
    })
  }

  test('every interpolation into SQL text is a listed constant; no SQL string is concatenated with a value', () => {
    const repo = fileURLToPath(new URL('../../', import.meta.url))
    const found: string[] = []
    const used = new Set<string>()
    for (const file of sources(path.join(repo, 'src'))) {
      const rel = path.relative(repo, file)
      const text = readFileSync(file, 'utf8')
      for (const literal of text.matchAll(/`((?:[^`\\]|\\.)*)`/g)) {
        const body = literal[1]
        if (!body.includes('${') || !SQL.test(body.replace(/\$\{[^}]*\}/g, ''))) continue
        const line = text.slice(0, literal.index).split('\n').length
        for (const [, expression] of body.matchAll(/\$\{((?:[^{}]|\{[^}]*\})*)\}/g)) {
          const key = `${rel}: ${expression.trim()}`
          if (ALLOWED[key]) used.add(key)
          else found.push(`${rel}:${line}: \${${expression}} in SQL text`)
        }
      }
      // 'SELECT … ' + value, or value + ' WHERE …'
      for (const concat of text.matchAll(
        /(['"])((?:(?!\1)[^\\\n]|\\.)*)\1\s*\+|\+\s*(['"])((?:(?!\3)[^\\\n]|\\.)*)\3/g,
      )) {
        const piece = concat[2] ?? concat[4] ?? ''
        if (SQL.test(piece) && /^[A-Z ]|\b(FROM|WHERE|SET)\b/.test(piece))
          found.push(`${rel}:${text.slice(0, concat.index).split('\n').length}: SQL concatenated: ${concat[0]}`)
      }
    }
    assert.deepEqual(found, [], found.join('\n'))
    // An entry whose code is gone would allow the next one silently.
    assert.deepEqual(
      Object.keys(ALLOWED).filter((key) => !used.has(key)),
      [],
    )
  })
})
