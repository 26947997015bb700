import {randomUUID} from 'node:crypto'
import type {RegionConfig, S3RegionConfig} from '../config/config.js'
import {NotFoundError, RegopsError, errorMessage} from '../errors.js'
import {redact} from '../output/redact.js'
import {openDriver, type StorageDriver} from '../storage/index.js'

/** Scratch objects of the write check: outside blobs/ and repositories/, so no registry or sweep reads them. */
export const DOCTOR_SCRATCH_PREFIX = '_regops/doctor/'

export type ProbeOutcome = 'ok' | 'denied' | 'error' | 'skip'

/** One harmless request and whether the credentials may make it (the S3 action it needs, as docs/iam.md names it). */
export interface PermissionProbe {
  region: string
  probe: 'list' | 'put' | 'get' | 'copy' | 'delete' | 'multipart'
  action: string
  outcome: ProbeOutcome
  detail: string
}

/** The permission sets of docs/iam.md, and the probes each needs. */
export const PERMISSION_SETS = {
  /** audit, inspect, import, doctor, dry-run sweeps */
  read: ['list', 'get'],
  /** sweep --quarantine, sweep restore, repair, replicate, audit --repair: objects are copied, written and moved */
  write: ['list', 'get', 'put', 'copy', 'delete'],
  /** sweep --delete, sweep purge --delete, sweep uploads --delete (they also write the clock probe) */
  delete: ['list', 'get', 'put', 'delete'],
  /** copies of objects above 5 GiB (replicate, audit --repair, quarantine of a huge blob) */
  multipart: ['multipart'],
} as const satisfies Record<string, ReadonlyArray<PermissionProbe['probe']>>

export type PermissionSet = keyof typeof PERMISSION_SETS

export interface WriteCheckResult {
  probes: PermissionProbe[]
  /** per permission set: held only when every probe it needs is ok */
  sets: Record<PermissionSet, boolean>
}

/**
 * Which permission sets the current credentials hold on one region, by probes in a scratch prefix
 * (`_regops/doctor/<random>`): list; put, get, copy and delete of a tiny object; a multipart upload
 * created and aborted at once. A probe that the store refuses (403, EACCES) is `denied`; any other
 * failure is `error`. Whatever it wrote, it deletes.
 */
export async function probeWritePermissions(region: RegionConfig): Promise<WriteCheckResult> {
  const driver = await openDriver(region, {maxAttempts: 2})
  const scratch = `${DOCTOR_SCRATCH_PREFIX}${randomUUID()}/`
  const original = `${scratch}probe`
  const copied = `${scratch}probe-copy`
  const probes: PermissionProbe[] = []
  const run = async (
    probe: PermissionProbe['probe'],
    action: string,
    fn: () => Promise<string | void>,
  ): Promise<ProbeOutcome> => {
    try {
      const detail = await fn()
      probes.push({region: region.name, probe, action, outcome: 'ok', detail: detail || 'allowed'})
      return 'ok'
    } catch (error) {
      const outcome = isDenied(error) ? 'denied' : 'error'
      const detail = error instanceof Error && '$metadata' in error ? describe(error) : errorMessage(error)
      probes.push({region: region.name, probe, action, outcome, detail: redact(detail)})
      return outcome
    }
  }
  const skip = (probe: PermissionProbe['probe'], action: string, detail: string) =>
    probes.push({region: region.name, probe, action, outcome: 'skip', detail})
  try {
    await run('list', 's3:ListBucket', async () => {
      for await (const _ of driver.list(DOCTOR_SCRATCH_PREFIX)) break
    })
    const put = await run('put', 's3:PutObject', () =>
      driver.write(original, Buffer.from('regops doctor write check\n')),
    )
    if (put === 'ok') {
      await run('get', 's3:GetObject', async () => {
        const back = await driver.readSmall(original, 1024)
        if (!back.toString().startsWith('regops doctor'))
          throw new Error(`read back different content from ${original}`)
      })
      await run('copy', 's3:GetObject + s3:PutObject (CopyObject)', () => driver.copy(original, copied))
    } else {
      // Nothing to read back: a GET of the missing key answers 404 when s3:GetObject is allowed, 403 when not.
      await run('get', 's3:GetObject', async () => {
        try {
          await driver.readSmall(original, 1024)
        } catch (error) {
          if (error instanceof NotFoundError) return 'allowed (404 for a key that does not exist)'
          throw error
        }
        throw new Error(`${original} exists although its put was refused`)
      })
      skip('copy', 's3:GetObject + s3:PutObject (CopyObject)', 'nothing written to copy (put was not allowed)')
    }
    // Deleting a key that does not exist is allowed or denied like any other: the probe works without a put.
    await run('delete', 's3:DeleteObject', async () => {
      const result = await driver.deleteMany([original, copied])
      if (result.errors.length > 0) throw new DeleteRefused(result.errors[0].message)
    })
    if (region.kind === 's3') {
      await run('multipart', 's3:PutObject + s3:AbortMultipartUpload', () => probeMultipart(driver, region))
    } else {
      skip('multipart', '-', 'a file:// region has no multipart uploads')
    }
  } finally {
    await cleanUp(driver, [original, copied])
    await driver.close()
  }
  const ok = new Set(probes.filter((p) => p.outcome === 'ok').map((p) => p.probe))
  const sets = Object.fromEntries(
    Object.entries(PERMISSION_SETS).map(([name, needs]) => [name, needs.every((probe) => ok.has(probe))]),
  ) as Record<PermissionSet, boolean>
  return {probes, sets}
}

/** A multipart upload in the scratch prefix, created and aborted at once (no part is sent). */
async function probeMultipart(driver: StorageDriver, region: S3RegionConfig): Promise<string> {
  const {S3Driver} = await import('../storage/s3.js')
  const {CreateMultipartUploadCommand, AbortMultipartUploadCommand} = await import('@aws-sdk/client-s3')
  if (!(driver instanceof S3Driver)) throw new Error('not an S3 driver')
  const key = `${region.prefix ? `${region.prefix}/` : ''}${DOCTOR_SCRATCH_PREFIX}${randomUUID()}-multipart`
  const client = await driver.sdkClient()
  const upload = await client.send(new CreateMultipartUploadCommand({Bucket: region.bucket, Key: key}))
  try {
    await client.send(new AbortMultipartUploadCommand({Bucket: region.bucket, Key: key, UploadId: upload.UploadId}))
  } catch (error) {
    // Created but not aborted: the upload stays until a lifecycle rule or `sweep uploads` takes it; say which.
    throw new AbortRefused(
      `created multipart upload ${upload.UploadId} at ${key} but could not abort it: ${describe(error)}`,
      error,
    )
  }
  return 'created and aborted'
}

class AbortRefused extends Error {
  constructor(
    message: string,
    readonly original: unknown,
  ) {
    super(message)
  }
}

function describe(error: unknown): string {
  const e = error as {name?: string; message?: string; $metadata?: {httpStatusCode?: number}}
  const status = e.$metadata?.httpStatusCode
  return `${status ? `HTTP ${status} ` : ''}${e.name ?? 'Error'}${e.message && e.message !== e.name ? `: ${e.message}` : ''}`
}

class DeleteRefused extends Error {}

/** The store said no (403, AccessDenied, EACCES), as opposed to failing. */
function isDenied(error: unknown): boolean {
  const seen = error instanceof AbortRefused ? error.original : error
  if (seen instanceof RegopsError && (seen.code === 'FORBIDDEN' || seen.details?.status === 403)) return true
  const e = seen as {name?: string; code?: string; $metadata?: {httpStatusCode?: number}; cause?: {code?: string}}
  if (e.$metadata?.httpStatusCode === 403 || e.name === 'AccessDenied') return true
  if (/\bAccessDenied\b|\bHTTP 403\b|\bEACCES\b|\bEPERM\b/.test(errorMessage(seen))) return true
  const code = e.code ?? e.cause?.code
  return code === 'EACCES' || code === 'EPERM'
}

/** Whatever a probe left behind; a failure here is not a finding (the delete probe already said so). */
async function cleanUp(driver: StorageDriver, keys: string[]): Promise<void> {
  await driver.deleteMany(keys).catch(() => undefined)
}
