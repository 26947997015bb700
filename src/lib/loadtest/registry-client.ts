import {createHash, type Hash} from 'node:crypto'
import {isIP} from 'node:net'
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
}

interface Challenge {
  scheme: 'bearer' | 'basic'
  realm?: string
  service?: string
}

interface CachedToken {
  token: string
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

/**
 * The HTTP side of a pull, as a container client does it: one challenge, a bearer token per scope
 * cached until shortly before it expires (shared by concurrent pulls, fetched once), redirects followed
 * by hand so that the Authorization header never leaves the registry's origin, bodies streamed.
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
  }

  async close(): Promise<void> {
    await this.agent.destroy()
  }

  /** GET /v2/: learns how the registry wants to be authenticated. */
  async ping(stage: StageStats, signal: AbortSignal): Promise<void> {
    const started = performance.now()
    let response: Dispatcher.ResponseData
    try {
      response = await this.agent.request({origin: this.origin, path: `${this.basePath}/v2/`, method: 'GET', signal})
      await response.body.dump()
    } catch (error) {
      throw classify(error, false)
    }
    stage.recordStatus(response.statusCode)
    stage.recordLatency(performance.now() - started)
    if (response.statusCode === 401) {
      this.challenge = parseChallenge(header(response.headers, 'www-authenticate'))
    } else if (response.statusCode !== 200) {
      throw statusError(response.statusCode, 'GET /v2/')
    }
    this.challengeKnown = true
  }

  get pinged(): boolean {
    return this.challengeKnown
  }

  /** GET a registry path, with auth, redirects and body handling. Throws PullError. */
  async get(
    path: string,
    opts: {
      scope: string
      accept?: string
      stages: FetchStages
      keepBody?: boolean
      hash?: boolean
      signal: AbortSignal
    },
  ): Promise<FetchResult> {
    let retriedAuth = false
    for (;;) {
      const authorization = await this.authorizationFor(opts.scope, opts.stages.token, opts.signal)
      const result = await this.follow(`${this.origin}${this.basePath}${path}`, authorization, opts)
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
    firstUrl: string,
    authorization: string | undefined,
    opts: {accept?: string; stages: FetchStages; keepBody?: boolean; hash?: boolean; signal: AbortSignal},
  ): Promise<FetchResult & {challenge?: Challenge}> {
    const started = performance.now()
    let url = new URL(firstUrl)
    const firstOrigin = url.origin
    for (let hop = 0; ; hop++) {
      this.assertAllowed(url)
      const headers: Record<string, string> = {'user-agent': 'regops-loadtest'}
      if (opts.accept) headers.accept = opts.accept
      // Credentials for the registry stay with the registry: a storage host or CDN gets only what its signed URL carries.
      if (authorization && url.origin === firstOrigin) headers.authorization = authorization
      const hopStarted = performance.now()
      let response: Dispatcher.ResponseData
      try {
        response = await this.agent.request({
          origin: url.origin,
          path: url.pathname + url.search,
          method: 'GET',
          headers,
          signal: opts.signal,
        })
      } catch (error) {
        throw classify(error, false)
      }
      const status = response.statusCode
      const stage = hop === 0 ? opts.stages.total : opts.stages.redirect
      stage.recordStatus(status)
      if (REDIRECT_STATUSES.has(status)) {
        const location = header(response.headers, 'location')
        await response.body.dump().catch(() => undefined)
        if (hop > 0) opts.stages.redirect.recordLatency(performance.now() - hopStarted)
        if (!location)
          throw new PullError('bad_redirect', `HTTP ${status} without a Location header from ${url.origin}`)
        if (hop + 1 > this.options.maxRedirects)
          throw new PullError('too_many_redirects', `more than ${this.options.maxRedirects} redirects from ${firstUrl}`)
        try {
          url = new URL(location, url)
        } catch {
          throw new PullError('bad_redirect', `unparsable Location header from ${url.origin}`)
        }
        continue
      }
      if (status < 200 || status > 299) {
        const challenge = status === 401 ? parseChallenge(header(response.headers, 'www-authenticate')) : undefined
        await response.body.dump().catch(() => undefined)
        if (hop > 0) opts.stages.redirect.recordLatency(performance.now() - hopStarted)
        return {status, contentType: '', bytes: 0, challenge}
      }
      const body = await this.readBody(response, opts, started)
      const ended = performance.now()
      if (hop > 0) opts.stages.redirect.recordLatency(ended - hopStarted)
      opts.stages.total.recordLatency(ended - started)
      opts.stages.total.bytes += body.bytes
      return {
        status,
        contentType: header(response.headers, 'content-type') ?? '',
        dockerContentDigest: header(response.headers, 'docker-content-digest'),
        ...body,
      }
    }
  }

  private async readBody(
    response: Dispatcher.ResponseData,
    opts: {stages: FetchStages; keepBody?: boolean; hash?: boolean},
    started: number,
  ): Promise<{bytes: number; body?: Buffer; digest?: string}> {
    const declared = header(response.headers, 'content-length')
    const hash: Hash | undefined = opts.hash ? createHash('sha256') : undefined
    const chunks: Buffer[] = []
    let bytes = 0
    let first = true
    try {
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        if (first) {
          first = false
          opts.stages.firstByte?.recordLatency(performance.now() - started)
        }
        bytes += chunk.length
        hash?.update(chunk)
        if (opts.keepBody) {
          if (bytes > MAX_MANIFEST_BYTES) {
            response.body.destroy()
            throw new PullError('manifest_too_large', `manifest larger than ${MAX_MANIFEST_BYTES} bytes`)
          }
          chunks.push(chunk)
        }
      }
    } catch (error) {
      throw classify(error, true)
    }
    if (declared !== undefined && Number(declared) !== bytes) {
      throw new PullError('length_mismatch', `Content-Length ${declared} but ${bytes} bytes received`)
    }
    return {
      bytes,
      body: opts.keepBody ? Buffer.concat(chunks) : undefined,
      digest: hash ? 'sha256:' + hash.digest('hex') : undefined,
    }
  }

  private async authorizationFor(
    scope: string,
    tokenStage: StageStats,
    signal: AbortSignal,
  ): Promise<string | undefined> {
    const challenge = this.challenge
    if (!challenge) return this.basicAuth
    if (challenge.scheme === 'basic') return this.basicAuth
    const cached = this.tokens.get(scope)
    if (cached && performance.now() < cached.renewAt) return `Bearer ${cached.token}`
    // Concurrent pulls of one scope share one token request instead of each hitting the realm.
    let pending = this.tokenRequests.get(scope)
    if (!pending) {
      pending = this.fetchToken(challenge, scope, tokenStage, signal).finally(() => this.tokenRequests.delete(scope))
      this.tokenRequests.set(scope, pending)
    }
    return `Bearer ${await pending}`
  }

  private async fetchToken(
    challenge: Challenge,
    scope: string,
    stage: StageStats,
    signal: AbortSignal,
  ): Promise<string> {
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
    const headers: Record<string, string> = {'user-agent': 'regops-loadtest'}
    if (this.basicAuth) headers.authorization = this.basicAuth
    const started = performance.now()
    this.tokenFetches++
    let text: string
    let status: number
    try {
      const response = await this.agent.request({
        origin: url.origin,
        path: url.pathname + url.search,
        method: 'GET',
        headers,
        signal,
      })
      status = response.statusCode
      text = await response.body.text()
    } catch (error) {
      stage.recordError('auth')
      throw classify(error, false)
    }
    stage.recordStatus(status)
    stage.recordLatency(performance.now() - started)
    if (status !== 200) {
      stage.recordError('auth')
      throw new PullError('auth', `token endpoint answered HTTP ${status}`)
    }
    let parsed: {token?: unknown; access_token?: unknown; expires_in?: unknown}
    try {
      parsed = JSON.parse(text)
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
    this.tokens.set(scope, {token, renewAt: started + lifetimeMs - Math.min(TOKEN_RENEW_MARGIN_MS, lifetimeMs / 10)})
    return token
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

function header(headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
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
