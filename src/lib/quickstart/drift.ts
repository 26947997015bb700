import {cp, utimes} from 'node:fs/promises'
import {join} from 'node:path'
import type {StorageDriver} from '../storage/driver.js'
import {pathFor} from '../storage/layout.js'
import {seededBytes} from '../sample/layout-writer.js'
import type {SampleRegistry} from './sample.js'

/** A difference planted in the second region: what `audit regions` must name, and `--repair` undo. */
export interface PlantedDrift {
  kind: 'missing' | 'corrupt' | 'tag_mismatch'
  /** the storage key the finding is about, in the drifted region */
  key: string
  digest: string
  why: string
}

/**
 * The second region: a copy of the sample registry (timestamps kept, as a replica's would be), then
 * drifted on purpose: a layer deleted, a config blob overwritten with other bytes of the same size (only
 * a re-hash sees it), and a tag moved to another manifest. The changed files are dated like the rest, so
 * the audit takes them for drift and not for replication still under way.
 */
export async function writeDriftedCopy(
  sourceRoot: string,
  target: StorageDriver,
  targetRoot: string,
  sample: SampleRegistry,
): Promise<PlantedDrift[]> {
  await cp(sourceRoot, targetRoot, {recursive: true, preserveTimestamps: true})
  const tag = (repository: string, name: string) =>
    sample.tags.find((t) => t.repository === repository && t.tag === name)!.digest
  const manifestOf = async (digest: string) =>
    JSON.parse((await target.readSmall(pathFor({kind: 'blob-data', digest}), 1 << 20)).toString('utf8')) as {
      config: {digest: string; size: number}
      layers: Array<{digest: string}>
    }
  // nginx:1.25's own last layer (not the base layer every image shares).
  const nginx = await manifestOf(tag('library/nginx', '1.25'))
  const lost = nginx.layers[nginx.layers.length - 1].digest
  const lostKey = pathFor({kind: 'blob-data', digest: lost})
  await target.deleteMany([lostKey])
  const ci = await manifestOf(tag('tools/ci', 'stable'))
  const corruptKey = pathFor({kind: 'blob-data', digest: ci.config.digest})
  await target.write(corruptKey, seededBytes('quickstart:bit-rot', ci.config.size))
  const tagKey = pathFor({kind: 'tag-current-link', repository: 'library/nginx', tag: 'latest'})
  const movedTo = tag('library/nginx', '1.25')
  await target.write(tagKey, Buffer.from(movedTo))
  const then = (await target.stat(pathFor({kind: 'blob-data', digest: nginx.config.digest})))!.lastModified
  for (const key of [corruptKey, tagKey]) await utimes(join(targetRoot, key), then, then)
  return [
    {kind: 'missing', key: lostKey, digest: lost, why: 'layer of library/nginx:1.25, deleted from the copy'},
    {
      kind: 'corrupt',
      key: corruptKey,
      digest: ci.config.digest,
      why: 'config of tools/ci:stable, same size, other bytes',
    },
    {
      kind: 'tag_mismatch',
      key: tagKey,
      digest: movedTo,
      why: `library/nginx:latest moved in the copy to the manifest of 1.25`,
    },
  ]
}
