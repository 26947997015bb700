import {RefusedError, UsageError} from '../errors.js'
import {untrustedCertificateHint, type TlsSettings} from '../config/tls.js'
import {ArrivalSchedule} from './arrivals.js'
import {ImagePicker, type ImageChoice} from './image-mix.js'
import {StageFailure, pullImage, type Platform} from './pull-flow.js'
import {PullError, RegistryClient, isLoopback} from './registry-client.js'
import {emptyCounts, stagesToReport, type PullReport} from './report.js'
import {newStageSet} from './stage-stats.js'
import {evaluateThresholds, type Threshold} from './thresholds.js'
import {compileWasmBaselineOnly, keepYoungGenerationSmall} from '../v8-flags.js'

/** How long the arrival clock starts overdue pulls before it lets the event loop read the answers in. */
const MAX_BATCH_MS = 5

export type LoadModel =
  | {
      kind: 'open'
      schedule: ArrivalSchedule
      maxInFlight: number
      rate?: number
      stages?: Array<{durationMs: number; target: number}>
    }
  | {kind: 'closed'; vus: number; durationMs?: number}

export interface PullLoadtestOptions {
  registry: {url: string; username?: string; password?: string} & TlsSettings
  /** the images, or how many to take from the registry's catalog */
  images: ImageChoice[] | {fromCatalog: number}
  zipf: number
  model: LoadModel
  maxPulls?: number
  manifestsOnly: boolean
  verify: boolean
  parallelism: number
  platform: Platform
  pingEveryPull: boolean
  thresholds: Threshold[]
  abortOnFail: boolean
  timeoutMs: number
  maxRedirects: number
  /** connections per host; pulls over it wait for one, and the wait counts in their latency (default: one per request in flight) */
  connections?: number
  /** how long pulls still running at the end may take to finish before they are cut off */
  graceMs: number
  loopbackOnly: boolean
  /** called once a second with the figures so far (live progress) */
  onProgress?: (progress: LoadProgress) => void
  signal?: AbortSignal
}

export interface LoadProgress {
  elapsedMs: number
  started: number
  completed: number
  failed: number
  dropped: number
  inFlight: number
  pullP99Ms: number
}

/**
 * Runs a pull load test and returns its report. Open model: pulls start on the schedule's clock whether
 * or not earlier ones have finished (up to --max-in-flight; starts over the cap are dropped and counted),
 * and each pull's latency runs from when it was meant to start, so a stall cannot hide by slowing the
 * load down. Closed model (--vus): each virtual user starts its next pull when its last one ends, which
 * is what most load tools do and what under-reports a stall; it is here to show the difference.
 */
export async function runPullLoadtest(options: PullLoadtestOptions): Promise<PullReport> {
  // A flat memory graph over a long run, and no compile spike at the first connection.
  keepYoungGenerationSmall()
  compileWasmBaselineOnly()
  const registryUrl = new URL(options.registry.url)
  if (options.loopbackOnly && !isLoopback(registryUrl.hostname)) {
    throw new RefusedError(`registry ${registryUrl.origin} is outside loopback and REGOPS_LOADTEST_LOOPBACK_ONLY=1`)
  }
  const model = options.model
  const stages = newStageSet()
  const pulls = emptyCounts()
  const errors: Record<string, number> = {}
  const cutOff = new AbortController()
  const stop = new AbortController()
  const client = new RegistryClient({
    url: options.registry.url,
    username: options.registry.username,
    password: options.registry.password,
    timeoutMs: options.timeoutMs,
    maxRedirects: options.maxRedirects,
    loopbackOnly: options.loopbackOnly,
    connections:
      options.connections ??
      (model.kind === 'open' ? model.maxInFlight * options.parallelism : model.vus * options.parallelism),
    signal: cutOff.signal,
    tls: {caFile: options.registry.caFile, insecureSkipTlsVerify: options.registry.insecureSkipTlsVerify},
  })
  // One wake-up timer for the arrival clock, cut short when the run stops (--abort-on-fail, a signal).
  let wake: (() => void) | undefined
  let wakeTimer: NodeJS.Timeout | undefined
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      wake = resolve
      wakeTimer = setTimeout(resolve, ms)
    })
  const onStop = () => {
    clearTimeout(wakeTimer)
    wake?.()
  }
  stop.signal.addEventListener('abort', onStop, {once: true})
  const onOuterAbort = () => stop.abort()
  options.signal?.addEventListener('abort', onOuterAbort, {once: true})
  let inFlight = 0
  // Resolved when the last pull in flight ends: how the end of the run waits for them without a promise per pull.
  let idle: {promise: Promise<void>; resolve: () => void} | undefined
  const whenIdle = (): Promise<void> => {
    if (inFlight === 0) return Promise.resolve()
    if (!idle) {
      let resolve!: () => void
      const promise = new Promise<void>((r) => (resolve = r))
      idle = {promise, resolve}
    }
    return idle.promise
  }
  let maxStartLagMs = 0
  // Starts made before the scheduled span ended: a host that cannot keep up starts late, and that shows here.
  let startedInSpan = 0
  let abortedBy: string | undefined
  let untrusted: string | undefined
  let internalError: unknown
  const startedAt = new Date()
  const t0 = performance.now()

  try {
    const images = Array.isArray(options.images)
      ? options.images
      : await catalogImages(client, options.images.fromCatalog, stages)
    const picker = new ImagePicker(images, options.zipf)

    const onePull = async (intendedStart: number) => {
      pulls.started++
      inFlight++
      try {
        await pullImage(client, picker.pick(), options, stages)
        pulls.succeeded++
        pulls.completed++
        stages.pull.recordLatency(performance.now() - intendedStart)
      } catch (error) {
        const failure = error instanceof StageFailure ? error : undefined
        const kind = failure?.failure.kind ?? (error instanceof PullError ? error.kind : 'internal')
        if (kind === 'cut_off') {
          pulls.cutOff++
        } else {
          pulls.failed++
          pulls.completed++
          errors[kind] = (errors[kind] ?? 0) + 1
          if (failure) stages[failure.stage].recordError(kind)
          stages.pull.recordError(kind)
          // A failed pull's time counts too: a registry that fails slowly must not look fast.
          stages.pull.recordLatency(performance.now() - intendedStart)
          // A bug, not the registry's doing: the run finishes its pulls, then fails with it (exit 70).
          if (kind === 'internal') internalError ??= error
          // An untrusted certificate fails every pull alike: stop at once and say so, rather than load for the whole run.
          if (kind === 'tls_untrusted' && !untrusted) {
            untrusted = (failure?.failure ?? (error as Error)).message
            stop.abort()
          }
        }
      } finally {
        inFlight--
        if (inFlight === 0 && idle) {
          idle.resolve()
          idle = undefined
        }
      }
    }

    const checkThresholds = () => {
      if (!options.abortOnFail || options.thresholds.length === 0) return
      const failed = evaluateThresholds(options.thresholds, {stages, pulls}).find((t) => !t.ok)
      if (failed && !abortedBy) {
        abortedBy = failed.expr
        stop.abort()
      }
    }
    const ticker = setInterval(() => {
      checkThresholds()
      options.onProgress?.({
        elapsedMs: performance.now() - t0,
        started: pulls.started,
        completed: pulls.completed,
        failed: pulls.failed,
        dropped: pulls.dropped,
        inFlight,
        pullP99Ms: stages.pull.percentileMs(99),
      })
    }, 1000)

    try {
      if (model.kind === 'open') {
        // Each wake-up starts every pull whose time has come, then sleeps until the next one is due: a start is
        // never early, and one timer serves however many starts fall into a millisecond.
        const schedule = model.schedule
        const spanEnd = t0 + schedule.durationMs
        let offset = schedule.offsetOf(0)
        let batchStarted = performance.now()
        for (let k = 0; offset !== undefined && !stop.signal.aborted;) {
          if (options.maxPulls !== undefined && k >= options.maxPulls) break
          const intended = t0 + offset
          const now = performance.now()
          if (intended > now) {
            await pause(Math.ceil(intended - now))
            batchStarted = performance.now()
            continue
          }
          if (now - batchStarted > MAX_BATCH_MS) {
            // Behind schedule: let the answers already in be read (and timed) before starting more.
            await new Promise((resolve) => setImmediate(resolve))
            batchStarted = performance.now()
            continue
          }
          pulls.scheduled++
          if (now - intended > maxStartLagMs) maxStartLagMs = now - intended
          if (inFlight >= model.maxInFlight) {
            pulls.dropped++
          } else {
            if (now <= spanEnd) startedInSpan++
            void onePull(intended)
          }
          offset = schedule.offsetOf(++k)
        }
      } else {
        const deadline = model.durationMs === undefined ? Infinity : t0 + model.durationMs
        let claimed = 0
        const user = async () => {
          while (!stop.signal.aborted && performance.now() < deadline) {
            if (options.maxPulls !== undefined && claimed >= options.maxPulls) return
            claimed++
            pulls.scheduled++
            await onePull(performance.now())
          }
        }
        const users = Promise.all(Array.from({length: model.vus}, user)).then(() => undefined)
        const remaining = deadline - performance.now()
        if (!stop.signal.aborted)
          await Promise.race([users, pause(Number.isFinite(remaining) ? remaining : 2 ** 31 - 1)])
        stop.abort()
      }
      // Let pulls in flight finish within the grace period; abort the rest (cut off, not errors).
      if (!abortedBy && inFlight > 0) {
        let graceTimer: NodeJS.Timeout | undefined
        await Promise.race([
          whenIdle(),
          new Promise<void>((resolve) => (graceTimer = setTimeout(resolve, options.graceMs))),
        ])
        clearTimeout(graceTimer)
      }
      cutOff.abort()
      await whenIdle()
    } finally {
      clearInterval(ticker)
      cutOff.abort()
    }
    if (internalError !== undefined) throw internalError
    if (untrusted)
      throw new UsageError(`registry ${registryUrl.origin}: ${untrusted}`, {
        code: 'TLS_UNTRUSTED',
        hint: `${untrustedCertificateHint('registry')}; --insecure does the same for one run`,
      })
    const elapsedMs = performance.now() - t0
    const thresholds = evaluateThresholds(options.thresholds, {stages, pulls})
    const spanMs = model.kind === 'open' ? Math.min(elapsedMs, model.schedule.durationMs) : elapsedMs
    const startedByEnd = model.kind === 'open' ? startedInSpan : pulls.started
    return {
      kind: 'loadtest-pull',
      version: 1,
      registry: registryUrl.origin + registryUrl.pathname.replace(/\/+$/, ''),
      model: model.kind,
      settings: {
        ...(model.kind === 'open'
          ? {
              rate: model.rate,
              stages: model.stages,
              maxInFlight: model.maxInFlight,
              durationMs: model.schedule.durationMs,
            }
          : {vus: model.vus, durationMs: model.durationMs}),
        maxPulls: options.maxPulls,
        manifestsOnly: options.manifestsOnly,
        verify: options.verify,
        parallelism: options.parallelism,
        platform: [options.platform.os, options.platform.architecture, options.platform.variant]
          .filter(Boolean)
          .join('/'),
        images: picker.images.map((i) => ({
          image: `${i.repository}${i.reference.includes(':') ? '@' : ':'}${i.reference}`,
          weight: i.weight,
        })),
        zipf: options.zipf,
      },
      startedAt: startedAt.toISOString(),
      elapsedMs: Math.round(elapsedMs),
      pulls,
      startedInSpan: startedByEnd,
      achievedRate: spanMs > 0 ? Math.round((startedByEnd / spanMs) * 1000 * 100) / 100 : 0,
      maxStartLagMs: Math.round(maxStartLagMs * 10) / 10,
      tokenFetches: client.tokenFetches,
      errors,
      stages: stagesToReport(stages),
      thresholds,
      breached: thresholds.filter((t) => !t.ok).map((t) => t.expr),
      abortedBy,
    }
  } finally {
    options.signal?.removeEventListener('abort', onOuterAbort)
    stop.signal.removeEventListener('abort', onStop)
    clearTimeout(wakeTimer)
    cutOff.abort()
    await client.close()
  }
}

/** The first `count` images of the registry's catalog: each repository's tags in order, repositories in order. */
async function catalogImages(
  client: RegistryClient,
  count: number,
  stages: ReturnType<typeof newStageSet>,
): Promise<ImageChoice[]> {
  const fetchStages = {total: stages.manifest, redirect: stages.redirect, token: stages.token}
  const readJson = async (path: string, scope: string) => {
    if (!client.pinged) await client.ping(stages.ping)
    const result = await client.get(path, {scope, stages: fetchStages, keepBody: true})
    try {
      return JSON.parse(result.body!.toString('utf8')) as Record<string, unknown>
    } catch {
      throw new PullError('bad_json', `${path} did not answer JSON`)
    }
  }
  const images: ImageChoice[] = []
  try {
    const catalog = await readJson(`/v2/_catalog?n=${Math.max(count, 100)}`, 'registry:catalog:*')
    for (const repository of (catalog.repositories as string[] | undefined) ?? []) {
      if (images.length >= count) break
      const tags = await readJson(`/v2/${repository}/tags/list`, `repository:${repository}:pull`)
      for (const tag of ((tags.tags as string[] | null | undefined) ?? []).sort()) {
        if (images.length >= count) break
        images.push({repository, reference: tag, weight: 1})
      }
    }
  } catch (error) {
    if (error instanceof PullError)
      throw new RefusedError(`--from-catalog: cannot read the registry's catalog (${error.message})`)
    throw error
  }
  // The catalog's reads are not part of the load: start the figures clean.
  Object.assign(stages, newStageSet())
  return images
}
