import {Agent as HttpAgent} from 'node:http'
import {Agent as HttpsAgent} from 'node:https'
import type {Readable} from 'node:stream'
import {
  S3Client,
  PutObjectCommand,
  DeleteObjectsCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  UploadPartCopyCommand,
  CompleteMultipartUploadCommand,
  AbortMultipartUploadCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3'
import {NodeHttpHandler} from '@smithy/node-http-handler'
import pLimit, {type LimitFunction} from 'p-limit'
import {InvalidInputError, NotFoundError, StorageError} from '../errors.js'
import type {S3RegionConfig} from '../config/config.js'
import {
  KeyOrder,
  RegionUnavailableError,
  type DeleteResult,
  type ListOptions,
  type ObjectInfo,
  type StorageDriver,
} from './driver.js'
import {S3HttpError, S3ReadPath} from './s3-read.js'
import {tlsConnectOptions, untrustedCertificateCode, untrustedCertificateHint} from '../config/tls.js'

/** S3 refuses a single CopyObject above 5 GiB; larger blobs are copied part by part. */
const MAX_SINGLE_COPY = 5 * 1024 ** 3
const COPY_PART_SIZE = 512 * 1024 ** 2

/**
 * The distribution layout in an S3 bucket (AWS or compatible: radosgw, MinIO). Retries use the SDK's
 * adaptive mode, which backs off on 503 SlowDown and throttles itself, and retries connection resets;
 * `concurrency` caps requests in flight from this process to the bucket.
 */
export class S3Driver implements StorageDriver {
  readonly kind = 's3' as const
  readonly location: string
  readonly client: S3Client
  private readonly limit: LimitFunction
  private readonly base: string
  /** where requests go, for messages (the default AWS endpoint when none is configured) */
  private readonly endpoint: string

  constructor(
    private readonly config: S3RegionConfig,
    clientOverrides: Partial<S3ClientConfig> = {},
  ) {
    this.region = config.name
    this.base = config.prefix ? `${config.prefix}/` : ''
    this.endpoint = config.endpoint ?? `https://s3.${config.region}.amazonaws.com`
    this.location = `s3://${config.bucket}/${config.prefix}${config.endpoint ? ` at ${config.endpoint}` : ''}`
    this.limit = pLimit(config.concurrency)
    const agentOptions = {keepAlive: true, maxSockets: config.concurrency}
    // Both paths (SDK and undici) verify certificates unless the region opts out; the opt-out warns once per client.
    const tls = tlsConnectOptions(config, this.endpoint, `region '${config.name}'`)
    this.client = new S3Client({
      region: config.region,
      endpoint: config.endpoint,
      forcePathStyle: config.forcePathStyle,
      credentials:
        config.accessKeyId && config.secretAccessKey
          ? {accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey}
          : undefined,
      requestChecksumCalculation: config.checksums === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
      responseChecksumValidation: config.checksums === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
      retryMode: 'adaptive',
      maxAttempts: 8,
      requestHandler: new NodeHttpHandler({
        httpAgent: new HttpAgent(agentOptions),
        httpsAgent: new HttpsAgent({...agentOptions, ...tls}),
        connectionTimeout: 5_000,
        requestTimeout: 120_000,
      }),
      ...clientOverrides,
    })
    const staticCredentials =
      config.accessKeyId && config.secretAccessKey
        ? {accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey}
        : undefined
    // Without keys in the config, the SDK's default chain (environment, profile, IRSA) resolves and refreshes them.
    const provider = async () => staticCredentials ?? (await this.client.config.credentials())
    this.readPath = new S3ReadPath(config, provider, Number(clientOverrides.maxAttempts ?? 8), tls)
  }

  private readonly readPath: S3ReadPath

  readonly region: string

  private fullKey(key: string): string {
    return `${this.base}${key}`
  }

  private relativeKey(full: string): string {
    return full.slice(this.base.length)
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<ObjectInfo> {
    const order = new KeyOrder(this.region, prefix)
    let token: string | undefined
    do {
      options.signal?.throwIfAborted()
      const page = await this.send('list', prefix, () =>
        this.readPath.list(this.fullKey(prefix), {
          token,
          startAfter: options.startAfter === undefined ? undefined : this.fullKey(options.startAfter),
          signal: options.signal,
        }),
      )
      for (const object of page.contents) {
        order.check(object.key)
        yield {key: this.relativeKey(object.key), size: object.size, lastModified: object.lastModified}
      }
      token = page.nextToken
    } while (token)
  }

  async *listDirectories(prefix: string, options: ListOptions = {}): AsyncIterable<string> {
    const order = new KeyOrder(this.region, prefix)
    let token: string | undefined
    do {
      options.signal?.throwIfAborted()
      const page = await this.send('list', prefix, () =>
        this.readPath.list(this.fullKey(prefix), {
          token,
          delimiter: '/',
          startAfter: options.startAfter === undefined ? undefined : this.fullKey(options.startAfter),
          signal: options.signal,
        }),
      )
      for (const common of page.prefixes) {
        order.check(common)
        yield this.relativeKey(common)
      }
      token = page.nextToken
    } while (token)
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const head = await this.send('stat', key, () => this.readPath.head(this.fullKey(key)))
    return head ? {key, ...head} : undefined
  }

  async read(key: string, range?: {start: number; end?: number}): Promise<Readable> {
    return (await this.send('read', key, () => this.readPath.get(this.fullKey(key), {range}))).body
  }

  async readSmall(key: string, limit: number): Promise<Buffer> {
    return this.send('read', key, async () => {
      try {
        const {body} = await this.readPath.get(this.fullKey(key), {limit})
        const chunks: Buffer[] = []
        for await (const chunk of body) chunks.push(chunk as Buffer)
        return Buffer.concat(chunks)
      } catch (error) {
        if (error instanceof RangeError)
          throw new InvalidInputError(`object is ${error.message} bytes, more than the ${limit} expected`, key, {
            code: 'TOO_LARGE',
          })
        throw error
      }
    })
  }

  async write(key: string, body: Buffer | Readable, size?: number): Promise<void> {
    const length = Buffer.isBuffer(body) ? body.length : size
    if (length === undefined) throw new InvalidInputError('a streamed write needs its size', key)
    await this.send('write', key, () =>
      this.client.send(
        new PutObjectCommand({Bucket: this.config.bucket, Key: this.fullKey(key), Body: body, ContentLength: length}),
      ),
    )
  }

  async deleteMany(keys: string[]): Promise<DeleteResult> {
    const result: DeleteResult = {deleted: [], errors: []}
    const batches: string[][] = []
    for (let i = 0; i < keys.length; i += 1000) batches.push(keys.slice(i, i + 1000))
    await Promise.all(
      batches.map(async (batch) => {
        try {
          const response = await this.send('delete', batch[0], () =>
            this.client.send(
              new DeleteObjectsCommand({
                Bucket: this.config.bucket,
                Delete: {Objects: batch.map((key) => ({Key: this.fullKey(key)})), Quiet: true},
              }),
            ),
          )
          const failed = new Map(
            (response.Errors ?? []).map((e) => [this.relativeKey(e.Key ?? ''), `${e.Code}: ${e.Message}`]),
          )
          for (const key of batch) {
            const message = failed.get(key)
            if (message === undefined) result.deleted.push(key)
            else result.errors.push({key, message})
          }
        } catch (error) {
          for (const key of batch) result.errors.push({key, message: (error as Error).message})
        }
      }),
    )
    return result
  }

  async copy(sourceKey: string, targetKey: string): Promise<void> {
    const info = await this.stat(sourceKey)
    if (!info) throw new NotFoundError(sourceKey, this.region)
    const copySource = `${this.config.bucket}/${this.fullKey(sourceKey)}`.split('/').map(encodeURIComponent).join('/')
    if (info.size <= MAX_SINGLE_COPY) {
      await this.send('copy', sourceKey, () =>
        this.client.send(
          new CopyObjectCommand({Bucket: this.config.bucket, Key: this.fullKey(targetKey), CopySource: copySource}),
        ),
      )
      return
    }
    const upload = await this.send('copy', targetKey, () =>
      this.client.send(new CreateMultipartUploadCommand({Bucket: this.config.bucket, Key: this.fullKey(targetKey)})),
    )
    try {
      const parts: Array<{ETag: string; PartNumber: number}> = []
      for (let start = 0, part = 1; start < info.size; start += COPY_PART_SIZE, part++) {
        const end = Math.min(info.size, start + COPY_PART_SIZE) - 1
        const response = await this.send('copy', sourceKey, () =>
          this.client.send(
            new UploadPartCopyCommand({
              Bucket: this.config.bucket,
              Key: this.fullKey(targetKey),
              UploadId: upload.UploadId,
              PartNumber: part,
              CopySource: copySource,
              CopySourceRange: `bytes=${start}-${end}`,
            }),
          ),
        )
        parts.push({ETag: response.CopyPartResult?.ETag ?? '', PartNumber: part})
      }
      await this.send('copy', targetKey, () =>
        this.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.config.bucket,
            Key: this.fullKey(targetKey),
            UploadId: upload.UploadId,
            MultipartUpload: {Parts: parts},
          }),
        ),
      )
    } catch (error) {
      await this.client
        .send(
          new AbortMultipartUploadCommand({
            Bucket: this.config.bucket,
            Key: this.fullKey(targetKey),
            UploadId: upload.UploadId,
          }),
        )
        .catch(() => {})
      throw error
    }
  }

  async close(): Promise<void> {
    this.client.destroy()
    await this.readPath.close()
  }

  /** One request under the concurrency cap, with S3 errors turned into regops errors. */
  private async send<T>(op: string, key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await this.limit(fn)
    } catch (error) {
      throw this.mapError(error, key, op)
    }
  }

  private mapError(error: unknown, key: string, op: string): Error {
    if (error instanceof InvalidInputError || error instanceof StorageError) return error
    const e = error as {
      name?: string
      Code?: string
      message?: string
      $metadata?: {httpStatusCode?: number}
      code?: string
      statusCode?: number
    }
    const status = e.$metadata?.httpStatusCode ?? (error instanceof S3HttpError ? error.status : e.statusCode)
    const code = error instanceof S3HttpError ? error.code : e.name
    // A LIST answers 404 only when the bucket is missing: never "no such key" (an empty prefix is an empty listing).
    const noBucket = code === 'NoSuchBucket' || (op === 'list' && status === 404)
    if (!noBucket && (status === 404 || code === 'NoSuchKey' || code === 'NotFound'))
      return new NotFoundError(key, this.region)
    const what = e.name && e.name !== 'Error' ? e.name : (e.code ?? 'error')
    // No HTTP answer at all: refused, reset, timed out, name not resolved (Node's E… codes, undici's UND_ERR_…).
    const network =
      status === undefined &&
      typeof e.code === 'string' &&
      /^(E[A-Z]+|UND_ERR_)/.test(e.code) &&
      e.code !== 'UND_ERR_ABORTED'
    let detail: string
    if (error instanceof S3HttpError) detail = error.message
    else if (status) detail = `HTTP ${status} ${what}`
    else if (e.code && e.message?.includes(e.code)) detail = e.message
    else detail = `${e.code ?? what}: ${e.message ?? String(error)}`
    const where = {region: this.region, key}
    const options = {cause: error, details: {bucket: this.config.bucket, endpoint: this.endpoint, status}}
    const untrusted = untrustedCertificateCode(error)
    if (untrusted) {
      return new RegionUnavailableError(
        `cannot ${op} ${key || '/'} in bucket '${this.config.bucket}': the TLS certificate of ${this.endpoint} is not trusted (${untrusted})`,
        where,
        {...options, code: 'TLS_UNTRUSTED', hint: untrustedCertificateHint(`regions.${this.region}`)},
      )
    }
    // The region as a whole cannot be read: a job stops with this one line instead of a problem per prefix.
    const wholeRegion =
      noBucket ||
      network ||
      status === 429 ||
      (status !== undefined && status >= 500) ||
      (op === 'list' && status === 403) ||
      code === 'InvalidAccessKeyId' ||
      code === 'SignatureDoesNotMatch'
    if (wholeRegion) {
      return new RegionUnavailableError(
        `cannot ${op} ${key || '/'} in bucket '${this.config.bucket}' at ${this.endpoint}: ${network ? `no answer: ${detail}` : detail}`,
        where,
        options,
      )
    }
    return new StorageError(`${op} failed on ${this.location}: ${detail}`, where, {
      ...options,
      code: status === 403 ? 'FORBIDDEN' : 'STORAGE',
    })
  }
}
