// report merge on real shard reports: each mergeable command run as --shard 0/2 and 1/2 through the CLI,
// merged, and compared with the same command's unsharded run; and the merges it must refuse.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {cp, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {runCli} from '../../helpers/cli.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {LayoutWriter} from '../../../src/lib/sample/layout-writer.js'
import {ageTree, writeSampleRegistry} from '../../../src/lib/quickstart/sample.js'
import {pathFor} from '../../../src/lib/storage/layout.js'

const DAY = 86_400_000
let root: string
let config: string
after(async () => {
  if (root) await rm(root, {recursive: true, force: true})
})

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'regops-report-merge-'))
  const eu = new FilesystemDriver('eu', join(root, 'eu'))
  await writeSampleRegistry(eu, join(root, 'eu'))
  const w = new LayoutWriter(eu, 16)
  for (let i = 0; i < 40; i++) await w.writeOrphan(undefined, `merge-${i}`, 100 + i)
  const image = await w.writeImage({
    repository: 'team/merge',
    tag: 'v1',
    seed: 'merge-image',
    layers: 3,
    layerSize: 500,
  })
  await cp(join(root, 'eu'), join(root, 'us'), {recursive: true})
  // drift: a layer the second region lacks
  await rm(join(root, 'us', pathFor({kind: 'blob-data', digest: image.layerDigests[0]})))
  await ageTree(root, new Date(Date.now() - 3 * DAY))
  config = join(root, 'regops.yaml')
  await writeFile(
    config,
    `regions:\n  eu: {url: "file://${join(root, 'eu')}"}\n  us: {url: "file://${join(root, 'us')}"}\nprimary: eu\n`,
  )
})

/** Runs a command whole and as shards 0/2 and 1/2, each with --json saved to a file: [whole, shard files]. */
async function shardReports(name: string, args: string[]): Promise<{whole: any; files: string[]}> {
  const run = async (label: string, extra: string[]) => {
    const r = await runCli([...args, '--config', config, '--json', ...extra], {cwd: root})
    assert.ok(r.json && r.json.kind !== 'error', `${args.join(' ')} ${extra.join(' ')}: ${r.stdout}${r.stderr}`)
    const file = join(root, `${name}-${label}.json`)
    await writeFile(file, r.stdout)
    return {file, json: r.json}
  }
  const whole = await run('whole', [])
  const files = [(await run('0', ['--shard', '0/2'])).file, (await run('1', ['--shard', '1/2'])).file]
  return {whole: whole.json, files}
}

async function merge(files: string[], ...extra: string[]) {
  return runCli(['report', 'merge', ...files, '--json', ...extra])
}

describe('report merge', () => {
  test('sweep blobs: the merged shards equal the unsharded run, exit 1 as it had', async () => {
    const {whole, files} = await shardReports('sweep', ['sweep', 'blobs'])
    const merged = await merge(files)
    assert.equal(merged.code, 1, merged.stdout + merged.stderr)
    const m = merged.json.merged
    assert.equal(merged.json.of, 'sweep-blobs')
    assert.deepEqual(m.scanned, whole.scanned)
    assert.deepEqual(m.candidates, whole.candidates)
    assert.equal(m.referenced, whole.referenced)
    assert.deepEqual(m.marked, whole.marked, 'every shard marks the whole store: not added up')
    assert.equal(m.markComplete, true)
    assert.deepEqual(m.shards, {index: 0, count: 1, prefixes: 256})
    assert.deepEqual(
      merged.json.shards.map((s: {index: number; exitCode: number}) => [s.index, s.exitCode]),
      [
        [0, 1],
        [1, 1],
      ],
    )
    const never = await merge(files, '--fail-on', 'never')
    assert.equal(never.code, 0, never.stderr)
    const human = await runCli(['report', 'merge', ...files])
    assert.equal(human.code, 1, human.stderr)
    assert.match(human.stdout, /sweep-blobs: 2 shard reports merged; exit 1/)
  })

  test('import (dry-run), audit regions, audit integrity and replicate (dry-run): merged totals equal the whole', async () => {
    const imported = await shardReports('import', ['import', '--dry-run'])
    const i = (await merge(imported.files)).json
    for (const field of ['repositories', 'manifests', 'tags', 'layers', 'references', 'repositoryBlobs'])
      assert.equal(i.merged[field], imported.whole[field], `import ${field}`)

    const audit = await shardReports('audit', ['audit', 'regions', '--regions', 'eu,us'])
    assert.ok(audit.whole.findings.drift > 0, 'the planted drift is found')
    const a = await merge(audit.files)
    assert.equal(a.code, 1, a.stderr)
    assert.deepEqual(a.json.merged.findings.byRegion, audit.whole.findings.byRegion)
    assert.equal(a.json.merged.findings.drift, audit.whole.findings.drift)
    assert.deepEqual(a.json.merged.scanned, audit.whole.scanned)

    const scrub = await shardReports('integrity', ['audit', 'integrity', '--region', 'us'])
    const s = (await merge(scrub.files)).json
    assert.equal(s.merged.scanned, scrub.whole.scanned)
    assert.equal(s.merged.checked, scrub.whole.checked)
    assert.equal(s.merged.bound95, scrub.whole.bound95, 'the bound computed again on the totals')
    assert.equal(s.merged.statement, scrub.whole.statement)

    const copy = await shardReports('replicate', ['replicate', '--from', 'eu', '--to', 'us'])
    assert.ok(copy.whole.planned.blobs > 0)
    const r = await merge(copy.files)
    assert.equal(r.code, 1, r.stderr)
    assert.deepEqual(r.json.merged.planned, copy.whole.planned)
  })

  test('refused with exit 2, naming the files: mixed commands, a shard twice, a shard missing, other settings', async () => {
    const sweep = [join(root, 'sweep-0.json'), join(root, 'sweep-1.json')]
    const mixed = await merge([sweep[0], join(root, 'import-1.json')])
    assert.equal(mixed.code, 2)
    assert.match(
      mixed.json.error.message,
      /different commands: sweep-blobs \(.*sweep-0\.json\); import \(.*import-1\.json\)/,
    )
    const twice = await merge([sweep[0], sweep[0], sweep[1]])
    assert.equal(twice.code, 2)
    assert.match(twice.json.error.message, /shard 0\/2 is in .*sweep-0\.json and .*sweep-0\.json/)
    const missing = await merge([sweep[1]])
    assert.equal(missing.code, 2)
    assert.match(missing.json.error.message, /missing shards 0\/2/)
    const other = await runCli(['sweep', 'blobs', '--config', config, '--json', '--shard', '1/2', '--min-age', '48h'], {
      cwd: root,
    })
    const otherFile = join(root, 'sweep-other.json')
    await writeFile(otherFile, other.stdout)
    const differing = await merge([sweep[0], otherFile])
    assert.equal(differing.code, 2)
    assert.match(
      differing.json.error.message,
      /different gracePeriod: "1d" in .*sweep-0\.json; "2d" in .*sweep-other\.json/,
    )
  })
})
