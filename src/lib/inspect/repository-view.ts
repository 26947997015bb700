import pLimit from 'p-limit'
import type {StorageDriver} from '../storage/driver.js'
import {
  parseKeyOrReport,
  readRevision,
  readTagLinks,
  listRevisionLinks,
  listLayerLinks,
  type LinkEntry,
  type ManifestRead,
  type Problem,
} from '../storage/repositories.js'
import {repositoryPrefix, tagsPrefix} from '../storage/layout.js'

/** A tag as storage holds it: where it points now, and every digest it ever pointed at (its index). */
export interface TagView {
  tag: string
  /** undefined when the current link is missing or unreadable */
  current?: string
  currentModified?: Date
  history: Array<{digest: string; lastModified: Date}>
}

/** One repository read from storage: every manifest revision (read and parsed), its tags and its _layers links. */
export interface RepositoryView {
  repository: string
  exists: boolean
  revisions: ManifestRead[]
  tags: TagView[]
  layerLinks: LinkEntry[]
  problems: Problem[]
}

/** True when anything is stored under repositories/<name>/ (one LIST of at most one key). */
export async function repositoryExists(driver: StorageDriver, repository: string): Promise<boolean> {
  for await (const _ of driver.list(repositoryPrefix(repository))) return true
  return false
}

/** The tags of a repository with their current link and index history, from one listing of its tags/ prefix. */
export async function readTags(
  driver: StorageDriver,
  repository: string,
  onProblem: (p: Problem) => void,
): Promise<TagView[]> {
  const current: Array<{tag: string; key: string; lastModified: Date}> = []
  const history = new Map<string, TagView['history']>()
  for await (const object of driver.list(tagsPrefix(repository))) {
    const spec = parseKeyOrReport(object.key, onProblem, repository)
    if (spec?.kind === 'tag-current-link')
      current.push({tag: spec.tag, key: object.key, lastModified: object.lastModified})
    else if (spec?.kind === 'tag-index-link') {
      const list = history.get(spec.tag) ?? []
      list.push({digest: spec.digest, lastModified: object.lastModified})
      history.set(spec.tag, list)
    }
  }
  const links = await readTagLinks(driver, repository, current, onProblem)
  const tags = new Map<string, TagView>()
  for (const link of links)
    tags.set(link.tag, {tag: link.tag, current: link.digest, currentModified: link.lastModified, history: []})
  for (const [tag, entries] of history) {
    const view = tags.get(tag) ?? {tag, history: []}
    // Oldest first: the index holds no order of its own, its links' times are the closest record of it.
    view.history = entries.sort((a, b) => a.lastModified.getTime() - b.lastModified.getTime())
    tags.set(tag, view)
  }
  return [...tags.values()].sort((a, b) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0))
}

/** Reads a whole repository from storage. A repository is small next to a region: its revisions are read at once. */
export async function readRepository(
  driver: StorageDriver,
  repository: string,
  concurrency = 16,
): Promise<RepositoryView> {
  const problems: Problem[] = []
  const onProblem = (p: Problem) => problems.push(p)
  const revisionLinks: LinkEntry[] = []
  for await (const link of listRevisionLinks(driver, repository, onProblem)) revisionLinks.push(link)
  const layerLinks: LinkEntry[] = []
  for await (const link of listLayerLinks(driver, repository, onProblem)) layerLinks.push(link)
  const tags = await readTags(driver, repository, onProblem)
  const limit = pLimit(concurrency)
  const revisions = await Promise.all(revisionLinks.map((link) => limit(() => readRevision(driver, repository, link))))
  for (const read of revisions) problems.push(...read.problems)
  const exists =
    revisionLinks.length > 0 || layerLinks.length > 0 || tags.length > 0 || (await repositoryExists(driver, repository))
  return {repository, exists, revisions, tags, layerLinks, problems}
}
