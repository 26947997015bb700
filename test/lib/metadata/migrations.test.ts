// Migrations and the db layer against a real PostgreSQL (test/helpers/postgres.ts): no mocks.
// Run: node --import tsx --test test/lib/metadata/migrations.test.ts
import {after, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {appendFile, cp, mkdtemp, readdir, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import {sharedPostgres, TEST_HASH_PARTITIONS} from '../../helpers/postgres.js'
import {DatabaseConnectionError, openDatabase, type Db} from '../../../src/lib/metadata/db.js'
import {redactUrl} from '../../../src/lib/output/redact.js'
import {
  assertSchemaCurrent,
  createMigration,
  DEFAULT_MIGRATIONS_DIR,
  loadMigrations,
  MIGRATION_LOCK_KEY,
  migrateDown,
  migrateUp,
  migrationStatus,
  NO_TRANSACTION_MARKER,
  splitStatements,
} from '../../../src/lib/metadata/migrations.js'
import {ExitCode, RegopsError} from '../../../src/lib/errors.js'

const REGISTRY_TABLES = [
  'blobs',
  'layers',
  'manifest_references',
  'manifests',
  'media_types',
  'repositories',
  'repository_blobs',
  'tags',
  'top_level_namespaces',
]
// 0004 adds the import's unresolved references, partitioned like manifests
const PARTITIONED = [
  'blobs',
  'dangling_manifest_references',
  'layers',
  'manifest_references',
  'manifests',
  'repository_blobs',
  'tags',
  'unreadable_revisions',
]
const OUR_TABLES = [...REGISTRY_TABLES, 'regops_jobs', 'regops_journal', 'regops_schema_migrations'].sort()

// Other parts of regops add their own migrations to migrations/ (0003…): the tests use whatever is
// there, and check that 0001/0002 are the ones described here.
const FILES = await loadMigrations()
const N = FILES.length
const VERSIONS = FILES.map((m) => m.version)
const pad = (v: number): string => String(v).padStart(4, '0')

const openDbs: Db[] = []
const tempDirs: string[] = []
after(async () => {
  await Promise.all(openDbs.map((db) => db.close()))
  await Promise.all(tempDirs.map((dir) => rm(dir, {recursive: true, force: true})))
})

async function freshUrl(): Promise<string> {
  return (await sharedPostgres()).createDatabase()
}

function track(db: Db): Db {
  openDbs.push(db)
  return db
}

async function freshDb(): Promise<Db> {
  return track(openDatabase(await freshUrl(), {max: 4}))
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'regops-migrations-'))
  tempDirs.push(dir)
  return dir
}

/** A writable copy of the package's migrations/ directory. */
async function copyOfMigrations(): Promise<string> {
  const dir = await tempDir()
  await cp(DEFAULT_MIGRATIONS_DIR, dir, {recursive: true})
  return dir
}

async function tablesOf(db: Db): Promise<string[]> {
  const r = await db.query<{relname: string}>(
    `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1`,
  )
  return r.rows.map((row) => row.relname)
}

/** Everything in the public schema that a migration can create, as sorted text lines. */
async function catalogDump(db: Db): Promise<string[]> {
  const r = await db.query<{line: string}>(`
    SELECT 'rel ' || c.relname || ' ' || c.relkind::text || coalesce(' ' || pg_get_expr(c.relpartbound, c.oid), '')
             || coalesce(' partkey ' || pg_get_partkeydef(c.oid), '') AS line
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
    UNION ALL
    SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
             || coalesce(' collate ' || co.collname, '') || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
             || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') || ' identity=' || a.attidentity::text
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
    UNION ALL
    SELECT 'idx ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL
    SELECT 'con ' || c.conrelid::regclass::text || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
      FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public'
    UNION ALL
    SELECT 'type ' || t.typname || ' ' || t.typtype::text || coalesce(' collate ' || co.collname, '')
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      LEFT JOIN pg_collation co ON co.oid = t.typcollation AND t.typcollation <> 100
     WHERE n.nspname = 'public' AND t.typtype = 'd'
    UNION ALL
    SELECT 'comment ' || c.relname || ' ' || d.description
      FROM pg_description d JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND d.objsubid = 0
    UNION ALL
    SELECT 'media_type ' || id || ' ' || media_type FROM media_types
    ORDER BY 1`)
  return r.rows.map((row) => row.line)
}

async function rejectsWith(promise: Promise<unknown>, check: (error: RegopsError) => void): Promise<RegopsError> {
  let caught: unknown
  try {
    await promise
  } catch (error) {
    caught = error
  }
  assert.ok(
    caught instanceof RegopsError,
    `expected a RegopsError, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)}`,
  )
  check(caught)
  return caught
}

function randomDigest(): string {
  return Math.random() < 0.8 ? `sha256:${randomBytes(32).toString('hex')}` : `sha512:${randomBytes(64).toString('hex')}`
}

describe('migration files', () => {
  test('the package set loads: 0001, 0002, …, each with a checksum', async () => {
    const migrations = await loadMigrations()
    assert.deepEqual(
      migrations.slice(0, 2).map((m) => [m.version, m.name]),
      [
        [1, 'registry_metadata'],
        [2, 'regops_jobs_journal'],
      ],
    )
    assert.deepEqual(
      migrations.map((m) => m.version),
      Array.from({length: N}, (_, i) => i + 1),
    )
    for (const m of migrations) assert.match(m.checksum, /^[a-f0-9]{64}$/)
  })

  test('a malformed set is a usage error (exit 2) naming the file', async () => {
    const cases: Array<[string, Record<string, string>, RegExp]> = [
      ['misnamed', {'0001_a.up.sql': '', '0001_a.down.sql': '', '2_b.up.sql': ''}, /2_b\.up\.sql/],
      [
        'gap',
        {'0001_a.up.sql': '', '0001_a.down.sql': '', '0003_c.up.sql': '', '0003_c.down.sql': ''},
        /0003_c\.up\.sql.*0002 is missing/,
      ],
      [
        'no down',
        {'0001_a.up.sql': '', '0001_a.down.sql': '', '0002_b.up.sql': ''},
        /0002_b\.up\.sql has no matching \.down\.sql/,
      ],
      [
        'no up',
        {'0001_a.up.sql': '', '0001_a.down.sql': '', '0002_b.down.sql': ''},
        /0002_b\.down\.sql has no matching \.up\.sql/,
      ],
      [
        'duplicate',
        {'0001_a.up.sql': '', '0001_a.down.sql': '', '0001_b.up.sql': '', '0001_b.down.sql': ''},
        /duplicate migration version 0001/,
      ],
      [
        'own transaction',
        {'0001_a.up.sql': 'BEGIN;\nCREATE TABLE x ();\nCOMMIT;\n', '0001_a.down.sql': ''},
        /0001_a\.up\.sql contains "BEGIN;"/,
      ],
    ]
    for (const [label, files, pattern] of cases) {
      const dir = await tempDir()
      for (const [name, content] of Object.entries(files)) await writeFile(path.join(dir, name), content)
      await rejectsWith(loadMigrations(dir), (error) => {
        assert.equal(error.exitCode, 2, label)
        assert.match(error.message, pattern, label)
      })
    }
  })

  test('createMigration writes the next-numbered pair', async () => {
    const dir = await copyOfMigrations()
    const created = await createMigration(dir, 'Add Foo-Index')
    assert.equal(created.version, N + 1)
    assert.equal(path.basename(created.upPath), `${pad(N + 1)}_add_foo_index.up.sql`)
    assert.equal(path.basename(created.downPath), `${pad(N + 1)}_add_foo_index.down.sql`)
    assert.deepEqual(
      (await loadMigrations(dir)).map((m) => m.version),
      [...VERSIONS, N + 1],
    )
    const empty = await tempDir()
    assert.equal(path.basename((await createMigration(empty, 'init')).upPath), '0001_init.up.sql')
    assert.ok((await readdir(empty)).includes('0001_init.down.sql'))
  })
})

describe('migrate up / status / down', () => {
  test('up applies every migration and creates the tables; status shows them applied', async () => {
    const db = await freshDb()
    const result = await migrateUp(db)
    assert.equal(result.kind, 'migrate-up')
    assert.equal(result.dryRun, false)
    assert.deepEqual(
      result.applied.map((a) => a.version),
      VERSIONS,
    )
    assert.equal(result.from, 0)
    assert.equal(result.to, N)
    assert.deepEqual(result.pending, [])
    assert.equal(result.sql, undefined)
    const tables = await tablesOf(db)
    for (const table of OUR_TABLES) assert.ok(tables.includes(table), table)

    const status = await migrationStatus(db)
    assert.equal(status.kind, 'migrate-status')
    assert.equal(status.current, N)
    assert.equal(status.latest, N)
    assert.deepEqual(
      status.migrations.map((m) => [m.version, m.state]),
      VERSIONS.map((v) => [v, 'applied']),
    )
    for (const [i, m] of status.migrations.entries()) {
      assert.equal(m.checksum, FILES[i].checksum)
      assert.equal(m.recordedChecksum, FILES[i].checksum)
      assert.ok(m.appliedAt && !Number.isNaN(Date.parse(m.appliedAt)))
    }
    await assertSchemaCurrent(db)
  })

  test('up twice is a no-op', async () => {
    const db = await freshDb()
    await migrateUp(db)
    const before = await catalogDump(db)
    const again = await migrateUp(db)
    assert.deepEqual(again.applied, [])
    assert.deepEqual(again.planned, [])
    assert.equal(again.from, N)
    assert.equal(again.to, N)
    assert.deepEqual(await catalogDump(db), before)
    const rows = await db.query(`SELECT version FROM regops_schema_migrations ORDER BY version`)
    assert.deepEqual(
      rows.rows.map((r) => r.version),
      VERSIONS,
    )
  })

  test('up --to stops at a version; down --steps reverts the latest; a bad target is a usage error', async () => {
    const db = await freshDb()
    const first = await migrateUp(db, {to: 1})
    assert.deepEqual(
      first.applied.map((a) => a.version),
      [1],
    )
    assert.deepEqual(
      first.pending.map((p) => p.version),
      VERSIONS.slice(1),
    )
    assert.deepEqual(
      (await migrationStatus(db)).migrations.map((m) => m.state),
      VERSIONS.map((v) => (v === 1 ? 'applied' : 'pending')),
    )
    await rejectsWith(assertSchemaCurrent(db), (error) => {
      assert.equal(error.exitCode, 4)
      assert.equal(error.hint, 'run regops db migrate up')
    })
    await rejectsWith(migrateUp(db, {to: N + 5}), (error) => assert.equal(error.exitCode, 2))
    await migrateUp(db)
    await rejectsWith(migrateDown(db, {steps: N + 1}), (error) => {
      assert.equal(error.exitCode, 2)
      assert.match(error.message, new RegExp(`only ${N} are applied`))
    })
    const down = await migrateDown(db)
    assert.deepEqual(
      down.reverted.map((r) => r.version),
      [N],
    )
    assert.equal(down.from, N)
    assert.equal(down.to, N - 1)
    assert.equal((await migrationStatus(db)).current, N - 1)
  })

  test('down then up round-trips the catalog; down drops exactly what up created', async () => {
    const db = await freshDb()
    await migrateUp(db)
    const before = await catalogDump(db)
    assert.ok(before.length > 200, `catalog dump has ${before.length} lines`)

    const down = await migrateDown(db, {steps: N})
    assert.deepEqual(
      down.reverted.map((r) => r.version),
      [...VERSIONS].reverse(),
    )
    assert.equal(down.to, 0)
    // Nothing left but the bookkeeping table (and its index/constraint/row type).
    const left = await db.query<{name: string}>(
      `SELECT c.relname || ':' || c.relkind::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' ORDER BY 1`,
    )
    assert.deepEqual(
      left.rows.map((r) => r.name),
      ['regops_schema_migrations:r', 'regops_schema_migrations_pkey:i'],
    )
    const types = await db.query(
      `SELECT typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public' AND t.typtype <> 'c' AND t.typname NOT LIKE '\\_%'`,
    )
    assert.deepEqual(types.rows, [])
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM regops_schema_migrations`)).rows[0].n, 0)

    await migrateUp(db)
    assert.deepEqual(await catalogDump(db), before)
  })

  test('dry run returns the SQL and applies nothing (up and down)', async () => {
    const db = await freshDb()
    const dry = await migrateUp(db, {dryRun: true})
    assert.equal(dry.dryRun, true)
    assert.deepEqual(dry.applied, [])
    assert.deepEqual(
      dry.planned.map((p) => p.version),
      VERSIONS,
    )
    assert.equal(dry.to, N)
    assert.equal(dry.sql?.length, N)
    assert.match(dry.sql![0], /^-- 0001_registry_metadata\.up\.sql/)
    assert.match(dry.sql![0], /CREATE TABLE blobs/)
    assert.match(dry.sql![1], /CREATE TABLE regops_jobs/)
    assert.deepEqual(await tablesOf(db), [], 'dry run created nothing, not even the bookkeeping table')

    await migrateUp(db)
    const before = await catalogDump(db)
    const dryDown = await migrateDown(db, {steps: N, dryRun: true})
    assert.deepEqual(
      dryDown.planned.map((p) => p.version),
      [...VERSIONS].reverse(),
    )
    assert.deepEqual(dryDown.reverted, [])
    assert.equal(dryDown.to, 0)
    assert.match(dryDown.sql![N - 2], /^-- 0002_regops_jobs_journal\.down\.sql[^]*DROP TABLE regops_journal/)
    assert.deepEqual(await catalogDump(db), before)
    assert.deepEqual((await migrateUp(db, {dryRun: true})).sql, [])
  })

  test('concurrent up from two pools: exactly one applies each version, the other waits and finds nothing', async () => {
    // A slow third migration makes the two runs overlap for certain.
    const dir = await copyOfMigrations()
    await writeFile(
      path.join(dir, `${pad(N + 1)}_slow.up.sql`),
      'CREATE TABLE slow_marker (id int);\nSELECT pg_sleep(0.4);\n',
    )
    await writeFile(path.join(dir, `${pad(N + 1)}_slow.down.sql`), 'DROP TABLE slow_marker;\n')
    const url = await freshUrl()
    const a = track(openDatabase(url, {max: 2}))
    const b = track(openDatabase(url, {max: 2}))
    const results = await Promise.allSettled([migrateUp(a, {dir}), migrateUp(b, {dir})])
    for (const r of results) assert.equal(r.status, 'fulfilled', r.status === 'rejected' ? String(r.reason) : '')
    const applied = results.map((r) => (r.status === 'fulfilled' ? r.value.applied.map((x) => x.version) : []))
    assert.deepEqual(
      applied.flat().sort((x, y) => x - y),
      [...VERSIONS, N + 1],
    )
    assert.ok(applied.some((v) => v.length === N + 1) && applied.some((v) => v.length === 0), JSON.stringify(applied))
    const rows = await a.query(
      `SELECT version, count(*)::int AS n FROM regops_schema_migrations GROUP BY version ORDER BY version`,
    )
    assert.deepEqual(
      rows.rows,
      [...VERSIONS, N + 1].map((version) => ({version, n: 1})),
    )

    // Short lock timeout: whoever does not get the lock is refused (exit 4); never both apply.
    const url2 = await freshUrl()
    const c = track(openDatabase(url2, {max: 2}))
    const d = track(openDatabase(url2, {max: 2}))
    const raced = await Promise.allSettled([
      migrateUp(c, {dir, lockTimeoutMs: 100}),
      migrateUp(d, {dir, lockTimeoutMs: 100}),
    ])
    let appliedCount = 0
    for (const r of raced) {
      if (r.status === 'fulfilled') appliedCount += r.value.applied.length
      else {
        assert.ok(r.reason instanceof RegopsError, String(r.reason))
        assert.equal(r.reason.exitCode, 4)
        assert.match(r.reason.message, /another migration holds the lock/)
      }
    }
    assert.equal(appliedCount, N + 1)
    const rows2 = await c.query(
      `SELECT count(*)::int AS n, count(DISTINCT version)::int AS d FROM regops_schema_migrations`,
    )
    assert.deepEqual(rows2.rows[0], {n: N + 1, d: N + 1})
  })

  test('a held lock refuses with exit 4 and names the holder', async () => {
    const url = await freshUrl()
    const holder = new pg.Client({connectionString: url, application_name: 'lock-holder'})
    await holder.connect()
    try {
      await holder.query(`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY})`)
      const db = track(openDatabase(url))
      const started = Date.now()
      await rejectsWith(migrateUp(db, {lockTimeoutMs: 400}), (error) => {
        assert.equal(error.exitCode, 4)
        assert.match(error.message, /another migration holds the lock \(pid \d+, lock-holder/)
      })
      assert.ok(Date.now() - started >= 350, 'waited for the lock before refusing')
      assert.deepEqual(await tablesOf(db), [])
    } finally {
      await holder.end()
    }
  })

  test('a failing migration leaves nothing of itself; earlier ones stay applied', async () => {
    const dir = await copyOfMigrations()
    const bad = `${pad(N + 1)}_bad`
    await writeFile(
      path.join(dir, `${bad}.up.sql`),
      'CREATE TABLE half_applied (id int);\nINSERT INTO half_applied VALUES (1);\nCREAT TABLE oops (id int);\n',
    )
    await writeFile(path.join(dir, `${bad}.down.sql`), 'DROP TABLE half_applied;\n')
    const db = await freshDb()
    const error = await rejectsWith(migrateUp(db, {dir}), (e) => {
      assert.equal(e.code, 'MIGRATION_FAILED')
      assert.equal(e.exitCode, 3)
      assert.match(e.message, new RegExp(`${bad}\\.up\\.sql failed at line 3: syntax error at or near "CREAT"`))
      assert.match(e.hint ?? '', new RegExp(`^${VERSIONS.map(pad).join(', ')} were applied before it`))
    })
    assert.equal(error.details?.version, N + 1)
    assert.equal((await db.query(`SELECT to_regclass('half_applied') AS t`)).rows[0].t, null)
    const versions = await db.query(`SELECT version FROM regops_schema_migrations ORDER BY version`)
    assert.deepEqual(
      versions.rows.map((r) => r.version),
      VERSIONS,
    )
    const status = await migrationStatus(db, {dir})
    assert.deepEqual(
      status.migrations.map((m) => m.state),
      [...VERSIONS.map(() => 'applied'), 'pending'],
    )
  })

  test('a migration marked regops:no-transaction runs outside a transaction, statement by statement, recorded after it succeeds', async () => {
    const dir = await copyOfMigrations()
    const name = `${pad(N + 1)}_concurrent_indexes`
    // CREATE INDEX CONCURRENTLY refuses to run in a transaction block, and so in a multi-statement query.
    await writeFile(
      path.join(dir, `${name}.up.sql`),
      `${NO_TRANSACTION_MARKER}\n-- built without blocking writes; IF NOT EXISTS: safe to run again\n` +
        `CREATE INDEX CONCURRENTLY IF NOT EXISTS regops_test_a ON regops_jobs (created_at);\n` +
        `CREATE INDEX CONCURRENTLY IF NOT EXISTS regops_test_b ON regops_jobs (finished_at) WHERE status = 'done';\n`,
    )
    await writeFile(
      path.join(dir, `${name}.down.sql`),
      `${NO_TRANSACTION_MARKER}\nDROP INDEX CONCURRENTLY IF EXISTS regops_test_b;\nDROP INDEX CONCURRENTLY IF EXISTS regops_test_a;\n`,
    )
    const db = await freshDb()
    const dry = await migrateUp(db, {dir, dryRun: true})
    assert.match(dry.sql!.at(-1)!, /runs outside a transaction, statement by statement/)
    const up = await migrateUp(db, {dir})
    assert.equal(up.applied.at(-1)?.version, N + 1)
    const valid = async () =>
      (
        await db.query<{name: string}>(
          `SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE c.relname IN ('regops_test_a', 'regops_test_b') AND i.indisvalid ORDER BY 1`,
        )
      ).rows.map((r) => r.name)
    assert.deepEqual(await valid(), ['regops_test_a', 'regops_test_b'])
    assert.ok((await migrationStatus(db, {dir})).migrations.every((m) => m.state === 'applied'))
    const down = await migrateDown(db, {dir})
    assert.equal(down.reverted[0].version, N + 1)
    assert.deepEqual(await valid(), [])

    // a failure part-way leaves the statements before it applied, and the file unrecorded
    const broken = `${NO_TRANSACTION_MARKER}\nCREATE INDEX CONCURRENTLY IF NOT EXISTS regops_test_a ON regops_jobs (created_at);\nCREATE INDEX CONCURRENTLY regops_test_c ON no_such_table (x);\n`
    const brokenDir = await copyOfMigrations()
    await writeFile(path.join(brokenDir, `${name}.up.sql`), broken)
    await writeFile(path.join(brokenDir, `${name}.down.sql`), `${NO_TRANSACTION_MARKER}\nSELECT 1;\n`)
    await rejectsWith(migrateUp(db, {dir: brokenDir}), (e) => {
      assert.equal(e.code, 'MIGRATION_FAILED')
      assert.match(
        e.message,
        /failed at line 3: .*no_such_table.*outside a transaction: the statements before the failing one stay applied/,
      )
    })
    assert.deepEqual(await valid(), ['regops_test_a'])
    assert.equal((await migrationStatus(db, {dir: brokenDir})).migrations.at(-1)?.state, 'pending')

    // the statement splitter keeps what is quoted or commented together
    assert.deepEqual(
      splitStatements(
        `SELECT ';' AS a; -- a comment; still a comment\nDO $body$ BEGIN PERFORM 1; END $body$;\n/* a; /* nested; */ comment */ SELECT E'it\\'s;' , "semi;colon" FROM t;\n-- trailing comment only\n`,
      ).map((st) => st.text.trim()),
      [
        `SELECT ';' AS a;`,
        `-- a comment; still a comment\nDO $body$ BEGIN PERFORM 1; END $body$;`,
        `/* a; /* nested; */ comment */ SELECT E'it\\'s;' , "semi;colon" FROM t;`,
      ],
    )
  })

  test('lock_timeout: a migration blocked by a lock another session holds fails fast, with what to do', async () => {
    const dir = await copyOfMigrations()
    const name = `${pad(N + 1)}_add_column`
    await writeFile(path.join(dir, `${name}.up.sql`), 'ALTER TABLE regops_jobs ADD COLUMN regops_test_col integer;\n')
    await writeFile(path.join(dir, `${name}.down.sql`), 'ALTER TABLE regops_jobs DROP COLUMN regops_test_col;\n')
    const url = await freshUrl()
    const db = track(openDatabase(url, {max: 4}))
    await migrateUp(db)
    // A long transaction that has read regops_jobs: ALTER TABLE needs the lock it holds.
    const blocker = new pg.Client({connectionString: url})
    await blocker.connect()
    await blocker.query('BEGIN')
    await blocker.query('SELECT count(*) FROM regops_jobs')
    // Without lock_timeout the migration would wait for this transaction: end it after 10 s either way.
    const release = setTimeout(() => void blocker.query('ROLLBACK').catch(() => {}), 10_000)
    try {
      const started = Date.now()
      await rejectsWith(migrateUp(db, {dir, statementLockTimeoutMs: 300}), (e) => {
        assert.equal(e.code, 'MIGRATION_LOCK_TIMEOUT')
        assert.equal(e.exitCode, ExitCode.Refused)
        assert.match(
          e.message,
          new RegExp(
            `${name}\\.up\\.sql waited 300ms \\(lock_timeout\\) for a lock that another session holds; it was rolled back`,
          ),
        )
        assert.match(e.hint ?? '', /pg_stat_activity/)
      })
      assert.ok(Date.now() - started < 5000, `failed after ${Date.now() - started} ms`)
      assert.equal((await migrationStatus(db, {dir})).migrations.at(-1)?.state, 'pending')
    } finally {
      clearTimeout(release)
      await blocker.query('ROLLBACK').catch(() => {})
      await blocker.end()
    }
    // the blocker gone, the same migration applies
    const up = await migrateUp(db, {dir, statementLockTimeoutMs: 300})
    assert.equal(up.applied.at(-1)?.version, N + 1)
  })

  test('an invalid partition count fails the migration cleanly', async () => {
    const url = await freshUrl()
    const admin = track(openDatabase(url))
    const dbName = new URL(url).pathname.slice(1)
    await admin.query(`ALTER DATABASE "${dbName}" SET regops.hash_partitions = '3'`)
    const db = track(openDatabase(url)) // new sessions see the setting
    await rejectsWith(migrateUp(db), (e) => {
      assert.equal(e.exitCode, 3)
      assert.match(e.message, /0001_registry_metadata\.up\.sql failed.*power of two between 1 and 1024, got 3/)
    })
    assert.deepEqual(await tablesOf(db), ['regops_schema_migrations'])
  })

  test('an edited applied migration is refused (exit 4) and shown as drifted', async () => {
    const dir = await copyOfMigrations()
    const db = await freshDb()
    await migrateUp(db, {dir})
    await appendFile(path.join(dir, '0001_registry_metadata.up.sql'), '\nCREATE INDEX sneaky ON blobs (size);\n')
    await createMigration(dir, 'next')
    await rejectsWith(migrateUp(db, {dir}), (error) => {
      assert.equal(error.exitCode, 4)
      assert.equal(error.code, 'MIGRATION_DRIFTED')
      assert.match(error.message, /migration 0001 \(0001_registry_metadata\.up\.sql\) has drifted/)
    })
    await rejectsWith(migrateUp(db, {dir, dryRun: true}), (error) => assert.equal(error.exitCode, 4))
    await rejectsWith(migrateDown(db, {dir}), (error) => assert.equal(error.exitCode, 4))
    const status = await migrationStatus(db, {dir})
    assert.deepEqual(
      status.migrations.map((m) => [m.version, m.state]),
      [...VERSIONS.map((v) => [v, v === 1 ? 'drifted' : 'applied']), [N + 1, 'pending']],
    )
    assert.notEqual(status.migrations[0].checksum, status.migrations[0].recordedChecksum)
    await rejectsWith(assertSchemaCurrent(db, {dir}), (error) => {
      assert.equal(error.exitCode, 4)
      assert.match(error.message, /drifted/)
    })
    assert.deepEqual(
      (await db.query(`SELECT count(*)::int AS n FROM pg_indexes WHERE indexname = 'sneaky'`)).rows[0].n,
      0,
    )
  })

  test('a database newer than the files: status says missing-file, up is refused', async () => {
    const dir = await copyOfMigrations()
    const db = await freshDb()
    await migrateUp(db, {dir})
    // drop the newest file pair: the database now knows a migration the files do not
    await rm(path.join(dir, FILES[N - 1].file))
    await rm(path.join(dir, FILES[N - 1].downFile))
    const status = await migrationStatus(db, {dir})
    assert.deepEqual(
      status.migrations.map((m) => [m.version, m.state]),
      VERSIONS.map((v) => [v, v === N ? 'missing-file' : 'applied']),
    )
    await rejectsWith(migrateUp(db, {dir}), (error) => {
      assert.equal(error.exitCode, 4)
      assert.match(error.message, /newer than this regops/)
    })
    await rejectsWith(assertSchemaCurrent(db, {dir}), (error) => assert.equal(error.hint, 'upgrade regops'))
  })

  test('assertSchemaCurrent on an empty database: refused, hint run regops db migrate up', async () => {
    const db = await freshDb()
    await rejectsWith(assertSchemaCurrent(db), (error) => {
      assert.equal(error.exitCode, 4)
      assert.equal(error.hint, 'run regops db migrate up')
    })
  })
})

describe('schema', () => {
  test('digests sort in storage-key byte order (COLLATE "C")', async () => {
    const db = await freshDb()
    await migrateUp(db)
    const digests = Array.from({length: 400}, randomDigest)
    // digits vs letters, ':' and the sha256/sha512 boundary, where a locale collation would differ
    digests.push(
      `sha256:${'0'.repeat(64)}`,
      `sha256:${'f'.repeat(64)}`,
      `sha256:${'a'.repeat(63)}0`,
      `sha512:${'0'.repeat(128)}`,
    )
    await db.query(`INSERT INTO blobs (digest, size) SELECT d, 1 FROM unnest($1::text[]) AS d`, [digests])
    const fromDb = (await db.query<{digest: string}>(`SELECT digest FROM blobs ORDER BY digest`)).rows.map(
      (r) => r.digest,
    )
    const byBytes = [...digests].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
    assert.deepEqual(fromDb, byBytes)
    // and in the order of the storage keys an S3 listing returns: blobs/<alg>/<2 hex>/<hex>/data
    const key = (d: string): string => {
      const [alg, hex] = d.split(':')
      return `blobs/${alg}/${hex.slice(0, 2)}/${hex}/data`
    }
    const byKeys = [...digests].sort((x, y) => Buffer.compare(Buffer.from(key(x)), Buffer.from(key(y))))
    assert.deepEqual(fromDb, byKeys)
    // the same through a join column of another table type (layers.digest uses the same domain)
    const collation = await db.query(
      `SELECT c.relname, a.attname, co.collname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_collation co ON co.oid = a.attcollation
        WHERE c.relname IN ('blobs', 'layers', 'manifests', 'repository_blobs', 'regops_journal')
          AND a.attname IN ('digest', 'blob_digest', 'configuration_blob_digest', 'subject_digest') ORDER BY 1, 2`,
    )
    assert.ok(collation.rows.length >= 7)
    for (const row of collation.rows) assert.equal(row.collname, 'C', `${row.relname}.${row.attname}`)
  })

  test('malformed digests are rejected by the CHECK', async () => {
    const db = await freshDb()
    await migrateUp(db)
    const bad = [
      `sha256:${'A'.repeat(64)}`,
      `sha256:${'a'.repeat(63)}`,
      `sha256:${'a'.repeat(65)}`,
      `sha512:${'a'.repeat(64)}`,
      `sha384:${'a'.repeat(96)}`,
      'a'.repeat(64),
      `sha256:${'g'.repeat(64)}`,
      ` sha256:${'a'.repeat(64)}`,
    ]
    for (const digest of bad) {
      await assert.rejects(
        db.query(`INSERT INTO blobs (digest, size) VALUES ($1, 1)`, [digest]),
        (error: {code?: string}) => {
          assert.equal(error.code, '23514', digest)
          return true
        },
      )
    }
    await db.query(`INSERT INTO blobs (digest, size) VALUES ($1, 1)`, [`sha256:${'a'.repeat(64)}`])
    // lookups with a malformed value simply find nothing
    assert.equal((await db.query(`SELECT * FROM blobs WHERE digest = $1`, ['nope'])).rowCount, 0)
  })

  test(`hash partitions exist (${TEST_HASH_PARTITIONS} in tests): blobs by digest, the others by namespace`, async () => {
    const db = await freshDb()
    await migrateUp(db)
    const r = await db.query<{relname: string; strategy: string; key: string; parts: number}>(`
      SELECT c.relname, p.partstrat AS strategy, pg_get_partkeydef(c.oid) AS key,
             (SELECT count(*)::int FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid WHERE i.inhparent = c.oid AND k.relkind = 'r') AS parts
        FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid ORDER BY 1`)
    assert.deepEqual(
      r.rows.map((row) => row.relname),
      PARTITIONED,
    )
    for (const row of r.rows) {
      assert.equal(row.strategy, 'h', row.relname)
      assert.equal(row.parts, TEST_HASH_PARTITIONS, row.relname)
      assert.equal(row.key, row.relname === 'blobs' ? 'HASH (digest)' : 'HASH (top_level_namespace_id)')
    }
    // rows of one namespace land in one partition, across tables; blobs spread by digest
    await db.query(`INSERT INTO blobs (digest, size) SELECT d, 1 FROM unnest($1::text[]) d`, [
      Array.from({length: 64}, randomDigest),
    ])
    const spread = await db.query(`SELECT count(DISTINCT tableoid)::int AS n FROM blobs`)
    assert.equal(spread.rows[0].n, TEST_HASH_PARTITIONS)
  })

  test('the registry model: cascades, reference protection, media types', async () => {
    const db = await freshDb()
    await migrateUp(db)
    const seeded = (await db.query<{media_type: string}>(`SELECT media_type FROM media_types`)).rows.map(
      (r) => r.media_type,
    )
    for (const mt of [
      'application/vnd.docker.distribution.manifest.v2+json',
      'application/vnd.docker.distribution.manifest.list.v2+json',
      'application/vnd.docker.container.image.v1+json',
      'application/vnd.docker.image.rootfs.diff.tar.gzip',
      'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
      'application/vnd.oci.image.manifest.v1+json',
      'application/vnd.oci.image.index.v1+json',
      'application/vnd.oci.image.config.v1+json',
      'application/vnd.oci.image.layer.v1.tar',
      'application/vnd.oci.image.layer.v1.tar+gzip',
      'application/vnd.oci.image.layer.v1.tar+zstd',
      'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
    ])
      assert.ok(seeded.includes(mt), mt)
    const unknown = await db.query(
      `INSERT INTO media_types (media_type) VALUES ('application/vnd.example.thing+json') RETURNING id`,
    )
    assert.ok(unknown.rows[0].id > 0)

    const [config, layer, child, index] = [randomDigest(), randomDigest(), randomDigest(), randomDigest()]
    await db.transaction(async (c) => {
      const mt = async (name: string): Promise<number> =>
        (await c.query(`SELECT id FROM media_types WHERE media_type = $1`, [name])).rows[0].id
      const ns = (await c.query(`INSERT INTO top_level_namespaces (name) VALUES ('library') RETURNING id`)).rows[0].id
      const repo = (
        await c.query(
          `INSERT INTO repositories (top_level_namespace_id, path) VALUES ($1, 'library/alpine') RETURNING id`,
          [ns],
        )
      ).rows[0].id
      await c.query(`INSERT INTO blobs (digest, size) VALUES ($1, 10), ($2, 20)`, [config, layer])
      await c.query(
        `INSERT INTO repository_blobs (top_level_namespace_id, repository_id, blob_digest) VALUES ($1, $2, $3), ($1, $2, $4)`,
        [ns, repo, config, layer],
      )
      const m = (
        await c.query(
          `INSERT INTO manifests (top_level_namespace_id, repository_id, digest, media_type_id, schema_version, payload, configuration_blob_digest, configuration_media_type_id)
         VALUES ($1, $2, $3, $4, 2, '\\x7b7d', $5, $6) RETURNING id`,
          [
            ns,
            repo,
            child,
            await mt('application/vnd.oci.image.manifest.v1+json'),
            config,
            await mt('application/vnd.oci.image.config.v1+json'),
          ],
        )
      ).rows[0].id
      await c.query(
        `INSERT INTO layers (top_level_namespace_id, repository_id, manifest_id, position, digest, size, media_type_id) VALUES ($1, $2, $3, 0, $4, 20, $5), ($1, $2, $3, 1, $4, 20, $5)`,
        [ns, repo, m, layer, await mt('application/vnd.oci.image.layer.v1.tar+gzip')],
      )
      const idx = (
        await c.query(
          `INSERT INTO manifests (top_level_namespace_id, repository_id, digest, media_type_id, schema_version, payload) VALUES ($1, $2, $3, $4, 2, '\\x7b7d') RETURNING id`,
          [ns, repo, index, await mt('application/vnd.oci.image.index.v1+json')],
        )
      ).rows[0].id
      await c.query(
        `INSERT INTO manifest_references (top_level_namespace_id, repository_id, parent_id, child_id) VALUES ($1, $2, $3, $4)`,
        [ns, repo, idx, m],
      )
      await c.query(
        `INSERT INTO tags (top_level_namespace_id, repository_id, manifest_id, name) VALUES ($1, $2, $3, 'latest')`,
        [ns, repo, idx],
      )
    })
    // a referenced blob cannot be deleted; a child of an index cannot be deleted
    await assert.rejects(db.query(`DELETE FROM blobs WHERE digest = $1`, [layer]), {code: '23503'})
    await assert.rejects(db.query(`DELETE FROM blobs WHERE digest = $1`, [config]), {code: '23503'})
    await assert.rejects(db.query(`DELETE FROM manifests WHERE digest = $1`, [child]), {code: '23503'})
    await assert.rejects(
      db.query(
        `INSERT INTO tags (top_level_namespace_id, repository_id, manifest_id, name) SELECT top_level_namespace_id, repository_id, id, '-bad' FROM manifests LIMIT 1`,
      ),
      {code: '23514'},
    )
    await assert.rejects(
      db.query(
        `INSERT INTO repositories (top_level_namespace_id, path) SELECT id, 'Library/UPPER' FROM top_level_namespaces`,
      ),
      {code: '23514'},
    )
    // deleting the repository removes everything it owns; the blobs stay (global) and become deletable
    await db.query(`DELETE FROM repositories WHERE path = 'library/alpine'`)
    for (const table of ['repository_blobs', 'manifests', 'layers', 'manifest_references', 'tags']) {
      assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n, 0, table)
    }
    assert.equal((await db.query(`DELETE FROM blobs`)).rowCount, 2)
  })

  test('regops_jobs and regops_journal', async () => {
    const db = await freshDb()
    await migrateUp(db)
    const job = (
      await db.query(
        `INSERT INTO regops_jobs (kind, params, shard_index, shard_count, status) VALUES ('sweep-blobs', '{"minAge":"24h"}', 3, 16, 'running') RETURNING id`,
      )
    ).rows[0].id
    const digest = randomDigest()
    const intent = (
      await db.query(
        `INSERT INTO regops_journal (job_id, action, phase, region, key, digest, size) VALUES ($1, 'delete', 'intent', 'eu', 'blobs/x', $2, 5) RETURNING id`,
        [job, digest],
      )
    ).rows[0].id
    await db.query(
      `INSERT INTO regops_journal (job_id, intent_id, action, phase, region, key, digest, size) VALUES ($1, $2, 'delete', 'done', 'eu', 'blobs/x', $3, 5)`,
      [job, intent, digest],
    )
    await assert.rejects(db.query(`INSERT INTO regops_jobs (kind, status) VALUES ('x', 'weird')`), {code: '23514'})
    await assert.rejects(db.query(`INSERT INTO regops_jobs (kind, shard_index, shard_count) VALUES ('x', 4, 4)`), {
      code: '23514',
    })
    await assert.rejects(db.query(`INSERT INTO regops_journal (action, phase) VALUES ('delete', 'maybe')`), {
      code: '23514',
    })
    await assert.rejects(db.query(`DELETE FROM regops_jobs WHERE id = $1`, [job]), {code: '23503'})
  })
})

describe('db', () => {
  test('redactUrl hides passwords', () => {
    assert.equal(redactUrl('postgres://regops:s3cr%40t@db:5432/registry'), 'postgres://regops:***@db:5432/registry')
    assert.equal(
      redactUrl('postgres://db/registry?user=a&password=hunter2'),
      'postgres://db/registry?user=a&password=***',
    )
    assert.equal(redactUrl('postgres://regops@db/registry'), 'postgres://regops@db/registry')
    assert.equal(redactUrl('postgres://u:pa ss@bad host/x'), 'postgres://u:***@bad host/x')
  })

  test('sessions: application_name regops, no statement timeout; transaction rolls back', async () => {
    const db = await freshDb()
    const r = await db.query(
      `SELECT current_setting('application_name') AS app, current_setting('statement_timeout') AS st`,
    )
    assert.deepEqual(r.rows[0], {app: 'regops', st: '0'})
    await db.query(`CREATE TABLE t (id int)`)
    await assert.rejects(
      db.transaction(async (c) => {
        await c.query(`INSERT INTO t VALUES (1)`)
        throw new Error('boom')
      }),
      /boom/,
    )
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM t`)).rows[0].n, 0)
    assert.equal(
      await db.transaction(async (c) => (await c.query(`INSERT INTO t VALUES (2)`)).rowCount, {
        isolation: 'serializable',
      }),
      1,
    )
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM t`)).rows[0].n, 1)
  })

  test('connection errors are clear and never contain the password', async () => {
    const server = await sharedPostgres()
    const admin = new URL(server.adminUrl)
    const secret = 'Zq9-very-secret'
    const host = `${admin.hostname}:${admin.port || 5432}`
    const user = admin.username || 'postgres'
    const cases: Array<[string, boolean]> = [
      // wrong password against the real server (a DATABASE_URL server with trust auth lets it in)
      [`postgres://${user}:${secret}@${host}/postgres`, true],
      // nothing listening (port 1)
      [`postgres://${user}:${secret}@127.0.0.1:1/postgres`, false],
      // no such database
      [`postgres://${user}:${admin.password || secret}@${host}/no_such_db_${Date.now()}`, false],
    ]
    for (const [url, mayConnect] of cases) {
      const db = openDatabase(url, {connectTimeoutMs: 3000})
      try {
        if (
          mayConnect &&
          (await db.query('SELECT 1').then(
            () => true,
            () => false,
          ))
        )
          continue
        await rejectsWith(db.query('SELECT 1'), (error) => {
          assert.ok(error instanceof DatabaseConnectionError)
          assert.equal(error.exitCode, 2)
          assert.match(
            error.message,
            new RegExp(`cannot connect to the metadata database postgres://${user}:\\*\\*\\*@`),
          )
          const everything = JSON.stringify({
            m: error.message,
            h: error.hint,
            d: error.details,
            c: String((error.cause as Error)?.message),
            s: error.stack,
          })
          assert.ok(!everything.includes(secret), everything)
          if (admin.password) assert.ok(!everything.includes(admin.password), 'admin password leaked')
        })
      } finally {
        await db.close()
      }
    }
    assert.throws(
      () => openDatabase(`mysql://u:${secret}@h/db`),
      (error: RegopsError) => error.exitCode === 2 && !error.message.includes(secret),
    )
  })
})
