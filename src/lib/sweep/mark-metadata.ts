import pLimit from 'p-limit'
import type {Db} from '../metadata/db.js'
import {RefusedError} from '../errors.js'
import type {StorageDriver} from '../storage/driver.js'
import {readRevision, type Problem} from '../storage/repositories.js'

/**
 * The earliest start of the latest complete import of `region`: the import jobs sharing params.group,
 * every shard 0..n-1 of them done, none limited to some repositories (params.complete). A group with a
 * shard missing, failed or running, an import of a few repositories, or an import of another region
 * (whose storage may differ from this one's) does not count: the database would lack references.
 */
export async function lastCompleteImportStart(db: Db, region: string): Promise<Date | undefined> {
  const result = await db.query<{started_at: Date}>(
    `SELECT min(started_at) AS started_at FROM regops_jobs
      WHERE kind = 'import' AND status = 'done' AND params ? 'group' AND coalesce(params->>'complete', 'true') = 'true'
        AND params->>'region' = $1
      GROUP BY params->>'group', shard_count
     HAVING count(DISTINCT shard_index) = shard_count
      ORDER BY max(finished_at) DESC LIMIT 1`,
    [region],
  )
  return result.rows[0]?.started_at ?? undefined
}

/** The freshness guard of the metadata strategy: the start of the last complete import of the region, or a refusal. */
export async function requireCompleteImport(db: Db, region: string): Promise<Date> {
  const since = await lastCompleteImportStart(db, region)
  if (!since) {
    throw new RefusedError(
      `no finished import of region '${region}' in this database: --strategy metadata would miss every reference`,
      {
        hint: `run regops import --region ${region} first (an import of another region does not count: its storage may differ), or pass --metadata-authoritative if the registry itself writes this database`,
      },
    )
  }
  return since
}

export interface UnreadableRereadResult {
  /** revisions the import could not read that read cleanly now (or are gone): their references are marked */
  resolved: number
  /** revisions that still cannot be read: reported as problems, which make the mark incomplete */
  unresolved: number
}

/**
 * Reads again the manifest revisions the import could not read (table unreadable_revisions). One that
 * parses now has its digest and references marked; one whose revision link is gone no longer
 * references anything (as for the storage walk); any other is reported, so that the mark is incomplete
 * and acting is refused with its repository and key named.
 */
export async function rereadUnreadableRevisions(
  db: Db,
  driver: StorageDriver,
  opts: {
    concurrency: number
    signal?: AbortSignal
    mark: (digest: string) => void
    onProblem: (problem: Problem) => void
  },
): Promise<UnreadableRereadResult> {
  const rows = await db.query<{
    repository: string
    key: string
    digest: string | null
    problem: string
    message: string
    revision_modified: Date | null
  }>(
    `SELECT r.path AS repository, u.key, u.digest, u.problem, u.message, u.revision_modified
       FROM unreadable_revisions u JOIN repositories r ON r.top_level_namespace_id = u.top_level_namespace_id AND r.id = u.repository_id
      ORDER BY r.path, u.key`,
  )
  const result: UnreadableRereadResult = {resolved: 0, unresolved: 0}
  const limit = pLimit(opts.concurrency)
  await Promise.all(
    rows.rows.map((row) =>
      limit(async () => {
        opts.signal?.throwIfAborted()
        if (!(await driver.stat(row.key))) {
          result.resolved++
          return
        }
        const problemOfRow = (message: string): Problem => ({
          kind: row.digest === null ? 'invalid-key' : 'bad-manifest',
          key: row.key,
          repository: row.repository,
          ...(row.digest === null ? {} : {digest: row.digest}),
          message,
        })
        if (row.digest === null) {
          result.unresolved++
          opts.onProblem(
            problemOfRow(
              `import could not read this revision (${row.problem}: ${row.message}): what it references is unknown`,
            ),
          )
          return
        }
        const read = await readRevision(
          driver,
          row.repository,
          {digest: row.digest, key: row.key, lastModified: row.revision_modified ?? new Date(0)},
          {verifyLink: false},
        )
        if (read.manifest) {
          result.resolved++
          opts.mark(row.digest)
          for (const digest of read.manifest.references) opts.mark(digest)
          return
        }
        result.unresolved++
        const cause = read.problems[0]
        opts.onProblem(
          cause
            ? {
                ...cause,
                message: `manifest revision of ${row.repository} unreadable at import and now (${cause.message}): what it references is unknown`,
              }
            : problemOfRow('manifest revision unreadable at import and now: what it references is unknown'),
        )
      }),
    ),
  )
  return result
}
