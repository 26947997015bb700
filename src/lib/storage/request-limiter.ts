import {setTimeout as sleep} from 'node:timers/promises'

/** How a driver's requests are paced: an adaptive limit by default, or one fixed in-flight count. */
export interface RequestRates {
  /** a fixed number of requests in flight (--concurrency): no adaptation */
  fixed?: number
  /** the ceiling of the adaptive limit (--max-concurrency) */
  max: number
  /** requests started per second at most (--tps-limit): a token bucket; undefined = no cap */
  tps?: number
}

/** What one attempt's error says about the server: slow down, try again, or give up. */
export type ErrorClass = 'throttle' | 'transient' | 'final'

/** What the limiter measured, for logs and benches. */
export interface LimiterStats {
  limit: number
  requests: number
  retries: number
  throttled: number
  /** the limit's lowest and highest value since the start (adaptive) */
  lowest: number
  highest: number
}

/** Where the adaptive limit starts: low enough for a weak server; slow start doubles it each window. */
const INITIAL_LIMIT = 8
/**
 * A window's median round trip this much above the best window median means requests queue at the
 * server: the limit shrinks. Medians, not minimums: on a loaded 2-core host a loopback server answered
 * at a p50 of 8.7 ms and a minimum of 5.1 ms with one request in flight, so a single fast answer is
 * no baseline. On radosgw sharing those cores, 64 in flight ran three times slower than 8.
 */
const LATENCY_TOLERANCE = 2
/** A throttling answer (503 SlowDown, 429, a timeout) cuts the limit by this factor, at most once a window. */
const THROTTLE_BACKOFF = 0.75
/** The best window median creeps up this much per window, so a server that became slower is re-learned. */
const BASELINE_DRIFT = 1.005
/** In slow start, a window median this much above the previous window's ends it. */
const SLOW_START_EXIT = 1.5
/** Samples of one kind a window needs before its median counts. */
const MIN_SAMPLES = 5
const RETRY_BASE_MS = 100
const RETRY_CAP_MS = 20_000

/** Per kind of request (a LIST takes ten times a GET): this window's round trips and the best window median. */
class RoundTrips {
  baseline = Infinity
  window: number[] = []
  private previous: number | undefined
  /** the first window pays for new connections and a cold process: it sets no baseline */
  private warm = false

  /**
   * Closes the window: its median against the baseline (1 = as fast as the best) and against the
   * previous window's; undefined with too few samples.
   */
  close(): {slower: number; growth: number} | undefined {
    const samples = this.window
    this.window = []
    if (samples.length < MIN_SAMPLES) return undefined
    samples.sort((x, y) => x - y)
    const median = samples[samples.length >> 1]
    const growth = this.previous === undefined ? 1 : median / this.previous
    this.previous = median
    if (!this.warm) {
      this.warm = true
      return undefined
    }
    this.baseline = Math.min(this.baseline * BASELINE_DRIFT, median)
    return {slower: median / this.baseline, growth}
  }
}

/**
 * The requests of one driver (one region), reads and writes alike, go through one limiter: a
 * concurrency limit that adapts (slow start, then additive increase while round trips stay near their
 * best; multiplicative decrease on throttling answers and on latency growth, as TCP Vegas and Netflix's
 * concurrency-limits do), under a ceiling and a token bucket, with retries that back off with full
 * jitter (AWS's advice: the retries of many clients do not arrive together). A fixed limit pins it.
 */
export class RequestLimiter {
  private limit: number
  private rates: RequestRates
  private inFlight = 0
  private readonly waiting: Array<() => void> = []
  private readonly trips = new Map<string, RoundTrips>()
  /** no throttle or congestion seen yet: the limit doubles each window */
  private slowStart = true
  private completed = 0
  /** the current window ends after this many answers: about two round trips' worth */
  private windowEnd = 0
  private throttledInWindow = false
  /** the limit held back the work in this window (requests waited for a slot) */
  private limitedInWindow = false
  private tokens = 0
  private refilled = performance.now()
  private readonly counters = {requests: 0, retries: 0, throttled: 0}
  private lowest: number
  private highest: number

  constructor(
    rates: RequestRates,
    private readonly maxAttempts = 8,
  ) {
    this.rates = rates
    this.limit = rates.fixed ?? Math.min(INITIAL_LIMIT, rates.max)
    this.lowest = this.highest = this.limit
    this.tokens = rates.tps ?? 0
  }

  /** Changes the rates (the command's flags arrive after the driver is opened). */
  configure(rates: Partial<RequestRates>): void {
    this.rates = {...this.rates, ...rates}
    if (this.rates.fixed !== undefined) this.limit = this.rates.fixed
    else this.limit = Math.min(this.limit, this.rates.max)
    this.lowest = this.highest = this.limit
    this.tokens = Math.min(this.tokens, this.rates.tps ?? 0)
    this.wake()
  }

  stats(): LimiterStats {
    return {
      limit: Math.floor(this.limit),
      ...this.counters,
      lowest: Math.floor(this.lowest),
      highest: Math.floor(this.highest),
    }
  }

  /**
   * Runs `attempt` under the limit, again after a backoff while it fails with a throttling or transient
   * error and `retry` allows (a streamed body cannot be sent twice). Each attempt takes its own slot:
   * a request waiting out its backoff does not hold one.
   */
  async run<T>(
    kind: string,
    attempt: () => Promise<T>,
    opts: {retry?: boolean; classify: (error: unknown) => ErrorClass; signal?: AbortSignal},
  ): Promise<T> {
    for (let tries = 1; ; tries++) {
      await this.acquire(opts.signal)
      const started = performance.now()
      this.counters.requests++
      try {
        const value = await attempt()
        this.release(kind, performance.now() - started, 'ok')
        return value
      } catch (error) {
        const errorClass = opts.classify(error)
        this.release(kind, performance.now() - started, errorClass)
        if (errorClass === 'final' || opts.retry === false || tries >= this.maxAttempts) throw error
        opts.signal?.throwIfAborted()
        this.counters.retries++
        // Full jitter: anywhere from 0 to the exponential bound.
        const bound = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** (tries - 1))
        await sleep(Math.random() * bound, undefined, {signal: opts.signal})
      }
    }
  }

  /** A slot first (handed over by wake() when queued), then a token when a rate is set. */
  private async acquire(signal?: AbortSignal): Promise<void> {
    if (this.waiting.length === 0 && this.inFlight < Math.floor(this.limit)) this.inFlight++
    else await new Promise<void>((resolve) => this.waiting.push(resolve))
    try {
      while (!this.takeToken()) await sleep(Math.max(1, Math.ceil(1000 / this.rates.tps!)), undefined, {signal})
    } catch (error) {
      this.inFlight--
      this.wake()
      throw error
    }
  }

  private takeToken(): boolean {
    const tps = this.rates.tps
    if (tps === undefined) return true
    const now = performance.now()
    // A bucket of one second's worth: a burst after an idle spell is at most the rate.
    this.tokens = Math.min(tps, this.tokens + ((now - this.refilled) / 1000) * tps)
    this.refilled = now
    if (this.tokens < 1) return false
    this.tokens--
    return true
  }

  private release(kind: string, ms: number, outcome: ErrorClass | 'ok'): void {
    this.inFlight--
    this.completed++
    if (outcome === 'throttle') this.counters.throttled++
    if (this.rates.fixed === undefined) this.adapt(kind, ms, outcome)
    this.wake()
  }

  private adapt(kind: string, ms: number, outcome: ErrorClass | 'ok'): void {
    if (this.waiting.length > 0) this.limitedInWindow = true
    if (outcome === 'throttle' && !this.throttledInWindow) {
      // At once, not at the window's end: a server refusing requests should not get a window's worth more.
      this.throttledInWindow = true
      this.slowStart = false
      this.setLimit(this.limit * THROTTLE_BACKOFF)
    }
    // A quick error (404, 403) says nothing about queueing; a slow transient one is not a clean sample either.
    if (outcome === 'ok') {
      let trips = this.trips.get(kind)
      if (!trips) this.trips.set(kind, (trips = new RoundTrips()))
      trips.window.push(ms)
    }
    if (this.completed < this.windowEnd) return
    this.windowEnd = this.completed + Math.max(16, Math.ceil(2 * this.limit))
    let worst = 0
    let growth = 0
    for (const trips of this.trips.values()) {
      const closed = trips.close()
      worst = Math.max(worst, closed?.slower ?? 0)
      growth = Math.max(growth, closed?.growth ?? 0)
    }
    const throttled = this.throttledInWindow
    const limited = this.limitedInWindow
    this.throttledInWindow = this.limitedInWindow = false
    if (throttled) return
    // Slow start doubled the limit and round trips grew by half: the server queues; go back to the last limit.
    if (this.slowStart && growth > SLOW_START_EXIT) {
      this.slowStart = false
      this.setLimit(this.limit / 2)
      return
    }
    if (worst > LATENCY_TOLERANCE) {
      this.slowStart = false
      this.setLimit(this.limit * Math.max(0.5, LATENCY_TOLERANCE / worst))
      return
    }
    // Grow only when the limit is what held the work back: an idle limit would climb without being tested.
    if (!limited) return
    this.setLimit(this.slowStart ? this.limit * 2 : this.limit + Math.max(1, Math.sqrt(this.limit) / 2))
  }

  private setLimit(limit: number): void {
    this.limit = Math.max(1, Math.min(this.rates.max, limit))
    this.lowest = Math.min(this.lowest, this.limit)
    this.highest = Math.max(this.highest, this.limit)
  }

  private wake(): void {
    while (this.waiting.length > 0 && this.inFlight < Math.floor(this.limit)) {
      this.inFlight++
      this.waiting.shift()!()
    }
  }
}

/**
 * Whether an S3 (or HTTP) error is worth another attempt. Throttling: 503 (SlowDown), 429, and
 * timeouts, which on a loaded server mean the same. Transient: other 5xx and connections reset or
 * refused. Everything else (404, 403, a bad request) is the answer.
 */
export function classifyStorageError(error: unknown): ErrorClass {
  const e = error as {
    status?: number
    statusCode?: number
    $metadata?: {httpStatusCode?: number}
    code?: string
    name?: string
    Code?: string
  }
  if (error instanceof RangeError) return 'final'
  const status = e.$metadata?.httpStatusCode ?? e.status ?? e.statusCode
  const code = String(e.code ?? e.Code ?? e.name ?? '')
  if (status === 503 || status === 429 || /SlowDown|Throttl|RequestLimitExceeded|TooManyRequests/.test(code))
    return 'throttle'
  if (/TIMEOUT|TimedOut|Timeout/i.test(code)) return 'throttle'
  if (status !== undefined && status >= 500) return 'transient'
  if (status !== undefined) return 'final'
  if (
    /^(ECONNRESET|ECONNREFUSED|EPIPE|ENOTFOUND|ENETDOWN|ENETUNREACH|EHOSTDOWN|EHOSTUNREACH|EAI_AGAIN|UND_ERR_SOCKET|UND_ERR_CLOSED)$/.test(
      code,
    )
  )
    return 'transient'
  if (/NetworkingError|socket hang up/i.test(code)) return 'transient'
  return 'final'
}
