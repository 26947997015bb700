import {
  accessSync,
  constants,
  createReadStream,
  createWriteStream,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
} from 'node:fs'
import {once} from 'node:events'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import type {Writable} from 'node:stream'
import type {RegionConfig, S3RegionConfig} from '../config/config.js'
import {StorageError, UsageError, errorMessage} from '../errors.js'

/**
 * Where a report (sweep candidates, audit findings, a load test's JSON) goes: `-` is stdout, a plain path or
 * a file:// URL a file, s3://bucket/key an object. `location` names it for the operator.
 */
export type ReportTarget =
  | {kind: 'stdout'; location: '-'}
  | {kind: 'file'; path: string; location: string}
  /** `region` is the configured region of that bucket, whose endpoint and credentials write it */
  | {kind: 's3'; bucket: string; key: string; location: string; region?: S3RegionConfig}

export function parseReportTarget(spec: string, regions: RegionConfig[] = []): ReportTarget {
  if (spec === '-') return {kind: 'stdout', location: '-'}
  if (spec.startsWith('s3://')) {
    let url: URL
    try {
      url = new URL(spec)
    } catch {
      throw new UsageError(`the report target '${spec}' is not a URL (expected s3://bucket/key)`)
    }
    const key = decodeURIComponent(url.pathname.replace(/^\//, ''))
    if (!url.hostname || !key || key.endsWith('/'))
      throw new UsageError(`the report target '${spec}' names no object (expected s3://bucket/key)`)
    const region = regions.find((r): r is S3RegionConfig => r.kind === 's3' && r.bucket === url.hostname)
    return {kind: 's3', bucket: url.hostname, key, location: spec, region}
  }
  if (spec.startsWith('file:')) {
    try {
      const path = fileURLToPath(spec)
      return {kind: 'file', path, location: path}
    } catch (error) {
      throw new UsageError(
        `the report target '${spec}' is not a file URL (file:///absolute/path): ${errorMessage(error)}`,
      )
    }
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec))
    throw new UsageError(`the report target '${spec}' has an unsupported scheme (use -, a path, file:// or s3://)`)
  return {kind: 'file', path: spec, location: spec}
}

/**
 * The default report file `name` in the current directory, or, where that cannot be written (a read-only
 * root filesystem in a pod), in $REGOPS_REPORT_DIR or else the OS temp directory.
 */
export function defaultReportTarget(
  name: string,
  env: NodeJS.ProcessEnv = process.env,
  cwd = process.cwd(),
): ReportTarget {
  try {
    // Fails with EACCES for a directory we may not write, and with EROFS on a read-only filesystem.
    accessSync(cwd, constants.W_OK)
    return {kind: 'file', path: name, location: name}
  } catch {
    const path = join(env.REGOPS_REPORT_DIR || tmpdir(), name)
    return {kind: 'file', path, location: path}
  }
}

/** The target as given (a string is parsed, without region configuration). */
export function asReportTarget(target: string | ReportTarget): ReportTarget {
  return typeof target === 'string' ? parseReportTarget(target) : target
}

/** The file a target names; undefined for stdout and s3://. */
export function reportFilePath(target: string | ReportTarget): string | undefined {
  const parsed = asReportTarget(target)
  return parsed.kind === 'file' ? parsed.path : undefined
}

/**
 * What a report file buffers before its writer waits for the disk. At the stream's default of 16 KiB a
 * sweep's merge waited for a write every 64 candidates (23,264 of them at 100k blobs: about 360 waits, each
 * a turn of the thread pool, in a phase that is otherwise CPU work).
 */
const REPORT_BUFFER_BYTES = 1024 * 1024

/**
 * Writes a report's lines to its target with backpressure. An s3:// report is spooled to a temporary file
 * and put as one object on close: @aws-sdk/lib-storage (a streamed multipart upload) is not a dependency,
 * and a PutObject needs its length before the first byte. Nothing is in the bucket until the report is whole.
 */
export class ReportWriter {
  private constructor(
    readonly target: ReportTarget,
    private readonly stream: Writable,
    private readonly spool?: {dir: string; file: string},
  ) {}

  /** Opens the target; `append` (a resumed job's findings) continues a file, and is refused for an object. */
  static open(target: ReportTarget, options: {append?: boolean} = {}): ReportWriter {
    if (target.kind === 'stdout') return new ReportWriter(target, process.stdout)
    if (target.kind === 's3') {
      if (options.append)
        throw new UsageError(
          `an s3:// report (${target.location}) cannot be appended to by a resumed job: resume with a file report`,
        )
      let dir: string
      try {
        dir = mkdtempSync(join(process.env.REGOPS_REPORT_DIR || tmpdir(), 'regops-report-'))
      } catch (error) {
        throw new UsageError(`cannot create a spool directory for ${target.location}: ${errorMessage(error)}`)
      }
      const file = join(dir, 'report')
      return new ReportWriter(target, createWriteStream(file, {flags: 'w', highWaterMark: REPORT_BUFFER_BYTES}), {
        dir,
        file,
      })
    }
    try {
      mkdirSync(dirname(target.path), {recursive: true})
    } catch (error) {
      throw new UsageError(`cannot create the report directory for ${target.location}: ${errorMessage(error)}`)
    }
    return new ReportWriter(
      target,
      createWriteStream(target.path, {flags: options.append ? 'a' : 'w', highWaterMark: REPORT_BUFFER_BYTES}),
    )
  }

  /** Resolves once the file is open; a file that cannot be written is a usage error, before any work. */
  async opened(): Promise<void> {
    if (this.target.kind === 'stdout') return
    try {
      // once() rejects with the stream's 'error' (EACCES, ENOENT, EROFS) instead of resolving on 'open'.
      await once(this.stream, 'open')
    } catch (error) {
      throw new UsageError(`cannot write the report ${this.target.location}: ${errorMessage(error)}`)
    }
  }

  /** Returns a promise only when the target asks to wait, so that a caller goes on without a turn of the event loop. */
  write(text: string): Promise<unknown> | undefined {
    return this.stream.write(text) ? undefined : once(this.stream, 'drain')
  }

  async close(): Promise<void> {
    if (this.target.kind === 'stdout') {
      if (process.stdout.writableNeedDrain) await once(process.stdout, 'drain')
      return
    }
    this.stream.end()
    await once(this.stream, 'close')
    if (this.target.kind === 's3' && this.spool) {
      try {
        await putObject(this.target, this.spool.file)
      } catch (error) {
        // The report is not lost: it stays in the spool for the operator to copy.
        throw new StorageError(
          `cannot write the report ${this.target.location}: ${errorMessage(error)}; it is kept in ${this.spool.file}`,
        )
      }
      rmSync(this.spool.dir, {recursive: true, force: true})
    }
  }
}

async function putObject(target: Extract<ReportTarget, {kind: 's3'}>, file: string): Promise<void> {
  const {S3Client, PutObjectCommand} = await import('@aws-sdk/client-s3')
  const put = new PutObjectCommand({
    Bucket: target.bucket,
    Key: target.key,
    Body: createReadStream(file),
    ContentLength: statSync(file).size,
    ContentType: 'application/x-ndjson',
  })
  if (target.region) {
    // The region's own client: its endpoint, addressing, TLS settings and credentials.
    const {S3Driver} = await import('../storage/s3.js')
    const driver = new S3Driver(target.region)
    try {
      await (await driver.sdkClient()).send(put)
    } finally {
      await driver.close()
    }
    return
  }
  // No configured region holds the bucket: the SDK's default chain (environment, profile, IRSA).
  const client = new S3Client({})
  try {
    await client.send(put)
  } finally {
    client.destroy()
  }
}
