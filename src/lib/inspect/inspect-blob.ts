import {createHash} from 'node:crypto'
import pLimit from 'p-limit'
import {UsageError, errorMessage} from '../errors.js'
import type {Db} from '../metadata/db.js'
import type {StorageDriver} from '../storage/driver.js'
import {REPOSITORIES_PREFIX, pathFor, repositoryPrefix, splitDigest} from '../storage/layout.js'
import {listRepositoryGroups, readRevision, type Problem} from '../storage/repositories.js'
import type {ParsedManifest} from '../storage/manifest.js'
import {jobQuarantineKey} from '../sweep/act.js'
import {listJournal, type JournalRow} from '../sweep/journal.js'
import {resolveQuarantine} from '../sweep/quarantine-prefix.js'

export type ReferenceRole = 'config' | 'layer' | 'child' | 'subject' | 'manifest'

export interface BlobInRegion {
  region: string
  present: boolean
  size?: number
  lastModified?: string
  /** with --verify: whether the content hashes to the digest */
  verified?: boolean
  /** with --verify, when it does not: what it hashes to */
  actualDigest?: string
  error?: string
}

export interface BlobInspection {
  kind: 'inspect-blob'
  digest: string
  regions: BlobInRegion[]
  /** where linkedBy and referencedBy come from */
  referencesFrom: 'database' | 'storage'
  /** the storage walk was narrowed to these repositories */
  repositories?: string[]
  linkedBy: string[]
  referencedBy: Array<{repository: string; manifest: string; as: ReferenceRole}>
  quarantined: Array<{region: string; jobId: string; key: string; size: number; lastModified: string}>
  journal: JournalRow[]
  problems: Problem[]
}

export interface InspectBlobOptions {
  digest: string
  /** every configured region; the first is the one walked when there is no database */
  drivers: StorageDriver[]
  db?: Db
  /** sweep.quarantine, resolved per region */
  quarantineSetting: string
  verify?: boolean
  repositories?: string[]
  concurrency?: number
}

/** Everything regops can tell about one blob: where it is, who links and references it, its quarantines and journal. */
export async function inspectBlob(opts: InspectBlobOptions): Promise<BlobInspection> {
  const problems: Problem[] = []
  const [regions, quarantined, references] = await Promise.all([
    Promise.all(opts.drivers.map((driver) => blobInRegion(driver, opts.digest, Boolean(opts.verify)))),
    Promise.all(opts.drivers.map((driver) => quarantinedCopies(driver, opts.quarantineSetting, opts.digest))).then(
      (lists) => lists.flat(),
    ),
    opts.db && !opts.repositories?.length
      ? referencesFromDatabase(opts.db, opts.digest)
      : referencesFromStorage(
          opts.drivers[0],
          opts.digest,
          opts.repositories,
          (p) => problems.push(p),
          opts.concurrency ?? 16,
        ),
  ])
  return {
    kind: 'inspect-blob',
    digest: opts.digest,
    regions,
    referencesFrom: opts.db && !opts.repositories?.length ? 'database' : 'storage',
    ...(opts.repositories?.length ? {repositories: opts.repositories} : {}),
    linkedBy: references.linkedBy,
    referencedBy: references.referencedBy,
    quarantined,
    // One object's history reads in the order it happened.
    journal: opts.db ? await listJournal(opts.db, {digest: opts.digest, oldestFirst: true}) : [],
    problems,
  }
}

async function blobInRegion(driver: StorageDriver, digest: string, verify: boolean): Promise<BlobInRegion> {
  const key = pathFor({kind: 'blob-data', digest})
  const info = await driver.stat(key)
  if (!info) return {region: driver.region, present: false}
  const found: BlobInRegion = {
    region: driver.region,
    present: true,
    size: info.size,
    lastModified: info.lastModified.toISOString(),
  }
  if (verify) {
    try {
      const actual = await hashObject(driver, key, splitDigest(digest).algorithm)
      found.verified = actual === digest
      if (!found.verified) found.actualDigest = actual
    } catch (error) {
      found.error = errorMessage(error)
    }
  }
  return found
}

/** Streams an object through the hash: a layer may be gigabytes, so it is never held whole. */
export async function hashObject(driver: StorageDriver, key: string, algorithm: 'sha256' | 'sha512'): Promise<string> {
  const hash = createHash(algorithm)
  for await (const chunk of await driver.read(key)) hash.update(chunk as Buffer)
  return `${algorithm}:${hash.digest('hex')}`
}

/** Copies of the blob under the region's quarantine prefix, one per sweep job that moved it there. */
async function quarantinedCopies(
  driver: StorageDriver,
  setting: string,
  digest: string,
): Promise<BlobInspection['quarantined']> {
  let prefix: string
  try {
    prefix = resolveQuarantine(setting, driver.region)
  } catch (error) {
    // A 'region:prefix' setting names one region; the others hold no quarantine.
    if (error instanceof UsageError) return []
    throw error
  }
  const found: BlobInspection['quarantined'] = []
  for await (const directory of driver.listDirectories(`${prefix}/`)) {
    const jobId = /\/job-(\d+)\/$/.exec(directory)?.[1]
    if (!jobId) continue
    const key = jobQuarantineKey(prefix, jobId, digest)
    const info = await driver.stat(key)
    if (info)
      found.push({region: driver.region, jobId, key, size: info.size, lastModified: info.lastModified.toISOString()})
  }
  return found
}

interface References {
  linkedBy: string[]
  referencedBy: BlobInspection['referencedBy']
}

async function referencesFromDatabase(db: Db, digest: string): Promise<References> {
  const linked = await db.query<{path: string}>(
    `SELECT r.path FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id WHERE rb.blob_digest = $1 ORDER BY r.path`,
    [digest],
  )
  const referenced = await db.query<{path: string; manifest: string; role: ReferenceRole}>(
    `SELECT r.path, m.digest AS manifest, 'config' AS role FROM manifests m JOIN repositories r ON r.id = m.repository_id
      WHERE m.configuration_blob_digest = $1
     UNION SELECT r.path, m.digest, 'layer' FROM layers l
      JOIN manifests m ON m.top_level_namespace_id = l.top_level_namespace_id AND m.repository_id = l.repository_id AND m.id = l.manifest_id
      JOIN repositories r ON r.id = m.repository_id WHERE l.digest = $1
     UNION SELECT r.path, p.digest, 'child' FROM manifests c
      JOIN manifest_references mr ON mr.top_level_namespace_id = c.top_level_namespace_id AND mr.repository_id = c.repository_id AND mr.child_id = c.id
      JOIN manifests p ON p.top_level_namespace_id = mr.top_level_namespace_id AND p.repository_id = mr.repository_id AND p.id = mr.parent_id
      JOIN repositories r ON r.id = p.repository_id WHERE c.digest = $1
     UNION SELECT r.path, p.digest, 'child' FROM dangling_manifest_references d
      JOIN manifests p ON p.top_level_namespace_id = d.top_level_namespace_id AND p.repository_id = d.repository_id AND p.id = d.parent_id
      JOIN repositories r ON r.id = p.repository_id WHERE d.child_digest = $1
     UNION SELECT r.path, m.digest, 'subject' FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE m.subject_digest = $1
     UNION SELECT r.path, m.digest, 'manifest' FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE m.digest = $1
     ORDER BY 1, 2, 3`,
    [digest],
  )
  return {
    linkedBy: linked.rows.map((row) => row.path),
    referencedBy: referenced.rows.map((row) => ({repository: row.path, manifest: row.manifest, as: row.role})),
  }
}

/** Without a database: a walk of every repository (or the named ones), reading each manifest revision. */
async function referencesFromStorage(
  driver: StorageDriver,
  digest: string,
  repositories: string[] | undefined,
  onProblem: (p: Problem) => void,
  concurrency: number,
): Promise<References> {
  const linkedBy: string[] = []
  const referencedBy: BlobInspection['referencedBy'] = []
  const limit = pLimit(concurrency)
  const prefixes = repositories?.length ? repositories.map((name) => repositoryPrefix(name)) : [REPOSITORIES_PREFIX]
  for (const prefix of prefixes) {
    for await (const group of listRepositoryGroups(driver, prefix, onProblem)) {
      // A narrowed prefix (repositories/team/app/) also lists team/app/sub: keep only the named repository.
      if (repositories?.length && !repositories.includes(group.repository)) continue
      if (group.layerLinks.some((link) => link.digest === digest)) linkedBy.push(group.repository)
      const reads = await Promise.all(
        group.revisions.map((link) => limit(() => readRevision(driver, group.repository, link))),
      )
      for (const read of reads) {
        read.problems.forEach(onProblem)
        if (read.digest === digest)
          referencedBy.push({repository: group.repository, manifest: read.digest, as: 'manifest'})
        if (read.manifest)
          for (const as of rolesOf(read.manifest, digest))
            referencedBy.push({repository: group.repository, manifest: read.digest, as})
      }
    }
  }
  return {linkedBy, referencedBy}
}

/** How a manifest references a digest (it may do so in more than one role). */
export function rolesOf(manifest: ParsedManifest, digest: string): ReferenceRole[] {
  const roles: ReferenceRole[] = []
  if (manifest.config?.digest === digest) roles.push('config')
  if (manifest.layers.some((layer) => layer.digest === digest)) roles.push('layer')
  if (manifest.manifests.some((child) => child.digest === digest)) roles.push('child')
  if (manifest.subject?.digest === digest) roles.push('subject')
  return roles
}
