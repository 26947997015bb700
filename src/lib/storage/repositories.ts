import {createHash} from 'node:crypto'
import pLimit from 'p-limit'
import {InvalidInputError, NotFoundError, errorMessage} from '../errors.js'
import type {StorageDriver} from './driver.js'
import {
  REPOSITORIES_PREFIX,
  isRepositoryName,
  layersPrefix,
  manifestRevisionsPrefix,
  parseKey,
  parseLink,
  pathFor,
  tagsPrefix,
} from './layout.js'
import {parseManifest, type ParsedManifest} from './manifest.js'

/** distribution refuses manifests above 4 MiB; anything larger in the store is not a manifest. */
export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024

/**
 * Something in storage that could not be read or understood. A walk reports it with its key and
 * moves on; whether it is fatal (an incomplete mark) is the caller's decision.
 */
export interface Problem {
  kind:
    | 'invalid-repository-name'
    | 'invalid-key'
    | 'corrupt-link'
    | 'link-mismatch'
    | 'missing-manifest-blob'
    | 'bad-manifest'
    | 'manifest-digest-mismatch'
    | 'storage-error'
  key: string
  message: string
  repository?: string
  digest?: string
}

export function problemOf(error: unknown, kind: Problem['kind'], key: string, extra: Partial<Problem> = {}): Problem {
  return {kind, key, message: errorMessage(error), ...extra}
}

/**
 * Every repository name under repositories/, in byte order, found by listing directories: a directory
 * holding _manifests, _layers or _uploads is a repository; other directories are name components.
 * One LIST per directory, never a listing of every link.
 */
export async function* listRepositories(driver: StorageDriver, onProblem: (p: Problem) => void, signal?: AbortSignal): AsyncIterable<string> {
  async function* visit(prefix: string): AsyncIterable<string> {
    const children: string[] = []
    for await (const dir of driver.listDirectories(prefix, {signal})) children.push(dir)
    const names = children.map((c) => c.slice(prefix.length, -1))
    const isRepo = names.some((n) => n === '_manifests' || n === '_layers' || n === '_uploads')
    if (isRepo) {
      const name = prefix.slice(REPOSITORIES_PREFIX.length, -1)
      if (isRepositoryName(name)) yield name
      else onProblem({kind: 'invalid-repository-name', key: prefix, message: `invalid repository name '${name}': skipped`})
    }
    for (const child of children) {
      const name = child.slice(prefix.length, -1)
      if (name.startsWith('_')) continue
      yield* visit(child)
    }
  }
  yield* visit(REPOSITORIES_PREFIX)
}

export interface LinkEntry {
  digest: string
  key: string
  lastModified: Date
}

/** The manifest revision links of a repository, digest from the key (no reads). */
export async function* listRevisionLinks(driver: StorageDriver, repository: string, onProblem: (p: Problem) => void): AsyncIterable<LinkEntry> {
  yield* listDigestLinks(driver, manifestRevisionsPrefix(repository), 'manifest-revision-link', repository, onProblem)
}

/** The _layers links of a repository, digest from the key (no reads). */
export async function* listLayerLinks(driver: StorageDriver, repository: string, onProblem: (p: Problem) => void): AsyncIterable<LinkEntry> {
  yield* listDigestLinks(driver, layersPrefix(repository), 'layer-link', repository, onProblem)
}

async function* listDigestLinks(
  driver: StorageDriver,
  prefix: string,
  kind: 'manifest-revision-link' | 'layer-link',
  repository: string,
  onProblem: (p: Problem) => void,
): AsyncIterable<LinkEntry> {
  for await (const object of driver.list(prefix)) {
    let spec
    try {
      spec = parseKey(object.key)
    } catch (error) {
      onProblem(problemOf(error, 'invalid-key', object.key, {repository}))
      continue
    }
    if (spec.kind !== kind) {
      onProblem({kind: 'invalid-key', key: object.key, repository, message: `unexpected ${spec.kind} under ${prefix}`})
      continue
    }
    yield {digest: spec.digest, key: object.key, lastModified: object.lastModified}
  }
}

export interface TagEntry {
  tag: string
  key: string
  lastModified: Date
  /** the digest the current link points at; undefined when the link could not be read */
  digest?: string
}

/** The tags of a repository with the digest each currently points at (one read per tag). */
export async function listTags(driver: StorageDriver, repository: string, onProblem: (p: Problem) => void, concurrency = 16): Promise<TagEntry[]> {
  const entries: TagEntry[] = []
  for await (const object of driver.list(tagsPrefix(repository))) {
    let spec
    try {
      spec = parseKey(object.key)
    } catch (error) {
      onProblem(problemOf(error, 'invalid-key', object.key, {repository}))
      continue
    }
    if (spec.kind === 'tag-current-link') entries.push({tag: spec.tag, key: object.key, lastModified: object.lastModified})
  }
  const limit = pLimit(concurrency)
  await Promise.all(
    entries.map((entry) =>
      limit(async () => {
        try {
          entry.digest = parseLink(await driver.readSmall(entry.key, 1024), entry.key)
        } catch (error) {
          const kind = error instanceof InvalidInputError ? 'corrupt-link' : 'storage-error'
          onProblem(problemOf(error, kind, entry.key, {repository}))
        }
      }),
    ),
  )
  return entries
}

export interface ManifestRead {
  repository: string
  digest: string
  revisionKey: string
  revisionModified: Date
  manifest?: ParsedManifest
  payload?: Buffer
  problems: Problem[]
}

/**
 * Reads one manifest revision: its link (must name the digest in its path) and the manifest blob
 * (must hash to that digest and parse). Every failure is a Problem, never a throw.
 */
export async function readRevision(driver: StorageDriver, repository: string, link: LinkEntry, opts: {verifyLink?: boolean} = {}): Promise<ManifestRead> {
  const read: ManifestRead = {repository, digest: link.digest, revisionKey: link.key, revisionModified: link.lastModified, problems: []}
  const blobKey = pathFor({kind: 'blob-data', digest: link.digest})
  const [linkResult, blobResult] = await Promise.allSettled([
    opts.verifyLink === false ? Promise.resolve(undefined) : driver.readSmall(link.key, 1024),
    driver.readSmall(blobKey, MAX_MANIFEST_SIZE),
  ])
  if (linkResult.status === 'rejected') {
    const error = linkResult.reason
    if (!(error instanceof NotFoundError)) read.problems.push(problemOf(error, error instanceof InvalidInputError ? 'corrupt-link' : 'storage-error', link.key, {repository, digest: link.digest}))
  } else if (linkResult.value !== undefined) {
    try {
      const target = parseLink(linkResult.value, link.key)
      if (target !== link.digest) {
        read.problems.push({kind: 'link-mismatch', key: link.key, repository, digest: link.digest, message: `revision link names ${target}, its path names ${link.digest}`})
      }
    } catch (error) {
      read.problems.push(problemOf(error, 'corrupt-link', link.key, {repository, digest: link.digest}))
    }
  }
  if (blobResult.status === 'rejected') {
    const error = blobResult.reason
    const kind = error instanceof NotFoundError ? 'missing-manifest-blob' : error instanceof InvalidInputError ? 'bad-manifest' : 'storage-error'
    const message = error instanceof NotFoundError ? `manifest blob ${blobKey} is missing (revision link to a missing manifest)` : errorMessage(error)
    read.problems.push({kind, key: kind === 'missing-manifest-blob' ? link.key : blobKey, repository, digest: link.digest, message})
    return read
  }
  const payload = blobResult.value
  read.payload = payload
  const algorithm = link.digest.startsWith('sha512:') ? 'sha512' : 'sha256'
  const actual = `${algorithm}:${createHash(algorithm).update(payload).digest('hex')}`
  if (actual !== link.digest) {
    read.problems.push({kind: 'manifest-digest-mismatch', key: blobKey, repository, digest: link.digest, message: `content hashes to ${actual}`})
  }
  try {
    read.manifest = parseManifest(payload, link.digest, blobKey)
  } catch (error) {
    read.problems.push(problemOf(error, 'bad-manifest', blobKey, {repository, digest: link.digest}))
  }
  return read
}
