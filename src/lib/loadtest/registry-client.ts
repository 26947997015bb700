import {createHash, type Hash} from 'node:crypto'
import {isIP} from 'node:net'
import type {IncomingHttpHeaders} from 'node:http'
import {Agent, errors as undiciErrors, type Dispatcher} from 'undici'
import {registerSecret} from '../output/redact.js'
import {tlsConnectOptions, untrustedCertificateCode, type TlsSettings} from '../config/tls.js'
import type {StageStats} from './stage-stats.js'

/** Every manifest type a current Docker or containerd client accepts, in their order of preference. */
export const MANIFEST_ACCEPT = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ')

/** containerd refuses manifests above 4 MiB; so do we, rather than buffer whatever a broken server sends. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024
/** Tokens are renewed this long before they expire, so a request never goes out with a token about to lapse. */
const TOKEN_RENEW_MARGIN_MS = 1000
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])

/** A failure of one request of a pull, named by kind so the report can count them. */
export class PullError extends Error {
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(message)
  }
}

export interface RegistryClientOptions {
  url: string
  username?: string
  password?: string
  /** per request: headers and each gap between body chunks */
  timeoutMs: number
  maxRedirects: number
  /** refuse any host outside loopback (registry, token realm, redirect targets) */
  loopbackOnly: boolean
  /** connections per origin */
  connections: number
  /** caFile / insecureSkipTlsVerify for every host of a pull (registry, token realm, redirect targets) */
  tls?: TlsSettings
  /** aborts every request in flight (the end of the run): they fail as 'cut_off' */
  signal: AbortSignal
}

interface Challenge {
  scheme: 'bearer' | 'basic'
  realm?: string
  service?: string
}

interface CachedToken {
  /** the Authorization header value */
  header: string
  renewAt: number
}

export interface FetchStages {
  /** the whole request, first hop to last body byte */
  total: StageStats
  /** time to the first body byte, from the first hop */
  firstByte?: StageStats
  redirect: StageStats
  token: StageStats
}

export interface FetchResult {
  status: number
  contentType: string
  bytes: number
  /** the body, only when asked for (manifests) */
  body?: Buffer
  /** sha256 of the body as 'sha256:…', only when asked for */
  digest?: string
  dockerContentDigest?: string
}

export interface GetOptions {
  scope: string
  accept?: string
  stages: FetchStages
  keepBody?: boolean
  hash?: boolean
}

/** One HTTP exchange as the pull flow needs it: the status, a few headers, the body counted (and kept or hashed). */
interface Exchange {
  status: number
  headers: IncomingHttpHeaders
  bytes: number
  chunks?: Buffer[]
  hash?: Hash
}

const USER_AGENT = 'regops-loadtest'

/**
 * The HTTP side of a pull, as a container client does it: one challenge, a bearer token per scope
 * cached until shortly before it expires (shared by concurrent pulls, fetched once), redirects followed
 * by hand so that the Authorization header never leaves the registry's origin, bodies streamed.
 *
 * Requests go through undici's dispatch with a small handler rather than its request() API: no Readable
 * stream, async iterator or abort listener per request, which at thousands of requests a second on one
 * core was most of the client's own cost. Bodies are still consumed chunk by chunk as they arrive.
 */
export class RegistryClient {
  readonly origin: string
  readonly basePath: string
  private readonly agent: Agent
  private challenge: Challenge | undefined
  private challengeKnown = false
  private readonly tokens = new Map<string, CachedToken>()
  private readonly tokenRequests = new Map<string, Promise<string>>()
  private readonly basicAuth: string | undefined
  /** requests on a connection now, so that the end of the run can abort them */
  private readonly active = new Set<DispatchController>()
  private readonly signal: AbortSignal
  private readonly onAbort = () => {
    for (const controller of this.active) controller.abort(new PullError('cut_off', 'aborted at the end of the run'))
  }
  tokenFetches = 0

  constructor(private readonly options: RegistryClientOptions) {
    const url = new URL(options.url)
    this.origin = url.origin
    this.basePath = url.pathname.replace(/\/+$/, '')
    this.assertAllowed(url)
    this.agent = new Agent({
      connections: options.connections,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      keepAliveTimeout: 30_000,
      connect: tlsConnectOptions(options.tls ?? {}, this.origin, 'the registry'),
    })
    if (options.username !== undefined || options.password !== undefined) {
      this.basicAuth = 'Basic ' + Buffer.from(`${options.username ?? ''}:${options.password ?? ''}`).toString('base64')
      registerSecret(this.basicAuth.slice(6))
    }
    this.signal = options.signal
    this.signal.addEventListener('abort', this.onAbort, {once: true})
  }

  async close(): Promise<void> {
    this.signal.removeEventListener('abort', this.onAbort)
    await this.agent.destroy()
  }

  /** GET /v2/: learns how the registry wants to be authenticated. */
  async ping(stage: StageStats): Promise<void> {
    const started = performance.now()
    const response = await this.exchange(this.origin, `${this.basePath}/v2/`, {'user-agent': USER_AGENT}, {})
    stage.recordStatus(response.status)
    stage.recordLatency(performance.now() - started)
    if (response.status === 401) {
      this.challenge = parseChallenge(header(response.headers, 'www-authenticate'))
    } else if (response.status !== 200) {
      throw statusError(response.status, 'GET /v2/')
    }
    this.challengeKnown = true
  }

  get pinged(): boolean {
    return this.challengeKnown
  }

  /** GET a registry path, with auth, redirects and body handling. Throws PullError. */
  async get(path: string, opts: GetOptions): Promise<FetchResult> {
    let retriedAuth = false
    for (;;) {
      const pending = this.authorizationFor(opts.scope, opts.stages.token)
      const authorization = typeof pending === 'string' || pending === undefined ? pending : await pending
      const result = await this.follow(path, authorization, opts)
      if (result.status === 401 && !retriedAuth && result.challenge?.scheme === 'bearer') {
        // A token that lapsed or lacks the scope: drop it and ask the realm again, once.
        this.challenge = {...result.challenge}
        this.tokens.delete(opts.scope)
        retriedAuth = true
        continue
      }
      if (result.status < 200 || result.status > 299) throw statusError(result.status, `GET ${path}`)
      return result
    }
  }

  private async follow(
    path: string,
    authorization: string | undefined,
    opts: GetOptions,
  ): Promise<FetchResult & {challenge?: Challenge}> {
    const started = performance.now()
    // The first hop goes to the registry (checked once, when the client was made); only a redirect needs a URL parsed.
    let origin = this.origin
    let pathAndQuery = this.basePath + path
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = {'user-agent': USER_AGENT}
      if (opts.accept) headers.accept = opts.accept
      // Credentials for the registry stay with the registry: a storage host or CDN gets only what its signed URL carries.
      if (authorization && origin === this.origin) headers.authorization = authorization
      const hopStarted = performance.now()
      const response = await this.exchange(origin, pathAndQuery, headers, {
        keepBody: opts.keepBody,
        hash: opts.hash,
        firstByte: opts.stages.firstByte,
        started,
      })
      const status = response.status
      const stage = hop === 0 ? opts.stages.total : opts.stages.redirect
      stage.recordStatus(status)
      const ended = performance.now()
      if (hop > 0) opts.stages.redirect.recordLatency(ended - hopStarted)
      if (REDIRECT_STATUSES.has(status)) {
        const location = header(response.headers, 'location')
        if (!location) throw new PullError('bad_redirect', `HTTP ${status} without a Location header from ${origin}`)
        if (hop + 1 > this.options.maxRedirects) {
          throw new PullError(
            'too_many_redirects',
            `more than ${this.options.maxRedirects} redirects from ${this.origin}${this.basePath}${path}`,
          )
        }
        let url: URL
        try {
          url = new URL(location, origin + pathAndQuery)
        } catch {
          throw new PullError('bad_redirect', `unparsable Location header from ${origin}`)
        }
        this.assertAllowed(url)
        origin = url.origin
        pathAndQuery = url.pathname + url.search
        continue
      }
      if (status < 200 || status > 299) {
        const challenge = status === 401 ? parseChallenge(header(response.headers, 'www-authenticate')) : undefined
        return {status, contentType: '', bytes: 0, challenge}
      }
      opts.stages.total.recordLatency(ended - started)
      opts.stages.total.bytes += response.bytes
      return {
        status,
        contentType: header(response.headers, 'content-type') ?? '',
        dockerContentDigest: header(response.headers, 'docker-content-digest'),
        bytes: response.bytes,
        body: response.chunks ? Buffer.concat(response.chunks) : undefined,
        digest: response.hash ? 'sha256:' + response.hash.digest('hex') : undefined,
      }
    }
  }

  /**
   * One request and its response. A 2xx body is counted, and kept (within MAX_MANIFEST_BYTES) or hashed when
   * asked; any other body is read and dropped so that the connection can be reused. Throws PullError.
   */
  private exchange(
    origin: string,
    path: string,
    headers: Record<string, string>,
    body: {keepBody?: boolean; hash?: boolean; firstByte?: StageStats; started?: number},
  ): Promise<Exchange> {
    return new Promise((resolve, reject) => {
      if (this.signal.aborted) return reject(new PullError('cut_off', 'aborted at the end of the run'))
      const active = this.active
      const signal = this.signal
      let controller: DispatchController | undefined
      let response: Exchange | undefined
      let counted = false
      let failure: PullError | undefined
      const done = () => {
        if (controller) active.delete(controller)
      }
      this.agent.dispatch(
        {origin, path, method: 'GET', headers},
        {
          onRequestStart(c) {
            controller = c
            // A request that waited for a connection past the end of the run goes no further.
            if (signal.aborted) return c.abort(new PullError('cut_off', 'aborted at the end of the run'))
            active.add(c)
          },
          onResponseStart(_c, status, responseHeaders) {
            response = {status, headers: responseHeaders, bytes: 0}
            counted = status >= 200 && status <= 299
            if (counted && body.keepBody) response.chunks = []
            if (counted && body.hash) response.hash = createHash('sha256')
          },
          onResponseData(c, chunk) {
            if (!counted || !response) return
            if (response.bytes === 0 && body.firstByte) body.firstByte.recordLatency(performance.now() - body.started!)
            response.bytes += chunk.length
            response.hash?.update(chunk)
            if (response.chunks) {
              if (response.bytes > MAX_MANIFEST_BYTES) {
                failure = new PullError('manifest_too_large', `manifest larger than ${MAX_MANIFEST_BYTES} bytes`)
                return c.abort(failure)
              }
              response.chunks.push(chunk)
            }
          },
          onResponseEnd() {
            done()
            if (!response) return reject(new PullError('network', `no response from ${origin}`))
            if (counted) {
              const declared = header(response.headers, 'content-length')
              if (declared !== undefined && Number(declared) !== response.bytes) {
                return reject(
                  new PullError('length_mismatch', `Content-Length ${declared} but ${response.bytes} bytes received`),
                )
              }
            }
            resolve(response)
          },
          onResponseError(_c, error) {
            done()
            if (signal.aborted) return reject(new PullError('cut_off', 'aborted at the end of the run'))
            // The status is what counts for an answer whose body is not used (a redirect, an error page).
            if (response && !counted) return resolve(response)
            reject(failure ?? classify(error, response !== undefined))
          },
        },
      )
    })
  }

  private authorizationFor(scope: string, tokenStage: StageStats): string | undefined | Promise<string> {
    const challenge = this.challenge
    if (!challenge) return this.basicAuth
    if (challenge.scheme === 'basic') return this.basicAuth
    const cached = this.tokens.get(scope)
    if (cached && performance.now() < cached.renewAt) return cached.header
    // Concurrent pulls of one scope share one token request instead of each hitting the realm.
    let pending = this.tokenRequests.get(scope)
    if (!pending) {
      pending = this.fetchToken(challenge, scope, tokenStage).finally(() => this.tokenRequests.delete(scope))
      this.tokenRequests.set(scope, pending)
    }
    return pending
  }

  /** Asks the realm for a token for `scope`; resolves to the Authorization header that carries it. */
  private async fetchToken(challenge: Challenge, scope: string, stage: StageStats): Promise<string> {
    if (!challenge.realm) throw new PullError('auth', 'bearer challenge without a realm')
    let url: URL
    try {
      url = new URL(challenge.realm)
    } catch {
      throw new PullError('auth', 'bearer challenge with an unparsable realm')
    }
    this.assertAllowed(url)
    if (challenge.service) url.searchParams.set('service', challenge.service)
    url.searchParams.set('scope', scope)
    const headers: Record<string, string> = {'user-agent': USER_AGENT}
    if (this.basicAuth) headers.authorization = this.basicAuth
    const started = performance.now()
    this.tokenFetches++
    let response: Exchange
    try {
      response = await this.exchange(url.origin, url.pathname + url.search, headers, {keepBody: true})
    } catch (error) {
      stage.recordError('auth')
      throw error
    }
    const status = response.status
    stage.recordStatus(status)
    stage.recordLatency(performance.now() - started)
    if (status !== 200) {
      stage.recordError('auth')
      throw new PullError('auth', `token endpoint answered HTTP ${status}`)
    }
    let parsed: {token?: unknown; access_token?: unknown; expires_in?: unknown}
    try {
      parsed = JSON.parse(Buffer.concat(response.chunks ?? []).toString('utf8'))
    } catch {
      stage.recordError('auth')
      throw new PullError('auth', 'token endpoint answered something that is not JSON')
    }
    const token =
      typeof parsed.token === 'string'
        ? parsed.token
        : typeof parsed.access_token === 'string'
          ? parsed.access_token
          : undefined
    if (!token) {
      stage.recordError('auth')
      throw new PullError('auth', 'token endpoint answered without a token')
    }
    registerSecret(token)
    // The token spec's default lifetime when expires_in is absent.
    const lifetimeMs = (typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : 60) * 1000
    const value = `Bearer ${token}`
    this.tokens.set(scope, {
      header: value,
      renewAt: started + lifetimeMs - Math.min(TOKEN_RENEW_MARGIN_MS, lifetimeMs / 10),
    })
    return value
  }

  private assertAllowed(url: URL): void {
    if (this.options.loopbackOnly && !isLoopback(url.hostname)) {
      throw new PullError('refused_target', `${url.origin} is outside loopback and REGOPS_LOADTEST_LOOPBACK_ONLY=1`)
    }
  }
}

export function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '')
  if (host === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  if (isIP(host) === 6) return host === '::1'
  return false
}

/** Parses `Bearer realm="…",service="…",scope="…"` (or Basic). */
export function parseChallenge(value: string | undefined): Challenge | undefined {
  if (!value) return undefined
  const match = /^\s*(\w+)\s*(.*)$/.exec(value)
  if (!match) return undefined
  const scheme = match[1]!.toLowerCase()
  if (scheme !== 'bearer' && scheme !== 'basic') return undefined
  const params: Record<string, string> = {}
  for (const m of match[2]!.matchAll(/(\w+)="([^"]*)"/g)) params[m[1]!.toLowerCase()] = m[2]!
  return {scheme, realm: params.realm, service: params.service}
}

type DispatchController = Dispatcher.DispatchController

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

export function statusError(status: number, what: string): PullError {
  const kind =
    status === 404
      ? 'not_found'
      : status === 401 || status === 403
        ? 'unauthorized'
        : status === 429
          ? 'rate_limited'
          : status >= 500
            ? 'server_error'
            : 'http_status'
  return new PullError(kind, `${what}: HTTP ${status}`)
}

/** Names what went wrong on the wire; `duringBody` separates a cut-short body from a refused connection. */
export function classify(error: unknown, duringBody: boolean): PullError {
  if (error instanceof PullError) return error
  const code = (error as {code?: string}).code
  const name = (error as {name?: string}).name
  const message = (error as Error)?.message ?? String(error)
  if (name === 'AbortError' || error instanceof undiciErrors.RequestAbortedError)
    return new PullError('cut_off', 'aborted at the end of the run')
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT')
    return new PullError('timeout', message)
  if (code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') return new PullError('length_mismatch', message)
  const untrusted = untrustedCertificateCode(error)
  if (untrusted) return new PullError('tls_untrusted', `TLS certificate not trusted (${untrusted}): ${message}`)
  if (duringBody) return new PullError('truncated_body', message)
  if (code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'ECONNREFUSED' || code === 'EPIPE')
    return new PullError('connection', message)
  return new PullError('network', message)
}
