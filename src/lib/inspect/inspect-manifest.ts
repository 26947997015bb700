import {InvalidInputError, NotFoundError, printableExcerpt} from '../errors.js'
import type {StorageDriver} from '../storage/driver.js'
import {assertDigest, assertRepositoryName, assertTag, parseLink, pathFor} from '../storage/layout.js'
import type {Problem} from '../storage/repositories.js'
import {readRepository} from './repository-view.js'

/** `REPO@DIGEST` or `REPO:TAG`, checked against the distribution grammar. */
export type ManifestReference =
  {repository: string; digest: string; tag?: undefined} | {repository: string; tag: string; digest?: undefined}

export function parseManifestReference(text: string): ManifestReference {
  const at = text.indexOf('@')
  if (at >= 0) return {repository: assertRepositoryName(text.slice(0, at)), digest: assertDigest(text.slice(at + 1))}
  // A tag never holds '/', a repository name never ':', so the last ':' splits them.
  const colon = text.lastIndexOf(':')
  if (colon < 0)
    throw new InvalidInputError(
      `invalid manifest reference '${printableExcerpt(text)}': expected REPO@DIGEST or REPO:TAG`,
    )
  return {repository: assertRepositoryName(text.slice(0, colon)), tag: assertTag(text.slice(colon + 1))}
}

export interface ManifestItem {
  /** what the manifest says it is */
  role: 'config' | 'layer' | 'child' | 'subject'
  digest: string
  size: number
  mediaType?: string
  platform?: string
  /** per region: whether its blob data is there */
  presentIn: Record<string, boolean>
  /** an index child whose revision link is gone from the repository: the registry no longer serves it */
  dangling?: boolean
}

export interface ManifestInspection {
  kind: 'inspect-manifest'
  repository: string
  digest?: string
  /** the tag asked for, when the reference was REPO:TAG */
  tag?: string
  found: boolean
  /** why not found, for the operator */
  reason?: string
  mediaType?: string
  size?: number
  items: ManifestItem[]
  /** tags pointing at it now, or that did once (their index holds it) */
  tags: Array<{
    tag: string
    current?: string
    pointsHere: boolean
    history: Array<{digest: string; lastModified: string}>
  }>
  /** manifests of the repository whose subject is this one */
  referrers: Array<{digest: string; mediaType: string}>
  /** every referenced blob is in every region (dangling children aside) */
  complete: boolean
  problems: Problem[]
}

/** One manifest from every side, read from storage in the first driver; blob presence checked in every driver. */
export async function inspectManifest(
  drivers: StorageDriver[],
  reference: ManifestReference,
): Promise<ManifestInspection> {
  const [driver] = drivers
  const view = await readRepository(driver, reference.repository)
  const result: ManifestInspection = {
    kind: 'inspect-manifest',
    repository: reference.repository,
    ...(reference.tag ? {tag: reference.tag} : {}),
    found: false,
    items: [],
    tags: [],
    referrers: [],
    complete: false,
    problems: view.problems,
  }
  if (!view.exists)
    return {...result, reason: `repository ${reference.repository} does not exist in region ${driver.region}`}
  const digest = reference.digest ?? view.tags.find((t) => t.tag === reference.tag)?.current
  if (!digest) return {...result, reason: `tag ${reference.tag} does not exist in ${reference.repository}`}
  result.digest = digest
  result.tags = view.tags
    .filter((t) => t.current === digest || t.history.some((h) => h.digest === digest))
    .map((t) => ({
      tag: t.tag,
      current: t.current,
      pointsHere: t.current === digest,
      history: t.history.map((h) => ({digest: h.digest, lastModified: h.lastModified.toISOString()})),
    }))
  const revision = view.revisions.find((r) => r.digest === digest)
  if (!revision)
    return {...result, reason: `${reference.repository}@${digest} has no revision link: the registry does not serve it`}
  if (!revision.manifest)
    return {...result, reason: revision.problems.map((p) => p.message).join('; ') || 'the manifest could not be read'}
  const manifest = revision.manifest
  result.found = true
  result.mediaType = manifest.mediaType
  result.size = revision.payload?.length
  const linked = new Set(view.revisions.map((r) => r.digest))
  const described = [
    ...(manifest.config ? [{role: 'config' as const, ...manifest.config}] : []),
    ...manifest.layers.map((l) => ({role: 'layer' as const, ...l})),
    ...manifest.manifests.map((c) => ({role: 'child' as const, ...c})),
    ...(manifest.subject ? [{role: 'subject' as const, ...manifest.subject}] : []),
  ]
  result.items = await Promise.all(
    described.map(async (d): Promise<ManifestItem> => {
      const presentIn: Record<string, boolean> = {}
      for (const region of drivers)
        presentIn[region.region] = (await region.stat(pathFor({kind: 'blob-data', digest: d.digest}))) !== undefined
      const platform =
        'platform' in d && d.platform
          ? [d.platform.os, d.platform.architecture, d.platform.variant].filter(Boolean).join('/')
          : undefined
      return {
        role: d.role,
        digest: d.digest,
        size: d.size,
        ...(d.mediaType ? {mediaType: d.mediaType} : {}),
        ...(platform ? {platform} : {}),
        presentIn,
        ...(d.role === 'child' && !linked.has(d.digest) ? {dangling: true} : {}),
      }
    }),
  )
  result.referrers = view.revisions
    .filter((r) => r.manifest?.subject?.digest === digest)
    .map((r) => ({digest: r.digest, mediaType: r.manifest!.mediaType}))
  // A subject need not be present (it may be pushed later), so it does not make the image incomplete.
  result.complete = result.items.every(
    (i) => i.role === 'subject' || (!i.dangling && Object.values(i.presentIn).every(Boolean)),
  )
  return result
}

/** The digest a tag points at now, or undefined when the tag has no current link. */
export async function readTagCurrent(
  driver: StorageDriver,
  repository: string,
  tag: string,
): Promise<string | undefined> {
  const key = pathFor({kind: 'tag-current-link', repository, tag})
  try {
    return parseLink(await driver.readSmall(key, 1024), key)
  } catch (error) {
    if (error instanceof NotFoundError) return undefined
    throw error
  }
}
