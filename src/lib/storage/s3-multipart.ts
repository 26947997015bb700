import type {Readable} from 'node:stream'
import type {S3Client} from '@aws-sdk/client-s3'
import {InvalidInputError} from '../errors.js'

/** S3 takes at most 5 GiB in one PutObject or CopyObject: a larger object goes in parts. */
export const MAX_SINGLE_REQUEST_BYTES = 5 * 1024 ** 3
/** Parts of a server-side copy (UploadPartCopy): no bytes pass through regops, so they can be large. */
export const COPY_PART_SIZE = 512 * 1024 ** 2
/** Parts of a streamed write: one is held in memory at a time, and retried on its own. */
export const WRITE_PART_SIZE = 64 * 1024 ** 2
/** S3 takes at most 10,000 parts per upload: a larger object gets larger parts. */
const MAX_PARTS = 10_000

/** One object's multipart upload, as the S3 driver sends it. */
export interface MultipartTarget {
  client: S3Client
  commands: typeof import('@aws-sdk/client-s3')
  bucket: string
  /** the object's key in the bucket */
  fullKey: string
  /** the object's key relative to the region's root, for errors */
  key: string
  /** one request through the driver's limiter (retried unless `retry` is false), its errors mapped */
  send: <T>(op: string, opts: {retry?: boolean}, request: () => Promise<T>) => Promise<T>
}

interface Part {
  ETag: string
  PartNumber: number
}

/**
 * Creates a multipart upload, lets `sendParts` send its parts, and completes it. Any failure aborts the
 * upload: its parts would otherwise stay stored (and billed), invisible to a listing of objects.
 */
async function multipartUpload(
  target: MultipartTarget,
  op: string,
  sendParts: (uploadId: string | undefined) => Promise<Part[]>,
): Promise<void> {
  const {client, commands} = target
  const object = {Bucket: target.bucket, Key: target.fullKey}
  const upload = await target.send(op, {}, () => client.send(new commands.CreateMultipartUploadCommand(object)))
  try {
    const parts = await sendParts(upload.UploadId)
    await target.send(op, {}, () =>
      client.send(
        new commands.CompleteMultipartUploadCommand({
          ...object,
          UploadId: upload.UploadId,
          MultipartUpload: {Parts: parts},
        }),
      ),
    )
  } catch (error) {
    await client.send(new commands.AbortMultipartUploadCommand({...object, UploadId: upload.UploadId})).catch(() => {})
    throw error
  }
}

/** A server-side copy of `size` bytes from `copySource` (bucket/key, URI-encoded), range by range. */
export function copyInParts(
  target: MultipartTarget,
  copySource: string,
  size: number,
  partSize: number,
): Promise<void> {
  return multipartUpload(target, 'copy', async (UploadId) => {
    const parts: Part[] = []
    for (let start = 0, PartNumber = 1; start < size; start += partSize, PartNumber++) {
      const end = Math.min(size, start + partSize) - 1
      const response = await target.send('copy', {}, () =>
        target.client.send(
          new target.commands.UploadPartCopyCommand({
            Bucket: target.bucket,
            Key: target.fullKey,
            UploadId,
            PartNumber,
            CopySource: copySource,
            CopySourceRange: `bytes=${start}-${end}`,
          }),
        ),
      )
      parts.push({ETag: response.CopyPartResult?.ETag ?? '', PartNumber})
    }
    return parts
  })
}

/**
 * A write too large for one PutObject (a multi-gigabyte layer copied between regions): the stream is cut
 * into parts, each uploaded (and retried) on its own. A stream that ends short of `length`, or runs past
 * it, aborts the upload: the object is never created from partial content.
 */
export function writeInParts(target: MultipartTarget, body: Readable, length: number, partSize: number): Promise<void> {
  const size = Math.max(partSize, Math.ceil(length / MAX_PARTS))
  return multipartUpload(target, 'write', async (UploadId) => {
    try {
      const parts: Part[] = []
      let written = 0
      for await (const part of partsOf(body, size)) {
        written += part.length
        if (written > length)
          throw new InvalidInputError(`the stream is longer than the ${length} bytes announced`, target.key)
        const PartNumber = parts.length + 1
        const response = await target.send('write', {retry: true}, () =>
          target.client.send(
            new target.commands.UploadPartCommand({
              Bucket: target.bucket,
              Key: target.fullKey,
              UploadId,
              PartNumber,
              Body: part,
              ContentLength: part.length,
            }),
          ),
        )
        parts.push({ETag: response.ETag ?? '', PartNumber})
      }
      if (written !== length)
        throw new InvalidInputError(`the stream ended after ${written} of the ${length} bytes announced`, target.key)
      return parts
    } catch (error) {
      body.destroy()
      throw error
    }
  })
}

/** The stream's bytes in buffers of exactly `size` (the last one shorter). */
async function* partsOf(stream: Readable, size: number): AsyncIterable<Buffer> {
  let held: Buffer[] = []
  let heldBytes = 0
  for await (const chunk of stream) {
    let data = chunk as Buffer
    while (heldBytes + data.length >= size) {
      const take = size - heldBytes
      held.push(data.subarray(0, take))
      yield Buffer.concat(held, size)
      data = data.subarray(take)
      held = []
      heldBytes = 0
    }
    if (data.length > 0) {
      held.push(data)
      heldBytes += data.length
    }
  }
  if (heldBytes > 0) yield Buffer.concat(held, heldBytes)
}
