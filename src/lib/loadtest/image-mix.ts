import {readFileSync} from 'node:fs'
import {parse as parseYaml} from 'yaml'
import {parseDuration} from '../config/duration.js'
import {UsageError} from '../errors.js'
import type {RateStage} from './arrivals.js'

/** An image to pull: repository and tag (or digest), with its share of the pulls. */
export interface ImageChoice {
  repository: string
  reference: string
  weight: number
}

// The distribution spec's repository grammar, and a tag or a digest after it.
const REPOSITORY = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/

/** Parses `repo:tag`, `repo@sha256:…`, either with `=WEIGHT`; the error says which image and why. */
export function parseImage(text: string, where = '--image'): ImageChoice {
  const bad = (why: string) =>
    new UsageError(`${where} '${text}': ${why}`, {
      hint: 'write REPOSITORY:TAG or REPOSITORY@DIGEST, optionally =WEIGHT (e.g. library/alpine:3.19=5)',
    })
  let ref = text.trim()
  let weight = 1
  const eq = ref.lastIndexOf('=')
  if (eq > 0 && !ref.slice(eq).includes(':')) {
    weight = Number(ref.slice(eq + 1))
    if (!(weight > 0) || !Number.isFinite(weight)) throw bad('the weight must be a positive number')
    ref = ref.slice(0, eq)
  }
  let repository: string
  let reference: string
  const at = ref.indexOf('@')
  if (at >= 0) {
    repository = ref.slice(0, at)
    reference = ref.slice(at + 1)
    if (!DIGEST.test(reference)) throw bad(`'${reference}' is not a digest`)
  } else {
    const colon = ref.lastIndexOf(':')
    if (colon < 0 || ref.slice(colon).includes('/')) throw bad('a tag or digest is required')
    repository = ref.slice(0, colon)
    reference = ref.slice(colon + 1)
    if (!TAG.test(reference)) throw bad(`'${reference}' is not a valid tag`)
  }
  if (!REPOSITORY.test(repository)) throw bad(`'${repository}' is not a valid repository name`)
  return {repository, reference, weight}
}

/**
 * Chooses images by weight. With a Zipf exponent, the image of rank k (in the order given) gets a further
 * factor 1/k^s: a few images take most pulls, as on a real registry where base images dominate.
 */
export class ImagePicker {
  private readonly cumulative: number[] = []
  private readonly total: number

  constructor(
    readonly images: readonly ImageChoice[],
    zipf = 0,
    private readonly random: () => number = Math.random,
  ) {
    if (images.length === 0)
      throw new UsageError('no image to pull: give --image, --scenario with images, or --from-catalog')
    let sum = 0
    images.forEach((image, i) => {
      sum += image.weight / Math.pow(i + 1, zipf)
      this.cumulative.push(sum)
    })
    this.total = sum
  }

  pick(): ImageChoice {
    const x = this.random() * this.total
    let lo = 0
    let hi = this.cumulative.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (this.cumulative[mid]! > x) hi = mid
      else lo = mid + 1
    }
    return this.images[lo]!
  }
}

/** A scenario file: the images, a ramping arrival rate, thresholds; flags override what they also set. */
export interface Scenario {
  images: ImageChoice[]
  zipf?: number
  startRate?: number
  stages?: RateStage[]
  thresholds: string[]
}

export function loadScenario(file: string): Scenario {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (error) {
    throw new UsageError(`--scenario ${file}: cannot read (${(error as Error).message})`)
  }
  let data: unknown
  try {
    data = parseYaml(text)
  } catch (error) {
    throw new UsageError(`--scenario ${file}: not YAML (${(error as Error).message})`)
  }
  return parseScenario(data, file)
}

export function parseScenario(data: unknown, file: string): Scenario {
  const field = (name: string) => `--scenario ${file}: ${name}`
  if (!data || typeof data !== 'object' || Array.isArray(data))
    throw new UsageError(`--scenario ${file}: must be a mapping`)
  const doc = data as Record<string, unknown>
  const known = new Set(['images', 'zipf', 'startRate', 'stages', 'thresholds'])
  for (const key of Object.keys(doc)) {
    if (!known.has(key)) throw new UsageError(`${field(key)}: unknown key (expected one of: ${[...known].join(', ')})`)
  }
  const images = asArray(doc.images, field('images')).map((entry, i) => {
    const where = field(`images[${i}]`)
    if (typeof entry === 'string') return parseImage(entry, where)
    if (entry && typeof entry === 'object' && typeof (entry as {ref?: unknown}).ref === 'string') {
      const {ref, weight} = entry as {ref: string; weight?: unknown}
      const image = parseImage(ref, where)
      if (weight !== undefined) {
        if (typeof weight !== 'number' || !(weight > 0))
          throw new UsageError(`${where}.weight: must be a positive number`)
        image.weight = weight
      }
      return image
    }
    throw new UsageError(`${where}: expected 'repo:tag' or {ref, weight}`)
  })
  const zipf = optionalNumber(doc.zipf, field('zipf'))
  const startRate = optionalNumber(doc.startRate, field('startRate'))
  const stages =
    doc.stages === undefined
      ? undefined
      : asArray(doc.stages, field('stages')).map((entry, i) => {
          const where = field(`stages[${i}]`)
          if (!entry || typeof entry !== 'object') throw new UsageError(`${where}: expected {duration, target}`)
          const {duration, target} = entry as {duration?: unknown; target?: unknown}
          const durationMs = parseDuration(String(duration ?? ''), `${where}.duration`)
          if (durationMs <= 0) throw new UsageError(`${where}.duration: must be positive`)
          const rate = optionalNumber(target, `${where}.target`)
          if (rate === undefined)
            throw new UsageError(`${where}.target: the pulls/s to reach by the end of the stage is required`)
          return {durationMs, target: rate}
        })
  const thresholds = asArray(doc.thresholds ?? [], field('thresholds')).map((t, i) => {
    if (typeof t !== 'string')
      throw new UsageError(`${field(`thresholds[${i}]`)}: must be a string like 'manifest.p99<250ms'`)
    return t
  })
  return {images, zipf, startRate, stages, thresholds}
}

function asArray(value: unknown, where: string): unknown[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw new UsageError(`${where}: must be a list`)
  return value
}

function optionalNumber(value: unknown, where: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    throw new UsageError(`${where}: must be a number >= 0`)
  return value
}
