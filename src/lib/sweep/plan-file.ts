import {createHash, type Hash} from 'node:crypto'
import {createReadStream, createWriteStream, type WriteStream} from 'node:fs'
import {mkdir, rename, rm} from 'node:fs/promises'
import {dirname} from 'node:path'
import {once} from 'node:events'
import {createInterface} from 'node:readline'
import {RefusedError, UsageError, errorMessage} from '../errors.js'
import type {StorageDriver} from '../storage/driver.js'
import {REPOSITORIES_PREFIX} from '../storage/layout.js'
import type {Problem} from '../storage/repositories.js'
import type {SweepCandidate, SweepMode, SweepSettings} from './types.js'

// The reviewed plan of a sweep, as a file: `sweep blobs --plan-out` writes it, `sweep apply` acts on
// exactly its candidates. JSON Lines, so that millions of candidates stream in and out in bounded memory:
//   {"line":"header", ...}       what the sweep was asked, when, on which store, and the store's fingerprint
//   {"line":"candidate", ...}    one per candidate, as the sweep saw it (key, size, last modified)
//   {"line":"trailer", ...}      the sweep's counts: what the caps and the mass-deletion guard judge
//   {"line":"seal","planHash":"sha256:…"}
// Every line but the seal is canonical JSON (keys sorted); the plan hash is the sha256 of those exact
// bytes, so one byte changed anywhere, a line added or dropped, or anything after the seal is refused.

export const PLAN_FORMAT = 'regops-sweep-plan'
export const PLAN_VERSION = 1

/** The settings a plan was made with: the ones a sweep acting on it must use. */
export type PlanSettings = SweepSettings & {mode: SweepMode}

export interface PlanHeader {
  line: 'header'
  format: typeof PLAN_FORMAT
  version: number
  createdAt: string
  region: string
  /** where the region pointed (never a credential): a plan is not applied to another store of the same name */
  location: string
  settings: PlanSettings
  shard: {index: number; count: number}
  /** storage time: the grace cutoff the candidates were decided against, and when the mark started */
  cutoff: string
  markStart: string
  store: StoreFingerprint
}

/**
 * The state of the store that decides reachability, taken before the mark began. It is one LIST of
 * `repositories/` (keys, sizes and modification times, no reads): every manifest revision, tag and
 * `_layers` link is there, so a push, a tag move, a manifest delete or a new link changes it, while
 * walking it again costs a fraction of the mark (which reads every manifest). `_uploads/` is left out:
 * uploads in flight reference nothing until their manifest comes, and on a live registry they change
 * every second. The candidates themselves are fingerprinted by their own lines (key, size, last
 * modified as listed), which the plan hash protects; apply re-stats each one.
 */
export interface StoreFingerprint {
  repositories: {objects: number; sha256: string}
}

export interface PlanTrailer {
  line: 'trailer'
  candidates: {count: number; bytes: number; manifests: number}
  scanned: {blobs: number; bytes: number}
  markComplete: boolean
  problemCount: number
  problems: Problem[]
}

interface PlanSeal {
  line: 'seal'
  planHash: string
}

/** JSON with object keys sorted at every depth: the same value always gives the same bytes. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  )
}

/** The fingerprint of `repositories/` as it is now (see StoreFingerprint for what it covers and why). */
export async function fingerprintStore(driver: StorageDriver, signal?: AbortSignal): Promise<StoreFingerprint> {
  const hash = createHash('sha256')
  let objects = 0
  const uploads = (key: string) => key.includes('/_uploads/')
  for await (const object of driver.list(REPOSITORIES_PREFIX, {signal, prune: (dir) => dir.endsWith('/_uploads/')})) {
    if (uploads(object.key)) continue
    objects++
    hash.update(`${object.key}\t${object.size}\t${object.lastModified.getTime()}\n`)
  }
  return {repositories: {objects, sha256: `sha256:${hash.digest('hex')}`}}
}

/** Writes lines to a file while hashing their bytes; waits when the file asks to (backpressure). */
class HashedLines {
  readonly hash: Hash = createHash('sha256')
  private constructor(private readonly stream: WriteStream) {}

  static async open(file: string): Promise<HashedLines> {
    const stream = createWriteStream(file, {flags: 'w'})
    await Promise.race([
      once(stream, 'open'),
      once(stream, 'error').then(([error]) => {
        throw new UsageError(`cannot write the plan ${file}: ${errorMessage(error)}`)
      }),
    ])
    return new HashedLines(stream)
  }

  async write(value: unknown, hashed = true): Promise<void> {
    const line = canonicalJson(value) + '\n'
    if (hashed) this.hash.update(line)
    if (!this.stream.write(line)) await once(this.stream, 'drain')
  }

  async close(): Promise<void> {
    this.stream.end()
    await once(this.stream, 'close')
  }
}

export interface WritePlanOptions {
  file: string
  header: Omit<PlanHeader, 'line' | 'format' | 'version'>
  /** the sweep's JSON Lines candidate report: streamed into the plan, never held in memory */
  reportFile: string
  trailer: Omit<PlanTrailer, 'line'>
}

/**
 * Writes the plan next to its final name and renames it into place, so a reader never sees half a
 * plan. Returns the plan hash.
 */
export async function writePlanFile(opts: WritePlanOptions): Promise<string> {
  try {
    await mkdir(dirname(opts.file), {recursive: true})
  } catch (error) {
    throw new UsageError(`cannot create the directory of the plan ${opts.file}: ${errorMessage(error)}`)
  }
  const partial = `${opts.file}.partial`
  const out = await HashedLines.open(partial)
  try {
    await out.write({line: 'header', format: PLAN_FORMAT, version: PLAN_VERSION, ...opts.header})
    const lines = createInterface({input: createReadStream(opts.reportFile), crlfDelay: Infinity})
    for await (const text of lines) {
      if (!text) continue
      const candidate = JSON.parse(text) as SweepCandidate
      await out.write({line: 'candidate', ...candidate})
    }
    await out.write({line: 'trailer', ...opts.trailer})
    const planHash = `sha256:${out.hash.digest('hex')}`
    await out.write({line: 'seal', planHash} satisfies PlanSeal, false)
    await out.close()
    await rename(partial, opts.file)
    return planHash
  } catch (error) {
    await out.close().catch(() => undefined)
    await rm(partial, {force: true})
    throw error
  }
}

export interface ReadPlan {
  header: PlanHeader
  trailer: PlanTrailer
  planHash: string
}

/**
 * Reads a plan, streaming, and verifies it: the sha256 of every byte before the seal must be the seal's
 * hash, and the seal must be the last line. `onCandidate` sees each candidate as it is read (before the
 * seal is checked: a caller that acts waits for this to return first). Refuses (exit 4) an altered plan,
 * naming both hashes, and anything that is not a whole plan.
 */
export async function readPlanFile(
  file: string,
  onCandidate?: (candidate: SweepCandidate) => Promise<void> | void,
): Promise<ReadPlan> {
  const hash = createHash('sha256')
  let header: PlanHeader | undefined
  let trailer: PlanTrailer | undefined
  let malformed: string | undefined
  let lineNumber = 0
  // The last complete line read, not yet hashed: it is the seal if no other line follows it.
  let pending: Buffer | undefined
  let rest = Buffer.alloc(0)
  const take = async (line: Buffer) => {
    if (pending) {
      hash.update(pending)
      await parse(pending)
    }
    pending = line
  }
  const parse = async (line: Buffer) => {
    lineNumber++
    if (malformed) return
    let value: {line?: unknown}
    try {
      value = JSON.parse(line.toString('utf8')) as {line?: unknown}
    } catch (error) {
      malformed = `line ${lineNumber} is not JSON (${errorMessage(error)})`
      return
    }
    if (lineNumber === 1) {
      const h = value as Partial<PlanHeader>
      if (h.line !== 'header' || h.format !== PLAN_FORMAT) malformed = `line 1 is not a ${PLAN_FORMAT} header`
      else if (h.version !== PLAN_VERSION) malformed = `plan version ${h.version}; this regops reads ${PLAN_VERSION}`
      else header = h as PlanHeader
    } else if (trailer) malformed = `line ${lineNumber} follows the trailer`
    else if (value.line === 'candidate') {
      const {line: _line, ...candidate} = value as SweepCandidate & {line: string}
      await onCandidate?.(candidate)
    } else if (value.line === 'trailer') trailer = value as PlanTrailer
    else malformed = `line ${lineNumber} is neither a candidate nor the trailer`
  }
  let stream
  try {
    stream = createReadStream(file)
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let data = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk
      for (let nl = data.indexOf(10); nl >= 0; nl = data.indexOf(10)) {
        await take(data.subarray(0, nl + 1))
        data = data.subarray(nl + 1)
      }
      rest = Buffer.from(data)
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`no plan at ${file}`)
    throw new UsageError(`cannot read the plan ${file}: ${errorMessage(error)}`)
  }
  const bodyHash = `sha256:${hash.digest('hex')}`
  const seal = parseSeal(pending)
  if (rest.length > 0 || !seal)
    throw altered(
      file,
      rest.length > 0
        ? 'it does not end with its seal line (bytes after the last newline)'
        : 'its last line is not a seal',
      bodyHash,
    )
  if (seal.planHash !== bodyHash)
    throw altered(file, `its body hashes to ${bodyHash}, its seal says ${seal.planHash}`, bodyHash)
  // The seal itself must be exactly as written: a byte changed in it is an alteration too.
  if (pending!.toString('utf8') !== canonicalJson(seal) + '\n')
    throw altered(file, 'its seal line is not as regops writes it', bodyHash)
  if (malformed || !header || !trailer)
    throw altered(file, malformed ?? (header ? 'it has no trailer' : 'it has no header'), bodyHash)
  return {header, trailer, planHash: bodyHash}
}

function parseSeal(line: Buffer | undefined): PlanSeal | undefined {
  if (!line) return undefined
  try {
    const value = JSON.parse(line.toString('utf8')) as Partial<PlanSeal>
    return value.line === 'seal' && typeof value.planHash === 'string' ? (value as PlanSeal) : undefined
  } catch {
    return undefined
  }
}

function altered(file: string, why: string, bodyHash: string): RefusedError {
  return new RefusedError(`the plan ${file} was altered or is incomplete: ${why}; nothing was done`, {
    code: 'PLAN_ALTERED',
    hint: 'make a new plan (regops sweep blobs --plan-out FILE), review it, and apply that one',
    details: {file, bodyHash},
  })
}
