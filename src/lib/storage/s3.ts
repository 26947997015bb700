import {Agent as HttpAgent} from 'node:http'
import {Agent as HttpsAgent} from 'node:https'
import {Readable} from 'node:stream'
import type {S3Client, S3ClientConfig} from '@aws-sdk/client-s3'
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
import {RequestLimiter, classifyStorageError} from './request-limiter.js'
import {resolveS3Endpoint, type S3Endpoint} from './s3-endpoint.js'
import {
  COPY_PART_SIZE,
  MAX_SINGLE_REQUEST_BYTES,
  WRITE_PART_SIZE,
  copyInParts,
  writeInParts,
  type MultipartTarget,
} from './s3-multipart.js'
import {
  tlsConnectOptions,
  untrustedCertificateCode,
  untrustedCertificateHint,
  type TlsConnectOptions,
} from '../config/tls.js'

/**
 * A copy of `text` that does not keep the string it was cut from alive. V8 cuts a long string by
 * reference: each key cut from a LIST answer held the whole answer (about 190 KB per page of 390 keys) for
 * as long as any of its objects lived. The audit's read-ahead of 32k objects at 100k blobs held 15 MiB of
 * answers that way, and V8 sized its heap to that.
 */
function detach(text: string): string {
  return (' ' + text).slice(1)
}

/** A multipart upload begun and neither completed nor aborted; `key` relative to the region's root. */
export interface PendingUpload {
  key: string
  uploadId: string
  initiated: Date
}

/** The drivers whose store keeps upload data outside the object listing (S3 multipart uploads). */
export interface PendingUploadStore {
  listPendingUploads(prefix: string): AsyncIterable<PendingUpload>
  pendingUploadParts(upload: PendingUpload): Promise<{parts: number; bytes: number; lastModified: Date}>
  abortPendingUpload(upload: PendingUpload): Promise<void>
}

/** Buffers up to this size are written in one signed PUT on the read path's connections, not the SDK. */
const SMALL_WRITE_BYTES = 1024 * 1024

/**
 * The distribution layout in an S3 bucket (AWS or compatible: radosgw, MinIO). Every request, a read or
 * small write (undici) or any other write (the SDK, held to one attempt), goes through one request
 * limiter: an adaptive concurrency limit up to `concurrency` (or a fixed one), with retries that back off
 * with jitter on 503 SlowDown, other 5xx and connection resets.
 */
export class S3Driver implements StorageDriver {
  readonly kind = 's3' as const
  readonly location: string
  /** the AWS SDK, loaded on the first write, delete or copy (or credential lookup): reads go through undici */
  private sdkLoading?: Promise<{client: S3Client; commands: typeof import('@aws-sdk/client-s3')}>
  /** the requests of this region, reads and writes alike: see configure via `requests.configure` */
  readonly requests: RequestLimiter
  private readonly base: string
  /** where requests go, for messages (the default AWS endpoint when none is configured) */
  private readonly endpoint: string
  private readonly resolvedEndpoint: S3Endpoint
  private readonly tls: TlsConnectOptions

  constructor(
    private readonly config: S3RegionConfig,
    private readonly clientOverrides: Partial<S3ClientConfig> = {},
  ) {
    this.region = config.name
    this.base = config.prefix ? `${config.prefix}/` : ''
    // One resolution for both paths: the SDK gets the endpoint and addressing the read path uses, and
    // none of its own (environment variables, FIPS or dual-stack flags) that could send a write elsewhere.
    this.resolvedEndpoint = resolveS3Endpoint(config)
    this.endpoint = this.resolvedEndpoint.endpoint
    this.location = `s3://${config.bucket}/${config.prefix}${this.resolvedEndpoint.source === 'aws' ? '' : ` at ${this.resolvedEndpoint.endpoint}`}`
    const maxAttempts = Number(clientOverrides.maxAttempts ?? 8)
    this.requests = new RequestLimiter({max: config.concurrency}, maxAttempts)
    // Both paths (SDK and undici) verify certificates unless the region opts out; the opt-out warns once per client.
    this.tls = tlsConnectOptions(config, this.endpoint, `region '${config.name}'`)
    const staticCredentials =
      config.accessKeyId && config.secretAccessKey
        ? {accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey}
        : undefined
    // Without keys in the config, the SDK's default chain (environment, profile, IRSA) resolves and refreshes them.
    const provider = async () => staticCredentials ?? (await (await this.sdk()).client.config.credentials())
    this.readPath = new S3ReadPath(config, provider, this.tls)
  }

  /**
   * An audit or a sweep's mark only reads. Loading the SDK costs about 20 MiB of RSS and a fifth of a second
   * of start-up (at 10k blobs, more than an audit's own listing), so it is loaded when first needed.
   */
  private sdk(): Promise<{client: S3Client; commands: typeof import('@aws-sdk/client-s3')}> {
    this.sdkLoading ??= (async () => {
      const [commands, {NodeHttpHandler}] = await Promise.all([
        import('@aws-sdk/client-s3'),
        import('@smithy/node-http-handler'),
      ])
      const config = this.config
      // The limiter bounds requests in flight; sockets follow it.
      const agentOptions = {keepAlive: true}
      const client = new commands.S3Client({
        region: config.region,
        endpoint: this.resolvedEndpoint.endpoint,
        forcePathStyle: this.resolvedEndpoint.pathStyle,
        useFipsEndpoint: false,
        useDualstackEndpoint: false,
        credentials:
          config.accessKeyId && config.secretAccessKey
            ? {accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey}
            : undefined,
        requestChecksumCalculation: config.checksums === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
        responseChecksumValidation: config.checksums === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
        retryMode: 'standard',
        requestHandler: new NodeHttpHandler({
          httpAgent: new HttpAgent(agentOptions),
          httpsAgent: new HttpsAgent({...agentOptions, ...this.tls}),
          connectionTimeout: 5_000,
          requestTimeout: 120_000,
        }),
        ...this.clientOverrides,
        // The request limiter retries (and learns from each attempt); the SDK makes one.
        maxAttempts: 1,
      })
      return {client, commands}
    })()
    return this.sdkLoading
  }

  /** The SDK client of the write path, loaded if it is not yet (tests check what it resolved). */
  async sdkClient(): Promise<S3Client> {
    return (await this.sdk()).client
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
    for await (const page of this.listPages(prefix, options)) yield* page
  }

  /**
   * The same listing a LIST answer at a time (up to 1000 objects). The audit merges whole pages: taken
   * one object at a time, each cost an await, about 6 µs of a 2-core host's CPU per object listed.
   */
  async *listPages(prefix: string, options: ListOptions = {}): AsyncIterable<ObjectInfo[]> {
    const order = new KeyOrder(this.region, prefix)
    let token: string | undefined
    do {
      options.signal?.throwIfAborted()
      const page = await this.send('list', prefix, {signal: options.signal}, () =>
        this.readPath.list(this.fullKey(prefix), {
          token,
          startAfter: options.startAfter === undefined ? undefined : this.fullKey(options.startAfter),
          signal: options.signal,
        }),
      )
      const objects: ObjectInfo[] = []
      let unsorted: unknown
      for (const object of page.contents) {
        try {
          order.check(object.key)
        } catch (error) {
          // The keys before it are handed over first, as a listing object by object would have.
          unsorted = error
          break
        }
        objects.push({key: detach(this.relativeKey(object.key)), size: object.size, lastModified: object.lastModified})
      }
      if (objects.length > 0) yield objects
      if (unsorted !== undefined) throw unsorted
      token = page.nextToken
    } while (token)
  }

  async *listDirectories(prefix: string, options: ListOptions = {}): AsyncIterable<string> {
    const order = new KeyOrder(this.region, prefix)
    let token: string | undefined
    do {
      options.signal?.throwIfAborted()
      const page = await this.send('list', prefix, {signal: options.signal}, () =>
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
        return await this.readPath.getWhole(this.fullKey(key), limit)
      } catch (error) {
        if (error instanceof RangeError)
          throw new InvalidInputError(`object is ${error.message} bytes, more than the ${limit} expected`, key, {
            code: 'TOO_LARGE',
          })
        throw error
      }
    })
  }

  /** Writes and copies above this many bytes go in parts (settable so tests need not move 5 GiB). */
  multipartThreshold = MAX_SINGLE_REQUEST_BYTES
  /** Part size of a multipart write (at least S3's 5 MiB minimum; grown for objects past 10,000 parts). */
  writePartSize = WRITE_PART_SIZE
  /** Part size of a multipart server-side copy. */
  copyPartSize = COPY_PART_SIZE

  private async multipartTarget(key: string): Promise<MultipartTarget> {
    const {client, commands} = await this.sdk()
    return {
      client,
      commands,
      bucket: this.config.bucket,
      fullKey: this.fullKey(key),
      key,
      send: (op, opts, request) => this.send(op, key, opts, request),
    }
  }

  async write(key: string, body: Buffer | Readable, size?: number): Promise<void> {
    const length = Buffer.isBuffer(body) ? body.length : size
    if (length === undefined) throw new InvalidInputError('a streamed write needs its size', key)
    if (length > this.multipartThreshold) {
      const stream = Buffer.isBuffer(body) ? Readable.from([body]) : body
      return writeInParts(await this.multipartTarget(key), stream, length, this.writePartSize)
    }
    // A link, a manifest, a probe: one signed PUT without the SDK (loading it costs a dry-run 0.2 s).
    if (Buffer.isBuffer(body) && body.length <= SMALL_WRITE_BYTES)
      return this.send('write', key, {retry: true}, () => this.readPath.put(this.fullKey(key), body))
    const {client, commands} = await this.sdk()
    // A body stream that fails (its source cut mid-way) ends the request at once: piped into the
    // request, it would leave the upload waiting for the announced length until the server gives up
    // (radosgw: about a minute, then 408). The stream's own error is what the caller gets.
    const sourceFailed = new AbortController()
    let sourceError: unknown
    if (!Buffer.isBuffer(body))
      body.once('error', (error) => {
        sourceError = error
        sourceFailed.abort(error)
      })
    try {
      // A stream cannot be sent twice: only a buffer is retried.
      await this.send('write', key, {retry: Buffer.isBuffer(body)}, () =>
        client.send(
          new commands.PutObjectCommand({
            Bucket: this.config.bucket,
            Key: this.fullKey(key),
            Body: body,
            ContentLength: length,
          }),
          {abortSignal: sourceFailed.signal},
        ),
      )
    } catch (error) {
      throw sourceError ?? error
    }
  }

  async deleteMany(keys: string[]): Promise<DeleteResult> {
    const result: DeleteResult = {deleted: [], errors: []}
    if (keys.length === 1) {
      // One key (a probe, an undo) in one DELETE, without loading the SDK.
      try {
        await this.send('delete', keys[0], () => this.readPath.delete(this.fullKey(keys[0])))
        result.deleted.push(keys[0])
      } catch (error) {
        result.errors.push({key: keys[0], message: (error as Error).message})
      }
      return result
    }
    const {client, commands} = await this.sdk()
    const batches: string[][] = []
    for (let i = 0; i < keys.length; i += 1000) batches.push(keys.slice(i, i + 1000))
    await Promise.all(
      batches.map(async (batch) => {
        try {
          const response = await this.send('delete', batch[0], () =>
            client.send(
              new commands.DeleteObjectsCommand({
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
    const {client, commands} = await this.sdk()
    const copySource = `${this.config.bucket}/${this.fullKey(sourceKey)}`.split('/').map(encodeURIComponent).join('/')
    if (info.size > this.multipartThreshold)
      return copyInParts(await this.multipartTarget(targetKey), copySource, info.size, this.copyPartSize)
    await this.send('copy', sourceKey, () =>
      client.send(
        new commands.CopyObjectCommand({
          Bucket: this.config.bucket,
          Key: this.fullKey(targetKey),
          CopySource: copySource,
        }),
      ),
    )
  }

  /**
   * Multipart uploads begun and neither completed nor aborted, under `prefix`, in key order. On S3 a
   * registry upload's data sits in one of these until the upload commits: its parts are invisible to a
   * LIST of objects, and stored (and billed) until aborted.
   */
  async *listPendingUploads(prefix: string): AsyncIterable<PendingUpload> {
    const {client, commands} = await this.sdk()
    let keyMarker: string | undefined
    let uploadIdMarker: string | undefined
    do {
      const page = await this.send('list', prefix, () =>
        client.send(
          new commands.ListMultipartUploadsCommand({
            Bucket: this.config.bucket,
            Prefix: this.fullKey(prefix),
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        ),
      )
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId) continue
        yield {key: this.relativeKey(upload.Key), uploadId: upload.UploadId, initiated: upload.Initiated ?? new Date(0)}
      }
      const more = page.IsTruncated === true
      keyMarker = more ? page.NextKeyMarker : undefined
      uploadIdMarker = more ? page.NextUploadIdMarker : undefined
      // A truncated page without a marker would list the first page forever.
      if (more && !keyMarker)
        throw new StorageError(`ListMultipartUploads of ${prefix} is truncated without a marker`, {
          region: this.region,
          key: prefix,
        })
    } while (keyMarker)
  }

  /** The parts a pending multipart upload holds so far: their bytes, and when the last was written. */
  async pendingUploadParts(upload: PendingUpload): Promise<{parts: number; bytes: number; lastModified: Date}> {
    const {client, commands} = await this.sdk()
    let parts = 0
    let bytes = 0
    let lastModified = upload.initiated
    let marker: string | undefined
    do {
      const page = await this.send('stat', upload.key, () =>
        client.send(
          new commands.ListPartsCommand({
            Bucket: this.config.bucket,
            Key: this.fullKey(upload.key),
            UploadId: upload.uploadId,
            PartNumberMarker: marker,
          }),
        ),
      )
      for (const part of page.Parts ?? []) {
        parts++
        bytes += part.Size ?? 0
        if (part.LastModified && part.LastModified > lastModified) lastModified = part.LastModified
      }
      marker = page.IsTruncated ? page.NextPartNumberMarker : undefined
    } while (marker)
    return {parts, bytes, lastModified}
  }

  /** Aborts a pending multipart upload (its parts are freed); one already gone counts as aborted. */
  async abortPendingUpload(upload: PendingUpload): Promise<void> {
    const {client, commands} = await this.sdk()
    try {
      await this.send('delete', upload.key, () =>
        client.send(
          new commands.AbortMultipartUploadCommand({
            Bucket: this.config.bucket,
            Key: this.fullKey(upload.key),
            UploadId: upload.uploadId,
          }),
        ),
      )
    } catch (error) {
      if (error instanceof NotFoundError || (error as {name?: string}).name === 'NoSuchUpload') return
      throw error
    }
  }

  /**
   * Whether the bucket's lifecycle configuration aborts incomplete multipart uploads: the enabled rules
   * that do (with their days), 'none' when no rule does or the bucket has no lifecycle configuration,
   * 'unknown' when the answer is AccessDenied or NotImplemented (a store without lifecycle support).
   */
  async abortIncompleteUploadsRule(): Promise<
    {state: 'present'; days: number[]} | {state: 'none'} | {state: 'unknown'; reason: string}
  > {
    try {
      const {client, commands} = await this.sdk()
      // Straight through the limiter, not send(): the SDK's error names decide 'none' vs 'unknown' below.
      const answer = await this.requests.run(
        'stat',
        () => client.send(new commands.GetBucketLifecycleConfigurationCommand({Bucket: this.config.bucket})),
        {classify: classifyStorageError},
      )
      const days = (answer.Rules ?? [])
        .filter(
          (rule) => rule.Status === 'Enabled' && rule.AbortIncompleteMultipartUpload?.DaysAfterInitiation !== undefined,
        )
        .map((rule) => rule.AbortIncompleteMultipartUpload!.DaysAfterInitiation!)
      return days.length ? {state: 'present', days} : {state: 'none'}
    } catch (error) {
      const e = error as {name?: string; $metadata?: {httpStatusCode?: number}; message?: string}
      if (e.name === 'NoSuchLifecycleConfiguration') return {state: 'none'}
      return {
        state: 'unknown',
        reason: `${e.name ?? 'error'}${e.$metadata?.httpStatusCode ? ` (HTTP ${e.$metadata.httpStatusCode})` : ''}`,
      }
    }
  }

  async close(): Promise<void> {
    if (this.sdkLoading) (await this.sdkLoading).client.destroy()
    await this.readPath.close()
  }

  /** One request under the request limiter (retried when it may be), with S3 errors turned into regops errors. */
  private async send<T>(
    op: string,
    key: string,
    optsOrFn: {retry?: boolean; signal?: AbortSignal} | (() => Promise<T>),
    maybeFn?: () => Promise<T>,
  ): Promise<T> {
    const opts = typeof optsOrFn === 'function' ? {} : optsOrFn
    const fn = typeof optsOrFn === 'function' ? optsOrFn : maybeFn!
    try {
      return await this.requests.run(op, fn, {...opts, classify: classifyStorageError})
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
