import {createReadStream} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {createInterface} from 'node:readline'
import {Readable} from 'node:stream'
import {createGunzip} from 'node:zlib'
import {fileURLToPath} from 'node:url'
import type {RegionConfig} from '../config/config.js'
import {InvalidInputError, UsageError, errorMessage} from '../errors.js'
import {ShardLines} from '../sweep/spill.js'
import {compareKeys, type ObjectInfo, type StorageDriver} from './driver.js'

/**
 * An S3 Inventory report (CSV format) as a blob listing: `manifest.json` names gzipped CSV files of
 * Bucket, Key, Size, LastModifiedDate, ETag (more columns are allowed; the manifest's fileSchema says
 * which is where). Keys in the CSV are URL-encoded. The files are not sorted, so every row under the
 * region's blobs/sha256/ is spilled to a file per digest prefix and each prefix is sorted when read:
 * memory is one prefix's worth, however large the bucket.
 */
export interface InventoryManifest {
  sourceBucket: string
  destinationBucket: string
  creationTimestamp: string
  fileFormat: string
  fileSchema: string
  files: Array<{key: string; size?: number; MD5checksum?: string}>
}

export interface InventoryProblem {
  where: string
  message: string
}

export class InventoryListing {
  readonly kind = 'inventory' as const

  private constructor(
    private readonly lines: ShardLines,
    /** when the report was taken: anything newer is not in it */
    readonly createdAt: Date,
    readonly rows: number,
  ) {}

  /**
   * Reads the report at `url` (s3://bucket/key/manifest.json, read with the region's endpoint and
   * credentials, or file:///path/manifest.json) for the region whose bucket it inventories.
   */
  static async open(
    url: string,
    region: RegionConfig,
    opts: {
      shards: Iterable<string>
      onProblem: (p: InventoryProblem) => void
      openBucket: (bucket: string) => Promise<StorageDriver>
    },
  ): Promise<InventoryListing> {
    const reader = await inventoryReader(url, region, opts.openBucket)
    try {
      let manifest: InventoryManifest
      try {
        manifest = JSON.parse((await reader.readSmall(reader.manifestKey)).toString('utf8')) as InventoryManifest
      } catch (error) {
        throw new UsageError(`inventory manifest ${url} cannot be read: ${errorMessage(error)}`)
      }
      if (manifest.fileFormat !== 'CSV')
        throw new UsageError(`inventory ${url}: only the CSV format is read (this one is ${manifest.fileFormat})`)
      const columns = manifest.fileSchema.split(',').map((c) => c.trim())
      const at = (name: string) => {
        const index = columns.indexOf(name)
        if (index < 0)
          throw new UsageError(`inventory ${url}: fileSchema has no ${name} column (${manifest.fileSchema})`)
        return index
      }
      const [bucketAt, keyAt, sizeAt, modifiedAt] = [at('Bucket'), at('Key'), at('Size'), at('LastModifiedDate')]
      const rootPrefix = region.kind === 's3' ? (region.prefix ? `${region.prefix}/` : '') : ''
      const bucket = region.kind === 's3' ? region.bucket : manifest.sourceBucket
      const lines = ShardLines.create(opts.shards, 'inventory')
      let rows = 0
      for (const file of manifest.files) {
        const input = createInterface({input: (await reader.read(file.key)).pipe(createGunzip()), crlfDelay: Infinity})
        let lineNumber = 0
        for await (const line of input) {
          lineNumber++
          if (line === '') continue
          try {
            const fields = parseCsvLine(line)
            if (fields[bucketAt] !== bucket) continue
            const key = decodeURIComponent(fields[keyAt].replace(/\+/g, ' '))
            if (!key.startsWith(`${rootPrefix}blobs/sha256/`)) continue
            const relative = key.slice(rootPrefix.length)
            const size = Number(fields[sizeAt])
            const modified = Date.parse(fields[modifiedAt])
            if (!Number.isSafeInteger(size) || size < 0 || Number.isNaN(modified))
              throw new Error(`bad Size '${fields[sizeAt]}' or LastModifiedDate '${fields[modifiedAt]}'`)
            const shard = relative.slice('blobs/sha256/'.length, 'blobs/sha256/'.length + 2)
            lines.add(shard, `${relative}\t${size}\t${modified}`)
            rows++
          } catch (error) {
            opts.onProblem({where: `${file.key}:${lineNumber}`, message: errorMessage(error)})
          }
        }
      }
      lines.flushAll()
      return new InventoryListing(lines, new Date(Number(manifest.creationTimestamp)), rows)
    } finally {
      await reader.close()
    }
  }

  async *listPrefix(prefix: string): AsyncIterable<ObjectInfo> {
    const entries = (await this.lines.read(prefix)).map((line) => {
      const [key, size, modified] = line.split('\t')
      return {key, size: Number(size), lastModified: new Date(Number(modified))}
    })
    entries.sort((a, b) => compareKeys(a.key, b.key))
    yield* entries
  }

  dispose(): Promise<void> {
    return this.lines.dispose()
  }
}

/** One CSV line as S3 Inventory writes it: every field in double quotes, a quote inside doubled. */
export function parseCsvLine(line: string): string[] {
  const fields: string[] = []
  let i = 0
  while (i <= line.length) {
    if (line[i] === '"') {
      let value = ''
      i++
      for (;;) {
        if (i >= line.length) throw new InvalidInputError('unterminated quoted field in inventory CSV')
        if (line[i] === '"') {
          if (line[i + 1] === '"') {
            value += '"'
            i += 2
            continue
          }
          i++
          break
        }
        value += line[i++]
      }
      fields.push(value)
      if (i < line.length && line[i] !== ',') throw new InvalidInputError('text after a quoted field in inventory CSV')
      i++
    } else {
      const end = line.indexOf(',', i)
      fields.push(line.slice(i, end < 0 ? line.length : end))
      i = end < 0 ? line.length + 1 : end + 1
    }
  }
  return fields
}

interface ReportReader {
  manifestKey: string
  readSmall(key: string): Promise<Buffer>
  read(key: string): Promise<Readable>
  close(): Promise<void>
}

/** The manifest and data files live in another bucket (or directory); data file keys are relative to its root. */
async function inventoryReader(
  url: string,
  region: RegionConfig,
  openBucket: (bucket: string) => Promise<StorageDriver>,
): Promise<ReportReader> {
  if (url.startsWith('file://')) {
    const manifestPath = fileURLToPath(url)
    // Data file keys start at the destination's root: the manifest sits at <root>/<bucket>/<config>/<date>/manifest.json.
    const root = dirname(dirname(dirname(dirname(manifestPath))))
    return {
      manifestKey: manifestPath,
      readSmall: (path) => readFile(path),
      read: async (key) => createReadStream(join(root, key)),
      close: async () => {},
    }
  }
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(url)
  if (!match)
    throw new UsageError(`--inventory '${url}': expected s3://bucket/path/manifest.json or file:///path/manifest.json`)
  if (region.kind !== 's3')
    throw new UsageError(
      `--inventory ${url}: an s3:// report is read with an S3 region's endpoint and credentials; region '${region.name}' is a directory`,
    )
  const driver = await openBucket(match[1])
  return {
    manifestKey: match[2],
    readSmall: (key) => driver.readSmall(key, 64 * 1024 * 1024),
    read: (key) => driver.read(key),
    close: () => driver.close(),
  }
}
