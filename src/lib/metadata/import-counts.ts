import type {Problem} from '../storage/repositories.js'

/** What an import counted and wrote, per repository and in total, and what it could not take. */

export type ImportProblemKind =
  | Problem['kind']
  | 'unknown-media-type'
  | 'missing-blob'
  | 'dangling-layer-link'
  | 'dangling-tag'
  | 'missing-child'
  // a full import whose listing named no repository keeps those the database holds
  | 'vanished-kept'

/** Something in storage the import could not take as it is; reported with its key, the rest is imported. */
export interface ImportProblem extends Omit<Problem, 'kind'> {
  kind: ImportProblemKind
}

export interface ImportCounts {
  /** repositories imported */
  repositories: number
  /** manifests imported (in the database after the run, whether this run wrote them or not) */
  manifests: number
  /** tags imported */
  tags: number
  /** blob rows this run created (0 on a re-run over an unchanged store); dry-run: blobs referenced or linked, per repository */
  blobs: number
  /** layer rows of the imported manifests */
  layers: number
  /** index → child edges (manifest_references) */
  references: number
  /** _layers links imported (repository_blobs) */
  repositoryBlobs: number
}

/** Rows this run inserted, updated or deleted. All zero on a re-run over an unchanged store. */
export interface ImportWrites {
  namespaces: number
  repositories: number
  mediaTypes: number
  blobs: number
  manifests: number
  layers: number
  references: number
  repositoryBlobs: number
  tagsInserted: number
  tagsUpdated: number
  /** repositories: removed because storage no longer has them (a full import only; journaled) */
  deleted: {repositories: number; manifests: number; tags: number; repositoryBlobs: number}
}

export function zeroCounts(): ImportCounts {
  return {repositories: 0, manifests: 0, tags: 0, blobs: 0, layers: 0, references: 0, repositoryBlobs: 0}
}

export function zeroWrites(): ImportWrites {
  return {
    namespaces: 0,
    repositories: 0,
    mediaTypes: 0,
    blobs: 0,
    manifests: 0,
    layers: 0,
    references: 0,
    repositoryBlobs: 0,
    tagsInserted: 0,
    tagsUpdated: 0,
    deleted: {repositories: 0, manifests: 0, tags: 0, repositoryBlobs: 0},
  }
}

export function addCounts(into: ImportCounts, more: ImportCounts): void {
  for (const key of Object.keys(zeroCounts()) as Array<keyof ImportCounts>) into[key] += more[key]
}

export function addWrites(into: ImportWrites, more: ImportWrites): void {
  for (const key of Object.keys(zeroWrites()) as Array<keyof ImportWrites>) {
    if (key === 'deleted') {
      into.deleted.repositories += more.deleted.repositories
      into.deleted.manifests += more.deleted.manifests
      into.deleted.tags += more.deleted.tags
      into.deleted.repositoryBlobs += more.deleted.repositoryBlobs
    } else into[key] += more[key]
  }
}
