import type {Db} from '../metadata/db.js'
import {errorMessage} from '../errors.js'
import {copyBetween, type StorageDriver} from '../storage/driver.js'
import {parseKey} from '../storage/layout.js'
import {journalIntents, journalOutcome, type JournalAction} from '../sweep/journal.js'
import {blobVerifies} from './verify.js'

/** Links and tags are a digest of 71 or 135 characters; anything much larger is not one. */
const LINK_LIMIT = 1024

export type CopyOutcome = 'copied' | 'failed' | 'unavailable'

export interface VerifiedCopier {
  db: Db
  jobId: string | null
  action: Extract<JournalAction, 'repair' | 'replicate'>
  source: StorageDriver
  signal?: AbortSignal
}

export interface CopyResult {
  outcome: CopyOutcome
  size?: number
  message?: string
}

/**
 * Copies one object (a blob, or a link or tag file) from the source region to a target, verified and
 * journaled: a blob is copied only from a source copy that hashes to its digest, and the copy is re-hashed
 * where it landed; a link is read back and compared byte for byte. The intent is journaled before the
 * target is touched and the outcome after, so an interrupted copy is visible. `unavailable` means the
 * source cannot supply a good copy (absent, or it does not verify): nothing was written or journaled.
 */
export async function copyVerified(
  copier: VerifiedCopier,
  target: StorageDriver,
  key: string,
  detail: Record<string, unknown>,
): Promise<CopyResult> {
  const spec = parseKey(key)
  const isBlob = spec.kind === 'blob-data'
  const digest = 'digest' in spec ? spec.digest : undefined
  let linkBody: Buffer | undefined
  let size: number | undefined
  if (isBlob) {
    const info = await copier.source.stat(key)
    if (!info) return {outcome: 'unavailable', message: `absent in ${copier.source.region}`}
    if (!(await blobVerifies(copier.source, spec.digest, copier.signal)))
      return {outcome: 'unavailable', message: `the copy in ${copier.source.region} does not hash to its digest`}
    size = info.size
  } else {
    linkBody = await copier.source.readSmall(key, LINK_LIMIT).catch((error: unknown) => {
      if ((error as {code?: string}).code === 'NOT_FOUND') return undefined
      throw error
    })
    if (!linkBody) return {outcome: 'unavailable', message: `absent in ${copier.source.region}`}
    size = linkBody.length
  }
  const [intent] = await journalIntents(copier.db, copier.jobId, [
    {action: copier.action, region: target.region, key, digest, size, detail: {from: copier.source.region, ...detail}},
  ])
  try {
    if (isBlob) {
      await copyBetween(copier.source, target, key)
      if (!(await blobVerifies(target, spec.digest, copier.signal)))
        throw new Error(`the copy in ${target.region} does not hash to ${spec.digest}`)
    } else {
      await target.write(key, linkBody!, linkBody!.length)
      const back = await target.readSmall(key, LINK_LIMIT)
      if (!back.equals(linkBody!)) throw new Error(`the copy in ${target.region} reads back different bytes`)
    }
    await journalOutcome(copier.db, copier.jobId, intent, 'done', {})
    return {outcome: 'copied', size}
  } catch (error) {
    if (copier.signal?.aborted) throw error
    await journalOutcome(copier.db, copier.jobId, intent, 'failed', {error: errorMessage(error)})
    return {outcome: 'failed', size, message: errorMessage(error)}
  }
}
