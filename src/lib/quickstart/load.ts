import type {StorageDriver} from '../storage/driver.js'
import {planLoad} from '../loadtest/plan.js'
import {parsePlatform} from '../loadtest/pull-flow.js'
import {runPullLoadtest} from '../loadtest/run-pull.js'
import {serveSampleRegistry} from './sample-server.js'

export interface QuickstartLoad {
  /** the tags pulled, each as often as the others */
  images: string[]
  rate: number
  durationMs: number
  started: number
  succeeded: number
  /** pulls that ended in an error */
  failed: number
  /** starts skipped because 16 pulls were still running, and pulls still running at the end: a slow host, not errors */
  dropped: number
  cutOff: number
  errors: Record<string, number>
  /** whole pulls (manifest, config, every layer), from their intended start */
  pullP50Ms: number
  pullP99Ms: number
  bytes: number
}

/** Pulls per second and seconds of load: enough to see the stages' figures, bounded to a few seconds. */
const RATE = 20
const DURATION_MS = 2000

/**
 * A short pull load test against `driver`'s layout, served on loopback (no registry needs installing):
 * every pull as a client makes it (manifest by tag with the Accept list, the platform's child of an
 * index, config, layers three at a time), each body re-hashed against its digest.
 */
export async function pullSampleImages(
  driver: StorageDriver,
  images: Array<{repository: string; tag: string}>,
  signal?: AbortSignal,
): Promise<QuickstartLoad> {
  const server = await serveSampleRegistry(driver)
  try {
    const {model, maxPulls} = planLoad({rate: RATE, durationMs: DURATION_MS, maxInFlight: 16})
    const report = await runPullLoadtest({
      registry: {url: server.url},
      images: images.map((i) => ({repository: i.repository, reference: i.tag, weight: 1})),
      zipf: 0,
      model,
      maxPulls,
      manifestsOnly: false,
      verify: true,
      parallelism: 3,
      platform: parsePlatform('linux/amd64'),
      pingEveryPull: false,
      thresholds: [],
      abortOnFail: false,
      timeoutMs: 30_000,
      maxRedirects: 3,
      graceMs: 5000,
      loopbackOnly: true,
      signal,
    })
    return {
      images: images.map((i) => `${i.repository}:${i.tag}`),
      rate: RATE,
      durationMs: DURATION_MS,
      started: report.pulls.started,
      succeeded: report.pulls.succeeded,
      failed: report.pulls.failed,
      dropped: report.pulls.dropped,
      cutOff: report.pulls.cutOff,
      errors: report.errors,
      pullP50Ms: report.stages.pull.p50Ms,
      pullP99Ms: report.stages.pull.p99Ms,
      bytes:
        (report.stages.layer?.bytes ?? 0) + (report.stages.config?.bytes ?? 0) + (report.stages.manifest?.bytes ?? 0),
    }
  } finally {
    await server.close()
  }
}
