import type {Db} from '../metadata/db.js'
import {errorMessage, UsageError} from '../errors.js'
import type {Logger} from '../output/logger.js'
import type {StorageDriver} from '../storage/driver.js'
import {uploadsPrefix} from '../storage/layout.js'
import {listRepositories, problemOf, type Problem} from '../storage/repositories.js'
import {journalIntents, journalOutcome} from './journal.js'
import {deleteObjects} from './vacuum.js'

export interface AbandonedUpload {
  repository: string
  uuid: string
  prefix: string
  startedAt: string
  /** newest lastModified of any object of the upload: a live upload keeps writing */
  lastActivity: string
  bytes: number
  objects: number
}

export interface SweepUploadsResult {
  kind: 'sweep-uploads'
  region: string
  mode: 'dry-run' | 'delete'
  cutoff: string
  repositories: number
  uploads: number
  abandoned: {count: number; bytes: number}
  deleted: number
  failed: number
  items: AbandonedUpload[]
  problems: Problem[]
  durationMs: number
}

/**
 * Abandoned `_uploads/<uuid>` directories: started before the cutoff and with no object written since.
 * distribution's own upload purging keys on `startedat` alone; the last-activity check also spares a
 * slow, still-running upload.
 */
export async function sweepUploads(opts: {
  driver: StorageDriver
  db?: Db
  olderThanMs: number
  delete: boolean
  logger: Logger
  now?: Date
}): Promise<SweepUploadsResult> {
  const started = performance.now()
  if (opts.delete && !opts.db)
    throw new UsageError('--delete needs a database for the journal (database.url or DATABASE_URL)')
  const cutoff = new Date((opts.now ?? new Date()).getTime() - opts.olderThanMs)
  const result: SweepUploadsResult = {
    kind: 'sweep-uploads',
    region: opts.driver.region,
    mode: opts.delete ? 'delete' : 'dry-run',
    cutoff: cutoff.toISOString(),
    repositories: 0,
    uploads: 0,
    abandoned: {count: 0, bytes: 0},
    deleted: 0,
    failed: 0,
    items: [],
    problems: [],
    durationMs: 0,
  }
  const onProblem = (p: Problem) => {
    result.problems.push(p)
    opts.logger.warn(p.message, {key: p.key})
  }
  for await (const repository of listRepositories(opts.driver, onProblem)) {
    result.repositories++
    for await (const dir of opts.driver.listDirectories(uploadsPrefix(repository))) {
      result.uploads++
      const uuid = dir.slice(uploadsPrefix(repository).length, -1)
      const keys: string[] = []
      let bytes = 0
      let lastActivity = new Date(0)
      let startedAt: Date | undefined
      for await (const object of opts.driver.list(dir)) {
        keys.push(object.key)
        bytes += object.size
        if (object.lastModified > lastActivity) lastActivity = object.lastModified
        if (object.key.endsWith('/startedat')) {
          try {
            const text = (await opts.driver.readSmall(object.key, 256)).toString('utf8').trim()
            const parsed = new Date(text)
            if (!Number.isNaN(parsed.getTime())) startedAt = parsed
            else
              onProblem({
                kind: 'invalid-key',
                key: object.key,
                repository,
                message: `startedat is not a time ('${text.slice(0, 40)}'); using the newest write instead`,
              })
          } catch (error) {
            onProblem(problemOf(error, 'storage-error', object.key, {repository}))
          }
        }
      }
      const start = startedAt ?? lastActivity
      if (keys.length === 0 || start >= cutoff || lastActivity >= cutoff) continue
      const item: AbandonedUpload = {
        repository,
        uuid,
        prefix: dir,
        startedAt: start.toISOString(),
        lastActivity: lastActivity.toISOString(),
        bytes,
        objects: keys.length,
      }
      result.abandoned.count++
      result.abandoned.bytes += bytes
      result.items.push(item)
      if (!opts.delete || !opts.db) continue
      const [intent] = await journalIntents(opts.db, null, [
        {
          action: 'delete-upload',
          region: opts.driver.region,
          key: dir,
          size: bytes,
          detail: {repository, uuid, objects: keys.length},
        },
      ])
      try {
        await deleteObjects(opts.driver, keys)
        await journalOutcome(opts.db, null, intent, 'done', {})
        result.deleted++
      } catch (error) {
        result.failed++
        await journalOutcome(opts.db, null, intent, 'failed', {error: errorMessage(error)})
      }
    }
  }
  result.durationMs = Math.round(performance.now() - started)
  return result
}
