import type {Db} from '../metadata/db.js'
import {errorMessage, UsageError} from '../errors.js'
import type {Logger} from '../output/logger.js'
import type {StorageDriver} from '../storage/driver.js'
import {uploadsPrefix} from '../storage/layout.js'
import {listRepositories, problemOf, type Problem} from '../storage/repositories.js'
import {journalIntents, journalOutcome} from './journal.js'
import {deleteObjects} from './vacuum.js'
import type {PendingUpload, PendingUploadStore} from '../storage/s3.js'

export interface AbandonedUpload {
  repository: string
  uuid: string
  prefix: string
  startedAt: string
  /** newest lastModified of any object or multipart part of the upload: a live upload keeps writing */
  lastActivity: string
  /** everything the upload holds: its objects and its pending multipart uploads' parts */
  bytes: number
  objects: number
  /** S3: the upload's data, still in multipart uploads (ListParts) that only an abort frees */
  multipart: {uploads: number; parts: number; bytes: number}
}

export interface SweepUploadsResult {
  kind: 'sweep-uploads'
  region: string
  mode: 'dry-run' | 'delete'
  cutoff: string
  repositories: number
  uploads: number
  abandoned: {count: number; bytes: number; multipartUploads: number; multipartBytes: number}
  deleted: number
  /** multipart uploads aborted (S3) */
  aborted: number
  failed: number
  items: AbandonedUpload[]
  problems: Problem[]
  durationMs: number
}

interface MultipartDebris extends PendingUpload {
  parts: number
  bytes: number
  lastModified: Date
}

/**
 * Abandoned `_uploads/<uuid>` directories: started before the cutoff and with no object written since.
 * distribution's own upload purging keys on `startedat` alone; the last-activity check also spares a
 * slow, still-running upload. On S3 the upload's data is a pending multipart upload under the same
 * prefix (the registry's S3 driver writes `data` part by part): it is listed, sized with ListParts,
 * counted in the upload's bytes and aborted with it; one whose objects are already gone is an upload too.
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
    abandoned: {count: 0, bytes: 0, multipartUploads: 0, multipartBytes: 0},
    deleted: 0,
    aborted: 0,
    failed: 0,
    items: [],
    problems: [],
    durationMs: 0,
  }
  const onProblem = (p: Problem) => {
    result.problems.push(p)
    opts.logger.warn(p.message, {key: p.key})
  }
  const multipartStore = pendingUploadStoreOf(opts.driver)
  for await (const repository of listRepositories(opts.driver, onProblem)) {
    result.repositories++
    const prefix = uploadsPrefix(repository)
    const multipart = multipartStore
      ? await listMultipartDebris(multipartStore, prefix, repository, onProblem)
      : new Map()
    for await (const dir of opts.driver.listDirectories(prefix)) {
      const uuid = dir.slice(prefix.length, -1)
      await considerUpload(repository, uuid, dir, multipart.get(uuid) ?? [])
      multipart.delete(uuid)
    }
    for (const [uuid, uploads] of multipart) await considerUpload(repository, uuid, `${prefix}${uuid}/`, uploads)
  }

  async function considerUpload(repository: string, uuid: string, dir: string, uploads: MultipartDebris[]) {
    result.uploads++
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
    const pending = {uploads: uploads.length, parts: 0, bytes: 0}
    let initiated: Date | undefined
    for (const upload of uploads) {
      pending.parts += upload.parts
      pending.bytes += upload.bytes
      if (upload.lastModified > lastActivity) lastActivity = upload.lastModified
      if (!initiated || upload.initiated < initiated) initiated = upload.initiated
    }
    // The grace period counts from the earliest start the upload shows: startedat, else its first multipart upload.
    const start = startedAt ?? initiated ?? lastActivity
    if ((keys.length === 0 && uploads.length === 0) || start >= cutoff || lastActivity >= cutoff) return
    const item: AbandonedUpload = {
      repository,
      uuid,
      prefix: dir,
      startedAt: start.toISOString(),
      lastActivity: lastActivity.toISOString(),
      bytes: bytes + pending.bytes,
      objects: keys.length,
      multipart: pending,
    }
    result.abandoned.count++
    result.abandoned.bytes += item.bytes
    result.abandoned.multipartUploads += pending.uploads
    result.abandoned.multipartBytes += pending.bytes
    result.items.push(item)
    if (!opts.delete || !opts.db) return
    const [intent] = await journalIntents(opts.db, null, [
      {
        action: 'delete-upload',
        region: opts.driver.region,
        key: dir,
        size: item.bytes,
        detail: {repository, uuid, objects: keys.length, multipartUploads: uploads.map((u) => u.uploadId)},
      },
    ])
    try {
      if (keys.length > 0) await deleteObjects(opts.driver, keys)
      for (const upload of uploads) {
        await multipartStore!.abortPendingUpload(upload)
        result.aborted++
      }
      await journalOutcome(opts.db, null, intent, 'done', {})
      result.deleted++
    } catch (error) {
      result.failed++
      onProblem(problemOf(error, 'storage-error', dir, {repository}))
      await journalOutcome(opts.db, null, intent, 'failed', {error: errorMessage(error)})
    }
  }

  result.durationMs = Math.round(performance.now() - started)
  return result
}

/**
 * The pending multipart uploads under a repository's `_uploads/`, sized, by upload uuid. A listing that
 * fails is a problem named with its prefix: the uploads are then reported without their multipart bytes,
 * and none is aborted that was not listed.
 */
async function listMultipartDebris(
  store: PendingUploadStore,
  prefix: string,
  repository: string,
  onProblem: (p: Problem) => void,
): Promise<Map<string, MultipartDebris[]>> {
  const byUuid = new Map<string, MultipartDebris[]>()
  try {
    for await (const upload of store.listPendingUploads(prefix)) {
      const uuid = upload.key.slice(prefix.length).split('/')[0]
      if (!uuid) continue
      const parts = await store.pendingUploadParts(upload)
      const list = byUuid.get(uuid) ?? []
      list.push({...upload, ...parts})
      byUuid.set(uuid, list)
    }
  } catch (error) {
    onProblem(problemOf(error, 'storage-error', prefix, {repository}))
  }
  return byUuid
}

/** A driver whose store keeps upload data outside its object listing (S3); checked by shape, so a filesystem sweep never loads the SDK. */
export function pendingUploadStoreOf(driver: StorageDriver): PendingUploadStore | undefined {
  const candidate = driver as Partial<PendingUploadStore>
  return typeof candidate.listPendingUploads === 'function' ? (driver as StorageDriver & PendingUploadStore) : undefined
}
