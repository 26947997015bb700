import type {Db} from '../metadata/db.js'
import {errorMessage} from '../errors.js'
import {copyBetween, type StorageDriver} from '../storage/driver.js'
import {parseKey} from '../storage/layout.js'
import {journalIntents, journalOutcome, unfinishedIntents, type JournalAction} from '../sweep/journal.js'
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

/** What the source region supplies for a copy: a blob that verifies there, or a link's bytes. */
type SourceCopy = {isBlob: true; digest: string; size: number} | {isBlob: false; body: Buffer; size: number}

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
  const source = await readSource(copier, key)
  if ('unavailable' in source) return {outcome: 'unavailable', message: source.unavailable}
  const spec = parseKey(key)
  const [intent] = await journalIntents(copier.db, copier.jobId, [
    {
      action: copier.action,
      region: target.region,
      key,
      digest: 'digest' in spec ? spec.digest : undefined,
      size: source.size,
      detail: {from: copier.source.region, ...detail},
    },
  ])
  return writeJournaled(copier, target, key, source, intent, {})
}

/**
 * Gives each copy of this job that a killed run journaled without an outcome its outcome: `done` when the
 * target holds a verified copy (the write landed before the kill), else the copy is made now under the same
 * entry. Run before the job goes on, so the rest of the run finds those objects in place and does not copy
 * and journal them a second time: each copy stays one journal entry with one outcome.
 */
export async function finishInterruptedCopies(
  copier: Omit<VerifiedCopier, 'source'>,
  drivers: StorageDriver[],
): Promise<CopyResult[]> {
  if (copier.jobId === null) return []
  const results: CopyResult[] = []
  for (const intent of await unfinishedIntents(copier.db, copier.jobId)) {
    if (intent.action !== copier.action) continue
    const target = drivers.find((d) => d.region === intent.region)
    const source = drivers.find((d) => d.region === intent.detail.from)
    const resumed = {recovered: 'the run that journaled this copy was interrupted before its outcome'}
    if (!target || !source) {
      const message = `region ${target ? String(intent.detail.from) : intent.region} is not part of this run`
      await journalOutcome(copier.db, copier.jobId, intent.id, 'failed', {...resumed, error: message})
      results.push({outcome: 'failed', message})
      continue
    }
    const withSource = {...copier, source}
    const supplied = await readSource(withSource, intent.key)
    if ('unavailable' in supplied) {
      await journalOutcome(copier.db, copier.jobId, intent.id, 'failed', {...resumed, error: supplied.unavailable})
      results.push({outcome: 'failed', message: supplied.unavailable})
    } else if (await targetHolds(withSource, target, intent.key, supplied)) {
      await journalOutcome(copier.db, copier.jobId, intent.id, 'done', resumed)
      results.push({outcome: 'copied', size: supplied.size})
    } else {
      results.push(await writeJournaled(withSource, target, intent.key, supplied, intent.id, resumed))
    }
  }
  return results
}

async function readSource(copier: VerifiedCopier, key: string): Promise<SourceCopy | {unavailable: string}> {
  const spec = parseKey(key)
  if (spec.kind === 'blob-data') {
    const info = await copier.source.stat(key)
    if (!info) return {unavailable: `absent in ${copier.source.region}`}
    if (!(await blobVerifies(copier.source, spec.digest, copier.signal, info.size)))
      return {unavailable: `the copy in ${copier.source.region} does not hash to its digest`}
    return {isBlob: true, digest: spec.digest, size: info.size}
  }
  const body = await readLink(copier.source, key)
  if (!body) return {unavailable: `absent in ${copier.source.region}`}
  return {isBlob: false, body, size: body.length}
}

/** True when the target already holds what the source supplies (a blob that verifies, the same link bytes). */
async function targetHolds(
  copier: VerifiedCopier,
  target: StorageDriver,
  key: string,
  source: SourceCopy,
): Promise<boolean> {
  if (source.isBlob) {
    const held = await target.stat(key)
    return held !== undefined && blobVerifies(target, source.digest, copier.signal, held.size)
  }
  return (await readLink(target, key))?.equals(source.body) ?? false
}

async function readLink(driver: StorageDriver, key: string): Promise<Buffer | undefined> {
  return driver.readSmall(key, LINK_LIMIT).catch((error: unknown) => {
    if ((error as {code?: string}).code === 'NOT_FOUND') return undefined
    throw error
  })
}

/** Writes the copy, verifies it where it landed, and journals the outcome of `intent`. */
async function writeJournaled(
  copier: VerifiedCopier,
  target: StorageDriver,
  key: string,
  source: SourceCopy,
  intent: string,
  detail: Record<string, unknown>,
): Promise<CopyResult> {
  try {
    if (source.isBlob) {
      await copyBetween(copier.source, target, key)
      if (!(await blobVerifies(target, source.digest, copier.signal, source.size)))
        throw new Error(`the copy in ${target.region} does not hash to ${source.digest}`)
    } else {
      await target.write(key, source.body, source.body.length)
      const back = await target.readSmall(key, LINK_LIMIT)
      if (!back.equals(source.body)) throw new Error(`the copy in ${target.region} reads back different bytes`)
    }
    await journalOutcome(copier.db, copier.jobId, intent, 'done', detail)
    return {outcome: 'copied', size: source.size}
  } catch (error) {
    if (copier.signal?.aborted) throw error
    await journalOutcome(copier.db, copier.jobId, intent, 'failed', {...detail, error: errorMessage(error)})
    return {outcome: 'failed', size: source.size, message: errorMessage(error)}
  }
}
