import {ExitCode} from '../lib/errors.js'
import {formatBytes, renderPairs, renderTable} from '../lib/output/format.js'
import type {RepositoryInspection} from '../lib/inspect/inspect-repo.js'

export function render(r: RepositoryInspection): string {
  if (!r.found) return `${r.repository}: not found in region ${r.region}`
  return [
    renderPairs([
      ['repository', r.repository],
      ['region', r.region],
      ['tags', r.tags.length],
      ['manifests', r.manifests.length],
      ['_layers links', r.layerLinks],
      ['total size', `${formatBytes(r.totalBytes)} (every manifest's blobs, shared ones counted per manifest)`],
      ['unique size', `${formatBytes(r.uniqueBytes)} (every distinct blob once)`],
      ['last push', r.lastPush],
    ]),
    renderTable(
      ['tag', 'digest', 'since', 'history'],
      r.tags.map((t) => [t.tag, t.digest ?? '(no current link)', t.lastModified ?? '', t.historyLength]),
    ),
    renderTable(
      ['manifest', 'media type', 'tags', 'pushed'],
      r.manifests.map((m) => [m.digest, m.mediaType ?? '(unreadable)', m.tags.join(', '), m.lastModified]),
    ),
    ...(r.problems.length
      ? [`problems: ${r.problems.length} (first: ${r.problems[0].key}: ${r.problems[0].message})`]
      : []),
  ].join('\n')
}

export function exitCode(r: RepositoryInspection): number {
  return r.found ? ExitCode.Ok : ExitCode.Found
}
