import {FilesystemDriver} from '../../src/lib/storage/filesystem.js'
import {LayoutWriter, seededBytes} from '../../src/lib/sample/layout-writer.js'
import {importStorage} from '../../src/lib/metadata/import.js'
const root = '/tmp/bench-probe/store'
const d = new FilesystemDriver('b', root, 64)
if (process.argv[2] === 'write') {
  const w = new LayoutWriter(d, 64)
  const t = Date.now()
  await Promise.all(Array.from({length: 50}, (_, r) => Promise.all(Array.from({length: 9}, (_, i) => w.writeImage({repository: `t/s-${r}`, tag: `v${i}`, seed: `${r}:${i}`, layers: 2, layerSize: 256})))))
  console.log('write', Date.now() - t)
} else {
  const t = Date.now()
  const r = await importStorage({driver: d, dryRun: true})
  console.log('dry', Date.now() - t, r.manifests)
}
