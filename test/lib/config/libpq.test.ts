// The libpq variables configure the database as they do for psql, and connect for real: a server from
// PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE reaches the test PostgreSQL; DATABASE_URL and the file win.
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {libpqUrl} from '../../../src/lib/config/libpq.js'
import {loadConfigFromText} from '../../../src/lib/config/config.js'
import {openDatabase} from '../../../src/lib/metadata/db.js'
import {sharedPostgres} from '../../helpers/postgres.js'

test('libpq variables: a URL as psql would connect', () => {
  assert.equal(libpqUrl({}), undefined)
  assert.equal(libpqUrl({PGPASSWORD: 'x', PGSSLMODE: 'require'}), undefined, 'a password alone names no server')
  assert.equal(
    libpqUrl({
      PGHOST: 'db.internal',
      PGPORT: '6432',
      PGUSER: 'regops',
      PGPASSWORD: 'p@ss:w/rd',
      PGDATABASE: 'registry',
    }),
    'postgres://regops:p%40ss%3Aw%2Frd@db.internal:6432/registry',
  )
  assert.equal(
    libpqUrl({PGHOST: 'db', PGUSER: 'u', PGSSLMODE: 'verify-full'}),
    'postgres://u@db:5432/u?sslmode=verify-full',
    'the database defaults to the user name',
  )
  assert.equal(
    libpqUrl({PGHOST: '/run/postgresql', PGUSER: 'u', PGDATABASE: 'd'}),
    'postgres://u@localhost:5432/d?host=%2Frun%2Fpostgresql',
    'a socket directory goes in the host parameter',
  )
  assert.equal(libpqUrl({PGHOSTADDR: '::1', PGHOST: 'ignored', PGUSER: 'u'}), 'postgres://u@[::1]:5432/u')
})

test('libpq variables: used when nothing else names a database, and they connect', async () => {
  const url = new URL(await (await sharedPostgres()).createDatabase())
  const env = {
    PGHOST: url.hostname,
    PGPORT: url.port,
    PGUSER: decodeURIComponent(url.username),
    PGPASSWORD: decodeURIComponent(url.password),
    PGDATABASE: url.pathname.slice(1),
  }
  const config = loadConfigFromText('regions: {}\n', 'regops.yaml', env)
  assert.ok(config.database, 'a database from the PG* variables')
  const db = openDatabase(config.database.url, {max: 1})
  try {
    const row = await db.query<{db: string}>('select current_database() as db')
    assert.equal(row.rows[0].db, env.PGDATABASE)
  } finally {
    await db.close()
  }
  const overridden = loadConfigFromText('regions: {}\n', 'regops.yaml', {...env, DATABASE_URL: 'postgres://other/db'})
  assert.equal(overridden.database?.url, 'postgres://other/db')
  const fromFile = loadConfigFromText('database: {url: "postgres://file/db"}\n', 'regops.yaml', env)
  assert.equal(fromFile.database?.url, 'postgres://file/db')
})
