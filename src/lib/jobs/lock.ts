import type pg from 'pg'
import type {Db} from '../metadata/db.js'
import {RefusedError, errorMessage} from '../errors.js'

/**
 * What an acting job locks for its life, as PostgreSQL advisory locks on one dedicated connection (they
 * go when the session goes, so a killed worker never leaves a lock behind). `shared` names may be held
 * by many jobs at once (a region that shards of one sweep act on side by side); `exclusive` by one.
 */
export interface LockScope {
  /** for people: 'region eu, prefixes 00..0f' */
  what: string
  shared: string[]
  exclusive: string[]
}

export interface HeldLock {
  /** called once if the lock's connection is lost: the locks are gone, so the holder must stop acting */
  onLost(fn: (reason: Error) => void): void
  release(): Promise<void>
}

/** Takes every lock of the scope, or none: refused (exit 4) when another job holds any of them. */
export async function acquireJobLock(db: Db, scope: LockScope): Promise<HeldLock> {
  const client: pg.PoolClient = await db.pool.connect()
  let lost: ((reason: Error) => void) | undefined
  let released = false
  const onError = (error: Error) => {
    if (released) return
    lost?.(
      new Error(`the lock on ${scope.what} was lost with its database connection: ${errorMessage(error)}`, {
        cause: error,
      }),
    )
  }
  client.on('error', onError)
  try {
    // Acquisitions take turns, holding a transaction-scoped lock while they try theirs: two at once would
    // interleave over the same names, each get some and miss others, and both be refused (seen: two
    // sweeps started together, 256 prefixes each, exit 4 and 4). Trying never waits, so a turn is short.
    await client.query('BEGIN')
    await client.query(`SELECT pg_advisory_xact_lock(hashtextextended('regops:lock-acquisition', 0))`)
    const result = await client.query<{got: boolean}>(
      `SELECT pg_try_advisory_lock_shared(hashtextextended(k, 0)) AS got FROM unnest($1::text[]) AS k
       UNION ALL SELECT pg_try_advisory_lock(hashtextextended(k, 0)) FROM unnest($2::text[]) AS k`,
      [scope.shared, scope.exclusive],
    )
    const refused = result.rows.some((row) => !row.got)
    // session locks (taken or not) outlive the transaction; its turn ends with it
    if (refused) await client.query('SELECT pg_advisory_unlock_all()')
    await client.query('COMMIT')
    if (refused) {
      throw new RefusedError(
        `another job is acting on ${scope.what}: only one may act on a region's objects at a time`,
        {
          code: 'LOCKED',
          hint: "see 'regops jobs list' for the running job; wait for it to end, or resume it instead of starting another",
        },
      )
    }
  } catch (error) {
    released = true
    client.off('error', onError)
    if (error instanceof RefusedError) client.release()
    // A failure part way may leave the transaction open or locks taken: the connection goes, and they with it.
    else client.release(error instanceof Error ? error : new Error(String(error)))
    throw error
  }
  return {
    onLost: (fn) => (lost = fn),
    async release() {
      if (released) return
      released = true
      try {
        await client.query('SELECT pg_advisory_unlock_all()')
        client.off('error', onError)
        client.release()
      } catch (error) {
        // A connection that cannot unlock is closed: its session, and so its locks, end with it.
        client.release(error instanceof Error ? error : new Error(String(error)))
      }
    },
  }
}

/** The names an acting job on these blob prefixes of a region locks. */
export function regionLockScope(region: string, prefixes?: string[]): LockScope {
  if (!prefixes) return {what: `region ${region}`, shared: [], exclusive: [`regops:act:${region}`]}
  const what =
    prefixes.length === 256
      ? `region ${region}`
      : `region ${region}, prefixes ${prefixes[0]}..${prefixes[prefixes.length - 1]}`
  return {what, shared: [`regops:act:${region}`], exclusive: prefixes.map((prefix) => `regops:act:${region}:${prefix}`)}
}
