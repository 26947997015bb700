import {UsageError} from '../errors.js'
import {PullError, MANIFEST_ACCEPT, type FetchStages, type RegistryClient} from './registry-client.js'
import type {StageName, StageSet} from './stage-stats.js'
import type {ImageChoice} from './image-mix.js'

export interface Platform {
  os: string
  architecture: string
  variant?: string
}

export interface PullFlowOptions {
  manifestsOnly: boolean
  /** layers fetched at once, as a client does (Docker and containerd: 3) */
  parallelism: number
  platform: Platform
  /** re-hash every body against its digest */
  verify: boolean
  /** GET /v2/ before every pull (Docker) or only once per run (containerd never pings) */
  pingEveryPull: boolean
}

interface Descriptor {
  digest: string
  size?: number
  mediaType?: string
  platform?: Partial<Platform>
}

/** A pull failed at a stage; the stage is where its error is counted. */
export class StageFailure extends Error {
  constructor(
    readonly stage: StageName,
    readonly failure: PullError,
  ) {
    super(failure.message)
  }
}

/** A pull's failure, counted at the stage it happened in (a token the realm refused counts at the token stage). */
function failedAt(stage: StageName, error: unknown): unknown {
  if (error instanceof StageFailure) return error
  if (error instanceof PullError) return new StageFailure(error.kind === 'auth' ? 'token' : stage, error)
  return error
}

/**
 * One pull of one image, request by request as a client makes them. Throws StageFailure naming the stage
 * that failed and the kind of failure; every figure is recorded in `stages` as it happens.
 */
export async function pullImage(
  client: RegistryClient,
  image: ImageChoice,
  options: PullFlowOptions,
  stages: StageSet,
): Promise<void> {
  let stage: StageName = 'ping'
  try {
    if (options.pingEveryPull || !client.pinged) await client.ping(stages.ping)
    stage = 'manifest'
    const scope = `repository:${image.repository}:pull`
    let manifest = await fetchManifest(client, image.repository, image.reference, scope, options.verify, stages)
    if (manifest.kind === 'index') {
      const child = pickPlatform(manifest.children, options.platform)
      if (!child) {
        throw new PullError(
          'no_platform',
          `${image.repository}:${image.reference} has no ${platformText(options.platform)} manifest`,
        )
      }
      manifest = await fetchManifest(client, image.repository, child.digest, scope, options.verify, stages)
      if (manifest.kind === 'index')
        throw new PullError('bad_manifest', `index ${child.digest} points at another index`)
    }
    if (options.manifestsOnly) return

    const blobStages = (name: 'config' | 'layer') => ({
      total: stages[name],
      firstByte: name === 'layer' ? stages.layer_first_byte : undefined,
      redirect: stages.redirect,
      token: stages.token,
    })
    const fetchBlob = async (fetchStages: FetchStages, blob: Descriptor) => {
      const result = await client.get(`/v2/${image.repository}/blobs/${blob.digest}`, {
        scope,
        stages: fetchStages,
        hash: options.verify,
      })
      if (blob.size !== undefined && result.bytes !== blob.size) {
        throw new PullError('size_mismatch', `${blob.digest}: ${result.bytes} bytes, the manifest says ${blob.size}`)
      }
      if (options.verify && result.digest !== blob.digest)
        throw new PullError('digest_mismatch', `${blob.digest}: the body hashes to ${result.digest}`)
    }
    stage = 'config'
    await fetchBlob(blobStages('config'), manifest.config)

    // Layers at the client's parallelism: each worker takes the next layer until none is left.
    stage = 'layer'
    const layerStages = blobStages('layer')
    const layers = manifest.layers
    let next = 0
    const worker = async () => {
      while (next < layers.length) await fetchBlob(layerStages, layers[next++]!)
    }
    await Promise.all(Array.from({length: Math.min(options.parallelism, layers.length)}, worker))
  } catch (error) {
    throw failedAt(stage, error)
  }
}

type Manifest = {kind: 'index'; children: Descriptor[]} | {kind: 'image'; config: Descriptor; layers: Descriptor[]}

async function fetchManifest(
  client: RegistryClient,
  repository: string,
  reference: string,
  scope: string,
  verify: boolean,
  stages: StageSet,
): Promise<Manifest> {
  const byDigest = reference.includes(':')
  const result = await client.get(`/v2/${repository}/manifests/${reference}`, {
    scope,
    accept: MANIFEST_ACCEPT,
    stages: {total: stages.manifest, redirect: stages.redirect, token: stages.token},
    keepBody: true,
    hash: verify || byDigest,
  })
  if (byDigest && result.digest !== reference)
    throw new PullError('digest_mismatch', `manifest ${reference}: the body hashes to ${result.digest}`)
  if (verify && result.dockerContentDigest && result.dockerContentDigest !== result.digest) {
    throw new PullError(
      'digest_mismatch',
      `manifest ${repository}:${reference}: Docker-Content-Digest ${result.dockerContentDigest}, the body hashes to ${result.digest}`,
    )
  }
  return parseManifest(result.body!, `${repository}:${reference}`)
}

export function parseManifest(body: Buffer, where: string): Manifest {
  let json: Record<string, unknown>
  try {
    json = JSON.parse(body.toString('utf8'))
  } catch {
    throw new PullError('bad_manifest', `manifest ${where} is not JSON`)
  }
  if (!json || typeof json !== 'object') throw new PullError('bad_manifest', `manifest ${where} is not a JSON object`)
  const isDescriptor = (d: unknown): d is Descriptor =>
    !!d && typeof d === 'object' && typeof (d as Descriptor).digest === 'string'
  if (Array.isArray(json.manifests)) {
    if (!json.manifests.every(isDescriptor))
      throw new PullError('bad_manifest', `index ${where} has a child without a digest`)
    return {kind: 'index', children: json.manifests}
  }
  const layers = json.layers
  if (isDescriptor(json.config) && Array.isArray(layers) && layers.every(isDescriptor)) {
    return {kind: 'image', config: json.config, layers}
  }
  throw new PullError('bad_manifest', `manifest ${where} has neither manifests[] nor config and layers[]`)
}

export function pickPlatform(children: Descriptor[], want: Platform): Descriptor | undefined {
  return children.find(
    (c) =>
      c.platform?.os === want.os &&
      c.platform?.architecture === want.architecture &&
      (!want.variant || c.platform?.variant === want.variant),
  )
}

export function parsePlatform(text: string): Platform {
  const [os, architecture, variant] = text.split('/')
  if (!os || !architecture) throw new UsageError(`--platform '${text}': expected OS/ARCH[/VARIANT], e.g. linux/amd64`)
  return {os, architecture, variant}
}

function platformText(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/')
}
