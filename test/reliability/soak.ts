// The soak: a live docker-registry 2.8 taking pushes, deletes and pulls while regops sweeps it in a loop
// (`sweep blobs --quarantine` then `sweep purge --delete`, seconds of grace, through the CLI as an operator
// runs them). The pusher reuses old layers, above all those of images it deleted, which is the case a
// sweep on a live registry gets wrong: the blob is an orphan old enough to go, and a push finds it still
// there (HEAD 200) and skips the upload. The puller checks every blob of every pull against its digest.
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {sharedPostgres} from '../helpers/postgres.js'
import {s3RegionYaml, startRegistry, type RegistryServer} from '../helpers/registry.js'
import {sharedRadosgw} from '../helpers/radosgw.js'
import {startRedis, type RedisServer} from '../helpers/redis.js'
import {
  MANIFEST_ACCEPT,
  MT,
  blobExists,
  deleteManifest,
  digestOf,
  mountBlob,
  pushBlob,
  pushIndex,
  putManifest,
  randomBlob,
  type PushedImage,
} from '../helpers/images.js'
import {prng} from '../helpers/scenario.js'
import {startCli, type CliRun} from '../helpers/cli.js'
import {makeTempDir, removeTempDir, sleep} from '../helpers/tmp.js'
import {openDatabase} from '../../src/lib/metadata/db.js'
import {migrateUp} from '../../src/lib/metadata/migrations.js'
import {loadConfig} from '../../src/lib/config/config.js'
import {openRegion, type StorageDriver} from '../../src/lib/storage/index.js'
import {pathFor} from '../../src/lib/storage/layout.js'
import {runTrials, type ReliabilityRow, type Suite, type SuiteOptions} from './suite.js'

/** How the registry under soak caches blob descriptors: the row's configuration. */
export type SoakCache = 'redis' | 'none'

export interface SoakConfiguration {
  cache: SoakCache
  storage: 'filesystem' | 's3'
  case: string
}

// npm test soaks the two filesystem rows; S3 (radosgw) is the full run's third row only, for time.
const CONFIGURATIONS: SoakConfiguration[] = [
  {cache: 'redis', storage: 'filesystem', case: 'docker-registry 2.8 on a filesystem, Redis blob-descriptor cache'},
  {cache: 'none', storage: 'filesystem', case: 'docker-registry 2.8 on a filesystem, no blob-descriptor cache'},
  {cache: 'redis', storage: 's3', case: 'docker-registry 2.8 on S3 (radosgw), Redis blob-descriptor cache'},
]

// Seconds, not the 24h default: a blob orphaned by a delete becomes a candidate almost at once, so the
// sweep keeps meeting pushes that reuse it. Long enough for a push's upload to reach its manifest PUT
// (milliseconds here), which is all a grace period protects.
const GRACE_MS = 2000
const GRACE = `${GRACE_MS / 1000}s`
const HOLD = '2s'
const REPOSITORIES = ['soak/app0', 'soak/app1', 'soak/app2']

export interface SoakFigures {
  events: number
  pushes: number
  retags: number
  indexes: number
  manifestDeletes: number
  /**
   * blobs of images deleted earlier that a push reused, the dangerous case: the registry told it it held
   * them (HEAD found one, a mount from another repository linked one, or an upload of content already
   * stored was accepted without writing it), by how
   */
  reusedOrphans: Record<BlobSource, number>
  pulls: number
  /** pulls whose tag was moved or deleted during the pull */
  pullsOfMovedTags: number
  /** of those, pulls the registry answered 5xx for the tag it was rewriting */
  tagReadErrors: number
  blobsVerified: number
  sweeps: number
  purges: number
  quarantined: number
  purged: number
  rescued: number
  movedBack: number
  failedPulls: number
  failedPushes: number
  /** BLOB_UNKNOWN on a pull, MANIFEST_BLOB_UNKNOWN on a push (other than the race below) */
  blobUnknown: number
  /**
   * Pushes refused (MANIFEST_BLOB_UNKNOWN) for a deleted image's blob the registry had told them it held
   * (above), and that a sweep took between then and their manifest PUT, by how they reused it; each is
   * pushed again, as a client does. A HEAD leaves nothing a sweep could see; a mount or an upload of
   * stored content leaves only a new `_layers` link, which the sweep's re-check sees if it is written
   * before the re-check reads that repository, not after. A cache does not help: the sweep evicts the
   * registry's cached descriptor of every blob it takes, so the PUT looks in storage.
   */
  reuseRaces: Record<BlobSource, number>
  sweepExits: Record<string, number>
  purgeExits: Record<string, number>
  peakSweepRssMiB: number
  peakPurgeRssMiB: number
  /** wall time: servers, database and first images; the soak itself, until the last sweep and purge ended; final pulls */
  seconds: {setup: number; soak: number; finalPulls: number}
  /** every failure of any kind (pull, push, sweep exit, the registry exiting) */
  failureCount: number
  /** the first few, in words */
  failures: string[]
}

/** How a push obtained a blob, as a client does: HEAD found it, a mount linked it, or it was uploaded. */
type BlobSource = 'head' | 'mount' | 'upload'

const noBlobSources = (): Record<BlobSource, number> => ({head: 0, mount: 0, upload: 0})

function total(counts: Record<BlobSource, number>): number {
  return counts.head + counts.mount + counts.upload
}

interface Layer {
  label: string
  size: number
  digest: string
  /** repositories that pushed it */
  repositories: Set<string>
  /** an image using it was deleted */
  orphaned: boolean
}

interface Image {
  repository: string
  digest: string
  tag?: string
  layers: Layer[]
  /** an index: its children are images of the same repository */
  children?: Image[]
}

/**
 * What the pusher knows: tags, and a generation per tag, bumped when a change of the tag starts and again
 * when it ends (odd: in flight), so a puller can tell a tag that moved under it from one that did not.
 */
class RegistryState {
  readonly tags = new Map<string, Image>()
  readonly generation = new Map<string, number>()
  readonly images: Image[] = []
  readonly layers: Layer[] = []

  bump(key: string): void {
    this.generation.set(key, (this.generation.get(key) ?? 0) + 1)
  }
  tagKey(repository: string, tag: string): string {
    return `${repository}:${tag}`
  }
}

export async function soakOnce(
  {cache, storage}: SoakConfiguration,
  seed: number,
  durationMs: number,
  log: (line: string) => void,
): Promise<SoakFigures> {
  const figures: SoakFigures = {
    events: 0,
    pushes: 0,
    retags: 0,
    indexes: 0,
    manifestDeletes: 0,
    reusedOrphans: noBlobSources(),
    pulls: 0,
    pullsOfMovedTags: 0,
    tagReadErrors: 0,
    blobsVerified: 0,
    sweeps: 0,
    purges: 0,
    quarantined: 0,
    purged: 0,
    rescued: 0,
    movedBack: 0,
    failedPulls: 0,
    failedPushes: 0,
    blobUnknown: 0,
    reuseRaces: noBlobSources(),
    sweepExits: {},
    purgeExits: {},
    peakSweepRssMiB: 0,
    peakPurgeRssMiB: 0,
    failureCount: 0,
    failures: [],
    seconds: {setup: 0, soak: 0, finalPulls: 0},
  }
  const started = Date.now()
  const fail = (line: string): void => {
    figures.failureCount++
    if (figures.failures.length >= 10) return
    figures.failures.push(line)
    log(`seed ${seed}: ${line}`)
  }
  const dir = makeTempDir('soak')
  let redis: RedisServer | undefined
  let registry: RegistryServer | undefined
  let storageDriver: StorageDriver | undefined
  try {
    if (cache === 'redis') redis = await startRedis()
    const registryCache = redis ? {redis: redis.addr} : undefined
    let region: string
    if (storage === 'filesystem') {
      const root = join(dir, 'storage')
      registry = await startRegistry({storage: {kind: 'filesystem', root}, cache: registryCache})
      region = `{url: "file://${join(root, 'docker', 'registry', 'v2')}"}`
    } else {
      const rgw = await sharedRadosgw()
      const bucket = await rgw.newBucket('soak')
      const {endpoint, accessKeyId, secretAccessKey} = rgw
      registry = await startRegistry({
        storage: {kind: 's3', endpoint, bucket, accessKeyId, secretAccessKey, region: rgw.region},
        cache: registryCache,
      })
      region = s3RegionYaml({bucket, endpoint, accessKeyId, secretAccessKey})
    }
    const dbUrl = await (await sharedPostgres()).createDatabase()
    const db = openDatabase(dbUrl, {max: 2})
    try {
      await migrateUp(db)
    } finally {
      await db.close()
    }
    const config = join(dir, 'regops.yaml')
    await writeFile(
      config,
      [
        'regions:',
        `  main: ${region}`,
        'database:',
        `  url: ${dbUrl}`,
        'registry:',
        `  cache: ${redis ? redis.url : 'none'}`,
        '',
      ].join('\n'),
    )
    const url = registry.url
    const state = new RegistryState()
    const driver = await openRegion(loadConfig({file: config}))
    storageDriver = driver
    const stored = async (digest: string) => (await driver.stat(pathFor({kind: 'blob-data', digest}))) !== undefined
    const pusher = new Pusher(url, state, prng(seed), figures, fail, stored)
    // A registry with no manifest at all is one the sweep refuses to act on: start from a few images, and
    // from one deleted image per repository, so that the first sweep already has orphans to take.
    for (const repository of REPOSITORIES) {
      await pusher.pushImage(repository, 'base')
      const doomed = await pusher.pushImage(repository, undefined)
      if (doomed) await pusher.deleteImage(doomed)
    }
    const orphansOldEnough = Date.now() + GRACE_MS
    log(`${storage}, ${cache}: registry, database and first images ready`)
    figures.seconds.setup = (Date.now() - started) / 1000
    const stopAt = Date.now() + durationMs
    const running = () => Date.now() < stopAt
    await Promise.all([
      (async () => {
        while (running()) {
          const failuresBefore = figures.failureCount
          await pusher.step()
          // A registry that stopped answering is reported once per push, not in a busy loop.
          if (figures.failureCount > failuresBefore) await sleep(100)
        }
      })(),
      ...[1, 2].map((n) => pullLoop(url, state, prng(seed * 7919 + n), figures, fail, running)),
      sleep(orphansOldEnough - Date.now()).then(() => sweepLoop(config, dir, figures, fail, running)),
    ])
    figures.seconds.soak = (Date.now() - started) / 1000 - figures.seconds.setup
    // What the pusher left must pull in full once everything is quiet.
    for (const [key, image] of state.tags) {
      const pulled = await pullVerifiedOrError(url, image.repository, image.tag!)
      figures.pulls++
      figures.blobsVerified += pulled.blobs
      if (pulled.outcome !== 'ok') {
        figures.failedPulls++
        figures.blobUnknown += pulled.blobUnknown
        fail(`final pull of ${key}: ${pulled.reason}`)
      }
    }
    if (!registry.running) fail(`docker-registry exited during the soak: ${registry.logTail(5).replace(/\s+/g, ' ')}`)
    figures.seconds.finalPulls = (Date.now() - started) / 1000 - figures.seconds.setup - figures.seconds.soak
    figures.events =
      figures.pushes +
      figures.manifestDeletes +
      figures.pulls +
      figures.blobsVerified +
      figures.sweeps +
      figures.purges +
      figures.quarantined +
      figures.purged
    return figures
  } finally {
    await storageDriver?.close()
    await registry?.stop()
    await redis?.stop()
    await removeTempDir(dir)
  }
}

// ---------------------------------------------------------------- the pusher

class Pusher {
  private counter = 0
  constructor(
    private readonly url: string,
    private readonly state: RegistryState,
    private readonly random: () => number,
    private readonly figures: SoakFigures,
    private readonly fail: (line: string) => void,
    /** whether the registry's storage holds a blob's content (read directly, not through the registry) */
    private readonly stored: (digest: string) => Promise<boolean>,
  ) {}

  private pick<T>(items: T[]): T {
    return items[Math.floor(this.random() * items.length)]!
  }

  /** One action: mostly pushes (a new tag or a moved one), now and then an index or a delete. */
  async step(): Promise<void> {
    const roll = this.random()
    const repository = this.pick(REPOSITORIES)
    if (roll < 0.2 && this.state.images.length > 6) return this.deleteOne()
    if (roll < 0.28) return void (await this.pushIndexOf(repository))
    const tagsHere = [...this.state.tags.values()].filter((i) => i.repository === repository && i.tag !== 'base')
    const retag = tagsHere.length > 0 && this.random() < 0.4
    const tag = retag ? this.pick(tagsHere).tag! : `t${this.counter++}`
    if (retag) this.figures.retags++
    await this.pushImage(repository, tag)
  }

  /** Layers for a new image: half reused (of deleted images first), half new. */
  private layersFor(): Layer[] {
    const count = 1 + Math.floor(this.random() * 3)
    const layers: Layer[] = []
    for (let i = 0; i < count; i++) {
      const orphans = this.state.layers.filter((l) => l.orphaned)
      const reuse = this.state.layers.length > 0 && this.random() < 0.5
      let layer: Layer
      if (reuse) layer = orphans.length > 0 && this.random() < 0.7 ? this.pick(orphans) : this.pick(this.state.layers)
      else {
        const label = `soak-layer-${this.counter++}-${Math.floor(this.random() * 1e9)}`
        const size = 512 + Math.floor(this.random() * 8192)
        layer = {label, size, digest: digestOf(randomBlob(size, label)), repositories: new Set(), orphaned: false}
        this.state.layers.push(layer)
      }
      if (!layers.includes(layer)) layers.push(layer)
    }
    return layers
  }

  /**
   * A blob as a client pushes it: HEAD in the repository (present: skip), else a mount from a repository
   * that had it, else an upload. Returns how, and whether the blob was a deleted image's: the registry
   * then answered from content a sweep may take before the manifest PUT (an upload of content it already
   * stores links it and writes nothing).
   */
  private async pushBlobLikeAClient(
    repository: string,
    layer: Layer,
    content: () => Buffer,
  ): Promise<{source: BlobSource; orphaned: boolean}> {
    let orphaned = layer.orphaned
    let source: BlobSource
    if (await blobExists(this.url, repository, layer.digest)) source = 'head'
    else {
      const from = [...layer.repositories].find((r) => r !== repository)
      if (from && (await mountBlob(this.url, repository, layer.digest, from))) source = 'mount'
      else {
        // Uploaded content a sweep had already taken is written anew: a new blob, which no sweep may take.
        if (orphaned) orphaned = await this.stored(layer.digest)
        await pushBlob(this.url, repository, content())
        source = 'upload'
      }
    }
    if (orphaned) this.figures.reusedOrphans[source]++
    return {source, orphaned}
  }

  async pushImage(repository: string, tag: string | undefined): Promise<Image | undefined> {
    const key = tag ? this.state.tagKey(repository, tag) : undefined
    if (key) this.state.bump(key)
    const layers = this.layersFor()
    const configBytes = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        created: '2024-01-01T00:00:00Z',
        config: {Labels: {'org.regops.soak': `${repository}/${this.counter++}`}},
        rootfs: {type: 'layers', diff_ids: layers.map((l) => l.digest)},
      }),
    )
    const config: Layer = {
      label: 'config',
      size: configBytes.length,
      digest: digestOf(configBytes),
      repositories: new Set(),
      orphaned: false,
    }
    const manifestBytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MT.dockerManifest,
        config: {mediaType: MT.dockerConfig, size: config.size, digest: config.digest},
        layers: layers.map((l) => ({mediaType: MT.dockerLayer, size: l.size, digest: l.digest})),
      }),
    )
    const digest = digestOf(manifestBytes)
    try {
      for (let attempt = 1; ; attempt++) {
        const obtained = new Map<string, {source: BlobSource; orphaned: boolean}>()
        try {
          obtained.set(config.digest, await this.pushBlobLikeAClient(repository, config, () => configBytes))
          for (const layer of layers) {
            const how = await this.pushBlobLikeAClient(repository, layer, () => randomBlob(layer.size, layer.label))
            obtained.set(layer.digest, how)
          }
          await putManifest(this.url, repository, tag ?? digest, MT.dockerManifest, manifestBytes)
          break
        } catch (e) {
          // The refused blob is the error's detail (the message names the manifest's digest first when
          // pushed by digest, as an index's children are).
          const unknown = /MANIFEST_BLOB_UNKNOWN/.test(firstLine(e))
            ? /"detail":"(sha256:[0-9a-f]{64})"/.exec(firstLine(e))?.[1]
            : undefined
          const how = unknown === undefined ? undefined : obtained.get(unknown)
          // A deleted image's blob the registry said it held, taken by a sweep before the PUT: counted, and
          // pushed again once as a client does (HEAD now 404: it uploads).
          if (attempt === 1 && how?.orphaned) {
            this.figures.reuseRaces[how.source]++
            continue
          }
          // Any other refusal is a failure; it says how the push had obtained the blob.
          if (unknown !== undefined)
            throw new Error(
              `${firstLine(e)} (attempt ${attempt}; the push had ${how ? `${describeSource(how.source)} it${how.orphaned ? ", a deleted image's blob" : ''}` : 'not pushed that blob'})`,
            )
          throw e
        }
      }
    } catch (e) {
      this.pushFailed(`push ${repository}:${tag ?? digest}`, e)
      if (key) this.state.bump(key)
      return undefined
    } finally {
      this.figures.pushes++
    }
    for (const layer of layers) {
      layer.repositories.add(repository)
      layer.orphaned = false
    }
    const image: Image = {repository, digest, tag, layers}
    this.state.images.push(image)
    if (key) {
      this.state.tags.set(key, image)
      this.state.bump(key)
    }
    return image
  }

  private async pushIndexOf(repository: string): Promise<void> {
    const children: Image[] = []
    for (let i = 0; i < 2; i++) {
      const child = await this.pushImage(repository, undefined)
      if (!child) return
      children.push(child)
    }
    const tag = `multi${this.counter++}`
    const key = this.state.tagKey(repository, tag)
    this.state.bump(key)
    try {
      const index = await pushIndex(
        this.url,
        repository,
        tag,
        children.map((c, n) => asPushedImage(c, n)),
      )
      const image: Image = {repository, digest: index.manifestDigest, tag, layers: [], children}
      this.state.images.push(image)
      this.state.tags.set(key, image)
      this.figures.indexes++
    } catch (e) {
      this.pushFailed(`push index ${repository}:${tag}`, e)
    } finally {
      this.figures.pushes++
      this.state.bump(key)
    }
  }

  /** Delete a manifest by digest (the registry drops its tags): its layers become orphans unless shared. */
  private async deleteOne(): Promise<void> {
    // Never a child of an index still present: that breaks the index, which is the pusher's doing, not a sweep's.
    const children = new Set(this.state.images.flatMap((i) => i.children ?? []))
    const candidates = this.state.images.filter((i) => i.tag !== 'base' && !children.has(i))
    await this.deleteImage(this.pick(candidates))
  }

  async deleteImage(image: Image): Promise<void> {
    const tagsOnIt = [...this.state.tags.entries()].filter(([, i]) => i === image).map(([k]) => k)
    for (const k of tagsOnIt) this.state.bump(k)
    try {
      await deleteManifest(this.url, image.repository, image.digest)
      this.figures.manifestDeletes++
    } catch (e) {
      this.fail(`delete ${image.repository}@${image.digest}: ${firstLine(e)}`)
      this.figures.failedPushes++
    }
    for (const k of tagsOnIt) {
      this.state.tags.delete(k)
      this.state.bump(k)
    }
    this.state.images.splice(this.state.images.indexOf(image), 1)
    const stillUsed = new Set(this.state.images.flatMap((i) => i.layers))
    for (const layer of image.layers) if (!stillUsed.has(layer)) layer.orphaned = true
  }

  private pushFailed(what: string, e: unknown): void {
    this.figures.failedPushes++
    const message = firstLine(e)
    if (/BLOB_UNKNOWN/.test(message)) this.figures.blobUnknown++
    this.fail(`${what}: ${message}`)
  }
}

function sourcesText(counts: Record<BlobSource, number>): string {
  return `${counts.head} by HEAD, ${counts.mount} mounted, ${counts.upload} uploaded`
}

function describeSource(source: BlobSource): string {
  return {head: 'found by HEAD', mount: 'mounted', upload: 'uploaded'}[source]
}

function asPushedImage(image: Image, n: number): PushedImage {
  return {
    repo: image.repository,
    manifestDigest: image.digest,
    manifestMediaType: MT.dockerManifest,
    manifestBytes: Buffer.alloc(0),
    size: 0,
    configDigest: '',
    configBytes: Buffer.alloc(0),
    layerDigests: [],
    blobs: [],
    blobBytes: 0,
    platform: {os: 'linux', architecture: `arch${n}`},
  }
}

// ---------------------------------------------------------------- the puller

interface PullOutcome {
  /**
   * gone: the manifest (or one of its blobs) is no longer served; tag-unreadable: the registry failed to
   * read the tag (5xx). Either is fine only if the tag moved during the pull: docker-registry 2.8 answered
   * 500 UNKNOWN to a GET of a tag it was re-pointing in this soak's first full run (a read of the tag's link
   * racing its rewrite), never to a tag that stayed put.
   */
  outcome: 'ok' | 'gone' | 'tag-unreadable' | 'failed'
  blobs: number
  blobUnknown: number
  reason?: string
}

async function pullLoop(
  url: string,
  state: RegistryState,
  random: () => number,
  figures: SoakFigures,
  fail: (line: string) => void,
  running: () => boolean,
): Promise<void> {
  while (running()) {
    const keys = [...state.tags.keys()]
    const key = keys[Math.floor(random() * keys.length)]!
    const image = state.tags.get(key)!
    const generation = state.generation.get(key)
    const pulled = await pullVerifiedOrError(url, image.repository, image.tag!)
    figures.pulls++
    figures.blobsVerified += pulled.blobs
    // An odd generation is a change in flight when the pull started (see RegistryState).
    const moved = state.generation.get(key) !== generation || (generation ?? 0) % 2 === 1
    if (pulled.outcome === 'ok') continue
    if ((pulled.outcome === 'gone' || pulled.outcome === 'tag-unreadable') && moved) {
      figures.pullsOfMovedTags++
      if (pulled.outcome === 'tag-unreadable') figures.tagReadErrors++
      continue
    }
    figures.failedPulls++
    figures.blobUnknown += pulled.blobUnknown
    fail(`pull ${key}${moved ? ' (moved meanwhile)' : ''}: ${pulled.reason}`)
  }
}

/** A pull whose connection failed (the registry closed it mid-body, or is gone) is a failed pull, not a crash. */
async function pullVerifiedOrError(url: string, repository: string, tag: string): Promise<PullOutcome> {
  try {
    return await pullVerified(url, repository, tag)
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? ` (${e.cause.message})` : ''
    await sleep(100)
    return {outcome: 'failed', blobs: 0, blobUnknown: 0, reason: `${firstLine(e)}${cause}`}
  }
}

/** GET the manifest by tag, then every child and blob, each checked against its digest (and size). */
export async function pullVerified(url: string, repository: string, tag: string): Promise<PullOutcome> {
  const result: PullOutcome = {outcome: 'ok', blobs: 0, blobUnknown: 0}
  const top = await getManifestChecked(url, repository, tag)
  if (top.kind !== 'ok') {
    const outcome = top.kind === 'gone' ? 'gone' : top.unknown ? 'failed' : 'tag-unreadable'
    return {...result, outcome, blobUnknown: top.unknown ? 1 : 0, reason: top.reason}
  }
  // A missing child or blob fails the pull only while the registry still serves the manifest that names it.
  const stillServed = async (): Promise<boolean> =>
    (await fetch(`${url}/v2/${repository}/manifests/${top.digest}`, {
      method: 'HEAD',
      headers: {Accept: MANIFEST_ACCEPT},
    }).then((r) => r.status)) === 200
  const images = Array.isArray(top.json.manifests) ? [] : [top.json]
  for (const child of (top.json.manifests ?? []) as Array<{digest: string}>) {
    const got = await getManifestChecked(url, repository, child.digest)
    if (got.kind === 'ok') images.push(got.json)
    else if (got.kind === 'failed' || (await stillServed()))
      return {...result, outcome: 'failed', blobUnknown: got.unknown ? 1 : 0, reason: `index child: ${got.reason}`}
    else return {...result, outcome: 'gone', reason: got.reason}
  }
  for (const image of images) {
    for (const d of [image.config, ...(image.layers ?? [])] as Array<{digest: string; size: number}>) {
      const response = await fetch(`${url}/v2/${repository}/blobs/${d.digest}`, {signal: AbortSignal.timeout(60_000)})
      const body = Buffer.from(await response.arrayBuffer())
      if (response.status !== 200) {
        const unknown = /BLOB_UNKNOWN/.test(body.toString('utf8'))
        const reason = `blob ${d.digest} of ${top.digest}: HTTP ${response.status} ${body.toString('utf8').slice(0, 120)}`
        if (await stillServed()) return {...result, outcome: 'failed', blobUnknown: unknown ? 1 : 0, reason}
        return {...result, outcome: 'gone', reason}
      }
      if (digestOf(body) !== d.digest || body.length !== d.size)
        return {...result, outcome: 'failed', reason: `blob ${d.digest} of ${top.digest}: content does not match`}
      result.blobs++
    }
  }
  return result
}

type ManifestOutcome =
  {kind: 'ok'; digest: string; json: any} | {kind: 'gone' | 'failed'; reason: string; unknown?: boolean}

async function getManifestChecked(url: string, repository: string, ref: string): Promise<ManifestOutcome> {
  const response = await fetch(`${url}/v2/${repository}/manifests/${ref}`, {
    headers: {Accept: MANIFEST_ACCEPT},
    signal: AbortSignal.timeout(60_000),
  })
  const body = Buffer.from(await response.arrayBuffer())
  const text = body.toString('utf8')
  if (response.status === 404 && /MANIFEST_UNKNOWN|NAME_UNKNOWN/.test(text))
    return {kind: 'gone', reason: `manifest ${ref}: HTTP 404 ${text.slice(0, 120)}`}
  if (response.status !== 200)
    return {
      kind: 'failed',
      reason: `manifest ${ref}: HTTP ${response.status} ${text.slice(0, 120)}`,
      unknown: /BLOB_UNKNOWN/.test(text),
    }
  const digest = digestOf(body)
  const served = response.headers.get('docker-content-digest')
  if ((served && served !== digest) || (ref.startsWith('sha256:') && ref !== digest))
    return {kind: 'failed', reason: `manifest ${ref}: served as ${served}, hashes to ${digest}`}
  return {kind: 'ok', digest, json: JSON.parse(text)}
}

// ---------------------------------------------------------------- the sweeper

async function sweepLoop(
  config: string,
  dir: string,
  figures: SoakFigures,
  fail: (line: string) => void,
  running: () => boolean,
): Promise<void> {
  const reports = join(dir, 'reports')
  await mkdir(reports, {recursive: true})
  while (running()) {
    const sweep = await runMeasured([
      'sweep',
      'blobs',
      '--config',
      config,
      '--quarantine',
      '--min-age',
      GRACE,
      '--force',
      '--max-deletes',
      '100000',
      '--report',
      join(reports, `sweep-${figures.sweeps}.jsonl`),
      '--json',
    ])
    figures.sweeps++
    figures.peakSweepRssMiB = Math.max(figures.peakSweepRssMiB, sweep.peakRssMiB)
    count(figures.sweepExits, sweep.run.code)
    if (sweep.run.code !== 0) fail(`sweep blobs exited ${sweep.run.code}: ${describeRun(sweep.run)}`)
    figures.quarantined += sweep.run.json?.acted?.quarantined ?? 0
    figures.movedBack += sweep.run.json?.postCheck?.movedBack ?? 0
    const purge = await runMeasured([
      'sweep',
      'purge',
      '--config',
      config,
      '--delete',
      '--hold-for',
      HOLD,
      '--force',
      '--json',
    ])
    figures.purges++
    figures.peakPurgeRssMiB = Math.max(figures.peakPurgeRssMiB, purge.peakRssMiB)
    count(figures.purgeExits, purge.run.code)
    if (purge.run.code !== 0) fail(`sweep purge exited ${purge.run.code}: ${describeRun(purge.run)}`)
    figures.purged += purge.run.json?.purged ?? 0
    figures.rescued += purge.run.json?.rescued ?? 0
  }
}

/** A CLI run with its peak resident memory (VmHWM, read from /proc while it runs). */
async function runMeasured(args: string[]): Promise<{run: CliRun; peakRssMiB: number}> {
  const {child, done} = startCli(args)
  let peakKiB = 0
  const sample = async (): Promise<void> => {
    try {
      const status = await readFile(`/proc/${child.pid}/status`, 'utf8')
      peakKiB = Math.max(peakKiB, Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0))
    } catch {
      // exited between two samples
    }
  }
  const timer = setInterval(() => void sample(), 100)
  try {
    return {run: await done, peakRssMiB: Math.round(peakKiB / 1024)}
  } finally {
    clearInterval(timer)
  }
}

function describeRun(run: CliRun): string {
  const error = run.json?.error?.message
  return String(error ?? (run.stderr || run.stdout).slice(-300)).replace(/\s+/g, ' ')
}

function count(tally: Record<string, number>, code: number | null): void {
  const key = String(code)
  tally[key] = (tally[key] ?? 0) + 1
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!.slice(0, 300)
}

function tallyText(tally: Record<string, number>): string {
  return (
    Object.entries(tally)
      .map(([code, n]) => `${n}× exit ${code}`)
      .join(', ') || 'none'
  )
}

// ---------------------------------------------------------------- the suite

export const runSoak: Suite = async ({seed, scale, log}: SuiteOptions) => {
  const started = Date.now()
  const durationMs = scale === 'full' ? 10 * 60_000 : 8_000
  const rows: ReliabilityRow[] = []
  const configurations = CONFIGURATIONS.filter((c) => scale === 'full' || c.storage === 'filesystem')
  for (const [n, configuration] of configurations.entries()) {
    let figures: SoakFigures | undefined
    const trials = await runTrials(seed + n, 1, async (trialSeed) => {
      log(`${configuration.storage}, ${configuration.cache}: soak of ${durationMs / 1000} s, seed ${trialSeed}`)
      figures = await soakOnce(configuration, trialSeed, durationMs, log)
      const f = figures
      log(
        `${configuration.storage}, ${configuration.cache}: ${f.events} events, ${f.pushes} pushes, ${f.pulls} pulls, ${f.blobsVerified} blobs verified, ` +
          `${f.sweeps} sweeps, ${f.quarantined} quarantined, ${f.purged} purged, ${total(f.reusedOrphans)} reuses of deleted ` +
          `images' blobs (${sourcesText(f.reusedOrphans)}), ${total(f.reuseRaces)} pushes refused for one swept between ` +
          `then and their PUT (${sourcesText(f.reuseRaces)}; pushed again), ` +
          `${f.failedPulls} failed pulls, ${f.blobUnknown} blob unknown, ${f.failedPushes} failed pushes; ` +
          `seconds: setup ${f.seconds.setup.toFixed(1)}, soak ${f.seconds.soak.toFixed(1)}, final pulls ${f.seconds.finalPulls.toFixed(1)}`,
      )
      const badExits = Object.keys(f.sweepExits)
        .concat(Object.keys(f.purgeExits))
        .filter((c) => c !== '0')
      if (f.failureCount > 0 || f.failedPulls > 0 || f.blobUnknown > 0 || f.failedPushes > 0 || badExits.length > 0)
        throw new Error(
          `${f.failureCount} failures: ${f.failedPulls} failed pulls, ${f.blobUnknown} blob unknown, ${f.failedPushes} failed pushes, ` +
            `sweep ${tallyText(f.sweepExits)}, purge ${tallyText(f.purgeExits)}; first: ${f.failures[0] ?? '-'}`,
        )
    })
    const f = figures
    rows.push({
      case: `${configuration.case}: ${durationMs / 60_000 >= 1 ? `${durationMs / 60_000} min` : `${durationMs / 1000} s`} of pushes, deletes, verified pulls and sweeps`,
      command: `sweep blobs --quarantine --min-age ${GRACE} --force --max-deletes 100000; sweep purge --delete --hold-for ${HOLD} --force`,
      ...trials,
      criterion:
        'no pull fails (a tag moved or deleted during its pull is not a failure), no "blob unknown" on a pull or a push, no push refused, every sweep and purge exits 0, and every tag left at the end pulls in full; the one exception, counted: a push refused for a deleted image\'s blob the registry had said it held (by HEAD, a mount, or an upload of content it stored) and a sweep took before the manifest PUT, which must then succeed when pushed again',
      figures: f
        ? {
            events: f.events,
            pushes: f.pushes,
            're-tags': f.retags,
            indexes: f.indexes,
            'manifests deleted': f.manifestDeletes,
            "deleted images' blobs reused by a push (found by HEAD, mounted, uploaded though stored)": sourcesText(
              f.reusedOrphans,
            ),
            'of which refused, the blob swept before the manifest PUT, and pushed again': sourcesText(f.reuseRaces),
            pulls: f.pulls,
            'pulls of a tag moved meanwhile': f.pullsOfMovedTags,
            'of which the registry answered 500 reading the tag it was rewriting': f.tagReadErrors,
            'blobs verified': f.blobsVerified,
            sweeps: f.sweeps,
            purges: f.purges,
            'blobs quarantined': f.quarantined,
            'blobs purged': f.purged,
            'blobs rescued from quarantine': f.rescued,
            'blobs moved back by the post-check': f.movedBack,
            'failed pulls': f.failedPulls,
            'failed pushes': f.failedPushes,
            'blob unknown': f.blobUnknown,
            'sweep exits': tallyText(f.sweepExits),
            'purge exits': tallyText(f.purgeExits),
            'peak RSS of a sweep (MiB)': f.peakSweepRssMiB,
            'peak RSS of a purge (MiB)': f.peakPurgeRssMiB,
          }
        : undefined,
    })
  }
  return {
    suite: 'soak',
    title: 'Soak: sweeping a live registry',
    description:
      'For each configuration, one docker-registry 2.8 takes pushes and deletes while two pullers pull random ' +
      'current tags and check every blob against its digest, and regops runs `sweep blobs --quarantine` then ' +
      '`sweep purge --delete` in a loop through its CLI, with a grace period and hold time of seconds, as an ' +
      'operator runs them against a live registry (`registry.cache` set to what the registry caches in). The ' +
      'pusher pushes as a client does (HEAD each blob first, skip it when present, else mount or upload), ' +
      're-tags, pushes indexes, deletes manifests now and then, and reuses old layers, most often those of ' +
      'images it deleted: orphans old enough to sweep that a push finds still present. A pull of a tag moved or ' +
      'deleted during the pull is not a failure (the registry answers 404, or 500 while it rewrites the tag); a ' +
      'missing or mismatched blob of a manifest the registry still serves is. One soak is one trial; ' +
      'events count pushes, deletes, pulls, blobs verified, sweeps, purges and blobs quarantined or purged. ' +
      '`npm test` soaks the two filesystem rows for seconds each. The anchor: Quay\'s soak of its garbage collector logged 40 client-visible "manifest blob unknown" ' +
      'errors in about 104k events (quay/quay#6318). The goal here is zero, with one exception no sweep can prevent: ' +
      "a push told a deleted image's blob is there (HEAD found it, a mount linked it, or an upload of content " +
      'already stored was accepted without writing it), which a sweep took after its re-check and before the ' +
      "push's manifest PUT, is refused (a HEAD leaves no trace, and a mount's or an upload's new link is seen only " +
      'if it is written before the re-check reads that repository; the sweep evicts the cached descriptor of each ' +
      'blob it takes, so the PUT looks in storage). It is counted, and pushed again as a client would, which must ' +
      'succeed.',
    seed,
    scale,
    seconds: (Date.now() - started) / 1000,
    rows,
  }
}
