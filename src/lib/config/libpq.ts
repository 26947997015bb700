import {userInfo} from 'node:os'

/**
 * A postgres:// URL from the libpq variables, read as psql reads them (PGHOST, PGHOSTADDR, PGPORT,
 * PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE), for a pod that gets its database the way every other
 * PostgreSQL client there does. Only when one of them names a server, user or database: PGPASSWORD or
 * PGSSLMODE alone configure no database (a dry-run stays without one). Defaults as libpq's: the Unix
 * socket in /var/run/postgresql, port 5432, the OS user, a database named like the user.
 */
export function libpqUrl(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const {PGHOST, PGHOSTADDR, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE} = env
  if (!PGHOST && !PGHOSTADDR && !PGPORT && !PGUSER && !PGDATABASE) return undefined
  const user = PGUSER || userInfo().username
  const host = PGHOSTADDR || PGHOST || '/var/run/postgresql'
  const socket = host.startsWith('/')
  const url = new URL('postgres://localhost')
  if (!socket) url.hostname = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host
  url.port = PGPORT || '5432'
  url.username = encodeURIComponent(user)
  if (PGPASSWORD) url.password = encodeURIComponent(PGPASSWORD)
  url.pathname = `/${encodeURIComponent(PGDATABASE || user)}`
  // A socket directory is not a host name: node-postgres takes it from the host parameter.
  if (socket) url.searchParams.set('host', host)
  if (PGSSLMODE) url.searchParams.set('sslmode', PGSSLMODE)
  return url.toString()
}
