import {readFileSync, existsSync} from 'node:fs'
import {resolve} from 'node:path'
import {LineCounter, parseDocument, isMap, visit, type Document, type Node as YamlNode} from 'yaml'
import {ConfigError} from '../errors.js'
import {registerSecret, redactUrl, registerEnvironmentSecrets, REDACTED} from '../output/redact.js'
import {parseDuration} from './duration.js'
import type {RegistryCacheConfig} from '../registry/descriptor-cache.js'
import {libpqUrl} from './libpq.js'
import type {TlsSettings} from './tls.js'

export type ChecksumMode = 'when_required' | 'when_supported'

export interface S3RegionConfig extends TlsSettings {
  kind: 's3'
  name: string
  url: string
  bucket: string
  /** key prefix inside the bucket, without leading or trailing slash ('' for the bucket root) */
  prefix: string
  region: string
  endpoint?: string
  forcePathStyle: boolean
  /** many S3-compatible stores (radosgw, older MinIO) reject the SDK's default streaming checksums */
  checksums: ChecksumMode
  concurrency: number
  accessKeyId?: string
  secretAccessKey?: string
  /** declared empty (a new region): doctor then accepts a store without blobs/ and repositories/ */
  empty?: boolean
}

export interface FileRegionConfig {
  kind: 'file'
  name: string
  url: string
  /** absolute directory holding blobs/ and repositories/ */
  root: string
  concurrency: number
  /** declared empty (a new region): doctor then accepts a store without blobs/ and repositories/ */
  empty?: boolean
}

export type RegionConfig = S3RegionConfig | FileRegionConfig

export interface RegistryConfig extends TlsSettings {
  url: string
  username?: string
  password?: string
}

export interface SweepConfig {
  minAgeMs: number
  /** 'region:prefix' or a bare prefix in the region being swept */
  quarantine: string
  holdForMs: number
}

export interface RegopsConfig {
  /** where the file came from, if any */
  file?: string
  database?: {url: string}
  regions: Record<string, RegionConfig>
  primary?: string
  registry?: RegistryConfig
  /** registry.cache: what the registry caches blob descriptors in (none, inmemory, or a redis:// URL) */
  registryCache: RegistryCacheConfig
  sweep: SweepConfig
}

export interface ConfigOverrides {
  databaseUrl?: string
  primary?: string
  registryUrl?: string
}

const DEFAULT_SWEEP = {minAge: '24h', quarantine: '_regops/quarantine', holdFor: '7d'}

/** Finds the config file: --config, REGOPS_CONFIG, ./regops.yaml, in that order. */
export function locateConfigFile(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (flag) return resolve(flag)
  if (env.REGOPS_CONFIG) return resolve(env.REGOPS_CONFIG)
  const local = resolve('regops.yaml')
  return existsSync(local) ? local : undefined
}

/** Where locateConfigFile looked, for messages about a missing file: the operator sees what to create or pass. */
export function configSearchPaths(env: NodeJS.ProcessEnv = process.env): string {
  return `--config, $REGOPS_CONFIG${env.REGOPS_CONFIG ? ` (${env.REGOPS_CONFIG})` : ' (not set)'}, ${resolve('regops.yaml')}`
}

/**
 * Loads the configuration: YAML file, then environment, then flags. Every validation error names
 * the field and, for fields from the file, the file and line.
 */
export function loadConfig(
  opts: {file?: string; env?: NodeJS.ProcessEnv; overrides?: ConfigOverrides} = {},
): RegopsConfig {
  const env = opts.env ?? process.env
  registerEnvironmentSecrets(env)
  let source: YamlSource | undefined
  if (opts.file) {
    let text: string
    try {
      text = readFileSync(opts.file, 'utf8')
    } catch (error) {
      throw new ConfigError(`cannot read config file: ${(error as NodeJS.ErrnoException).code ?? error}`, {
        file: opts.file,
      })
    }
    source = parseYaml(text, opts.file, env)
  }
  return buildConfig(source, env, opts.overrides ?? {})
}

/** Parses config text (for tests). */
export function loadConfigFromText(
  text: string,
  file = '<inline>',
  env: NodeJS.ProcessEnv = process.env,
  overrides: ConfigOverrides = {},
): RegopsConfig {
  registerEnvironmentSecrets(env)
  return buildConfig(parseYaml(text, file, env), env, overrides)
}

interface YamlSource {
  file: string
  doc: Document.Parsed
  lines: LineCounter
  data: Record<string, unknown>
}

function parseYaml(text: string, file: string, env: NodeJS.ProcessEnv): YamlSource {
  const lines = new LineCounter()
  const doc = parseDocument(text, {lineCounter: lines, prettyErrors: false, uniqueKeys: true})
  if (doc.errors.length > 0) {
    const first = doc.errors[0]
    const line = first.linePos?.[0]?.line ?? lines.linePos(first.pos[0]).line
    throw new ConfigError(`invalid YAML: ${first.message.split('\n')[0]}`, {file, line})
  }
  const contents = doc.contents
  if (contents !== null && !isMap(contents)) {
    throw new ConfigError('the top level must be a mapping (key: value)', {file, line: 1})
  }
  let raw: Record<string, unknown>
  try {
    raw = (doc.toJS() ?? {}) as Record<string, unknown>
  } catch (error) {
    // yaml refuses a document whose aliases expand without bound (a "billion laughs" bomb) with a
    // ReferenceError; it is a malformed file, not a bug in regops.
    if (!(error instanceof ReferenceError)) throw error
    throw new ConfigError(`invalid YAML: ${error.message}`, {file, line: firstAliasLine(doc, lines)})
  }
  const source: YamlSource = {file, doc, lines, data: {}}
  source.data = expandEnv(raw, [], source, env) as Record<string, unknown>
  return source
}

function firstAliasLine(doc: Document.Parsed, lines: LineCounter): number | undefined {
  let line: number | undefined
  visit(doc, {
    Alias(_key, node) {
      if (node.range) line = lines.linePos(node.range[0]).line
      return visit.BREAK
    },
  })
  return line
}

/** `${VAR}` and `${VAR:-default}` in string values, from the environment. */
function expandEnv(value: unknown, path: string[], source: YamlSource, env: NodeJS.ProcessEnv): unknown {
  if (typeof value === 'string') {
    return value.replace(
      /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g,
      (_m, name: string, fallback: string | undefined) => {
        const v = env[name]
        if (v !== undefined && v !== '') return v
        if (fallback !== undefined) return fallback
        throw new ConfigError(`environment variable ${name} is not set`, where(source, path))
      },
    )
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, [...path, String(i)], source, env))
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = expandEnv(v, [...path, k], source, env)
    return out
  }
  return value
}

function where(source: YamlSource | undefined, path: string[]): {field: string; file?: string; line?: number} {
  const field = path.join('.')
  if (!source) return {field}
  // The node for the deepest part of the path that exists in the file.
  for (let depth = path.length; depth > 0; depth--) {
    const node = source.doc.getIn(path.slice(0, depth), true) as YamlNode | undefined
    if (node && node.range) return {field, file: source.file, line: source.lines.linePos(node.range[0]).line}
    // A null value has no node: point at its key.
    const parent = source.doc.getIn(path.slice(0, depth - 1), true) as YamlNode | undefined
    if (parent && isMap(parent)) {
      const pair = parent.items.find(
        (item) => String((item.key as {value?: unknown})?.value ?? item.key) === path[depth - 1],
      )
      const keyNode = pair?.key as YamlNode | undefined
      if (keyNode?.range) return {field, file: source.file, line: source.lines.linePos(keyNode.range[0]).line}
    }
  }
  return {field, file: source.file}
}

const TOP_KEYS = new Set(['database', 'regions', 'primary', 'registry', 'sweep'])
const REGION_KEYS = new Set([
  'url',
  'region',
  'endpoint',
  'forcePathStyle',
  'checksums',
  'concurrency',
  'accessKeyId',
  'secretAccessKey',
  'empty',
  'caFile',
  'insecureSkipTlsVerify',
])

function buildConfig(source: YamlSource | undefined, env: NodeJS.ProcessEnv, overrides: ConfigOverrides): RegopsConfig {
  const data = source?.data ?? {}
  const at = (...path: string[]) => where(source, path)

  for (const key of Object.keys(data)) {
    if (!TOP_KEYS.has(key)) throw new ConfigError(`unknown key (expected one of: ${[...TOP_KEYS].join(', ')})`, at(key))
  }

  const config: RegopsConfig = {
    file: source?.file,
    regions: {},
    registryCache: {mode: 'none'},
    sweep: parseSweep(data.sweep, at),
  }

  // database
  const db = data.database
  if (db !== undefined && db !== null && (typeof db !== 'object' || Array.isArray(db)))
    throw new ConfigError('must be a mapping with a url', at('database'))
  const dbFileUrl = (db as {url?: unknown} | undefined)?.url
  if (dbFileUrl !== undefined && typeof dbFileUrl !== 'string')
    throw new ConfigError('must be a string', at('database', 'url'))
  // An empty variable is unset (`DATABASE_URL= regops …` clears it for one run), not a database called ''.
  const dbUrl =
    overrides.databaseUrl ||
    env.REGOPS_DATABASE_URL ||
    env.DATABASE_URL ||
    (dbFileUrl as string | undefined) ||
    libpqUrl(env)
  if (dbUrl) {
    if (!/^postgres(ql)?:\/\//.test(dbUrl)) {
      throw new ConfigError(
        `must be a postgres:// URL, got '${redactUrl(dbUrl)}'`,
        dbUrl === dbFileUrl ? at('database', 'url') : {field: 'database.url'},
      )
    }
    redactUrl(dbUrl)
    config.database = {url: dbUrl}
  }

  // regions
  const regions = data.regions
  if (regions !== undefined && regions !== null) {
    if (typeof regions !== 'object' || Array.isArray(regions))
      throw new ConfigError('must be a mapping of region name to {url: ...}', at('regions'))
    for (const [name, value] of Object.entries(regions as Record<string, unknown>)) {
      if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(name))
        throw new ConfigError('region names use letters, digits, - and _', at('regions', name))
      config.regions[name] = parseRegion(name, value, (...p) => at('regions', name, ...p))
    }
  }

  // primary
  const primary = overrides.primary ?? env.REGOPS_PRIMARY ?? (data.primary as string | undefined)
  if (primary !== undefined && primary !== null) {
    if (typeof primary !== 'string') throw new ConfigError('must be a region name', at('primary'))
    if (!config.regions[primary]) {
      const known = Object.keys(config.regions)
      throw new ConfigError(
        `unknown region '${primary}' (${known.length > 0 ? `regions: ${known.join(', ')}` : 'no regions are configured'})`,
        primary === data.primary ? at('primary') : {field: 'primary'},
      )
    }
    config.primary = primary
  } else if (Object.keys(config.regions).length === 1) {
    config.primary = Object.keys(config.regions)[0]
  }

  // registry
  const registry = (data.registry ?? {}) as Record<string, unknown>
  if (typeof registry !== 'object' || Array.isArray(registry))
    throw new ConfigError('must be a mapping', at('registry'))
  const registryUrl = overrides.registryUrl ?? env.REGOPS_REGISTRY_URL ?? (registry.url as string | undefined)
  if (registryUrl !== undefined) {
    if (typeof registryUrl !== 'string' || !isHttpUrl(registryUrl)) {
      throw new ConfigError(
        `must be an http:// or https:// URL, got '${String(registryUrl)}'`,
        registryUrl === registry.url ? at('registry', 'url') : {field: 'registry.url'},
      )
    }
    const password = env.REGOPS_REGISTRY_PASSWORD ?? (registry.password as string | undefined)
    if (password !== undefined && typeof password !== 'string')
      throw new ConfigError('must be a string', at('registry', 'password'))
    registerSecret(password)
    const username = env.REGOPS_REGISTRY_USERNAME ?? (registry.username as string | undefined)
    config.registry = {
      url: registryUrl.replace(/\/+$/, ''),
      username,
      password,
      ...parseTls(registry, (...p) => at('registry', ...p)),
    }
  }
  config.registryCache = parseRegistryCache(registry.cache, () => at('registry', 'cache'))
  return config
}

/** `registry.cache`: none (default), inmemory (distribution's stock configuration), or redis://… / rediss://… */
function parseRegistryCache(value: unknown, at: () => ReturnType<typeof where>): RegistryCacheConfig {
  if (value === undefined || value === null || value === 'none') return {mode: 'none'}
  if (value === 'inmemory') return {mode: 'inmemory'}
  if (typeof value === 'string' && /^rediss?:\/\/[^/]/.test(value)) {
    try {
      new URL(value)
    } catch {
      throw new ConfigError(`is not a URL: '${redactUrl(value)}'`, at())
    }
    // Registers the password as a secret, so no message or log line shows it.
    redactUrl(value)
    return {mode: 'redis', url: value}
  }
  throw new ConfigError(
    `must be none, inmemory or a redis:// URL (what the registry's storage.cache.blobdescriptor uses), got '${typeof value === 'string' ? redactUrl(value) : String(value)}'`,
    at(),
  )
}

function isHttpUrl(text: string): boolean {
  try {
    const u = new URL(text)
    return u.protocol === 'http:' || u.protocol === 'https:'
  } catch {
    return false
  }
}

function parseRegion(name: string, value: unknown, at: (...path: string[]) => ReturnType<typeof where>): RegionConfig {
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw new ConfigError('must be a mapping with a url', at())
  const region = value as Record<string, unknown>
  for (const key of Object.keys(region)) {
    if (!REGION_KEYS.has(key))
      throw new ConfigError(`unknown key (expected one of: ${[...REGION_KEYS].join(', ')})`, at(key))
  }
  if (typeof region.url !== 'string')
    throw new ConfigError('is required: s3://bucket/prefix or file:///path', at('url'))
  const concurrency = region.concurrency === undefined ? undefined : Number(region.concurrency)
  if (concurrency !== undefined && (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1024)) {
    throw new ConfigError('must be an integer from 1 to 1024', at('concurrency'))
  }
  if (region.empty !== undefined && typeof region.empty !== 'boolean')
    throw new ConfigError('must be true or false', at('empty'))
  const empty = region.empty === true ? {empty: true} : {}
  let url: URL
  try {
    url = new URL(region.url)
  } catch {
    throw new ConfigError(`is not a URL: '${region.url}' (expected s3://bucket/prefix or file:///path)`, at('url'))
  }
  if (url.protocol === 'file:') {
    if (url.host && url.host !== 'localhost')
      throw new ConfigError(`file URLs take an absolute path (file:///path), got '${region.url}'`, at('url'))
    const root = decodeURIComponent(url.pathname).replace(/\/+$/, '') || '/'
    return {kind: 'file', name, url: region.url, root, concurrency: concurrency ?? 16, ...empty}
  }
  if (url.protocol !== 's3:')
    throw new ConfigError(`unsupported scheme '${url.protocol}' (expected s3:// or file://)`, at('url'))
  if (!url.hostname) throw new ConfigError(`has no bucket: '${region.url}'`, at('url'))
  if (url.username || url.password)
    throw new ConfigError(
      'must not carry credentials; use accessKeyId/secretAccessKey or the AWS credential chain',
      at('url'),
    )
  const endpoint = region.endpoint
  if (endpoint !== undefined && (typeof endpoint !== 'string' || !isHttpUrl(endpoint))) {
    throw new ConfigError(`must be an http:// or https:// URL, got '${String(endpoint)}'`, at('endpoint'))
  }
  const checksums = region.checksums ?? 'when_supported'
  if (checksums !== 'when_required' && checksums !== 'when_supported')
    throw new ConfigError("must be 'when_required' or 'when_supported'", at('checksums'))
  for (const key of ['accessKeyId', 'secretAccessKey'] as const) {
    if (region[key] !== undefined && typeof region[key] !== 'string') throw new ConfigError('must be a string', at(key))
  }
  if ((region.accessKeyId === undefined) !== (region.secretAccessKey === undefined)) {
    throw new ConfigError(
      'accessKeyId and secretAccessKey go together',
      at(region.accessKeyId === undefined ? 'secretAccessKey' : 'accessKeyId'),
    )
  }
  registerSecret(region.secretAccessKey as string | undefined)
  registerSecret(region.accessKeyId as string | undefined)
  const tls = parseTls(region, at)
  return {
    kind: 's3',
    name,
    url: region.url,
    bucket: url.hostname,
    prefix: decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, ''),
    region: typeof region.region === 'string' ? region.region : 'us-east-1',
    endpoint: endpoint as string | undefined,
    forcePathStyle: region.forcePathStyle === undefined ? endpoint !== undefined : Boolean(region.forcePathStyle),
    checksums,
    concurrency: concurrency ?? 64,
    accessKeyId: region.accessKeyId as string | undefined,
    secretAccessKey: region.secretAccessKey as string | undefined,
    ...tls,
    ...empty,
  }
}

/** caFile (a readable PEM file, checked now so the error names the line) and insecureSkipTlsVerify. */
function parseTls(value: Record<string, unknown>, at: (...path: string[]) => ReturnType<typeof where>): TlsSettings {
  const settings: TlsSettings = {}
  if (value.insecureSkipTlsVerify !== undefined) {
    if (typeof value.insecureSkipTlsVerify !== 'boolean')
      throw new ConfigError('must be true or false', at('insecureSkipTlsVerify'))
    if (value.insecureSkipTlsVerify) settings.insecureSkipTlsVerify = true
  }
  if (value.caFile !== undefined) {
    if (typeof value.caFile !== 'string' || value.caFile === '')
      throw new ConfigError('must be the path of a PEM file', at('caFile'))
    const caFile = resolve(value.caFile)
    let text: string
    try {
      text = readFileSync(caFile, 'utf8')
    } catch (error) {
      throw new ConfigError(`cannot read ${caFile}: ${(error as NodeJS.ErrnoException).code ?? error}`, at('caFile'))
    }
    if (!text.includes('-----BEGIN CERTIFICATE-----'))
      throw new ConfigError(`${caFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, at('caFile'))
    settings.caFile = caFile
  }
  if (settings.caFile && settings.insecureSkipTlsVerify)
    throw new ConfigError(
      'caFile and insecureSkipTlsVerify contradict each other: keep one',
      at('insecureSkipTlsVerify'),
    )
  return settings
}

function parseSweep(value: unknown, at: (...path: string[]) => ReturnType<typeof where>): SweepConfig {
  if (value !== undefined && value !== null && (typeof value !== 'object' || Array.isArray(value)))
    throw new ConfigError('must be a mapping', at('sweep'))
  const sweep = {...DEFAULT_SWEEP, ...((value ?? {}) as Record<string, unknown>)}
  const duration = (key: 'minAge' | 'holdFor') => {
    try {
      return parseDuration(String(sweep[key]), key)
    } catch (error) {
      throw new ConfigError((error as Error).message, at('sweep', key))
    }
  }
  for (const key of Object.keys(sweep)) {
    if (!(key in DEFAULT_SWEEP))
      throw new ConfigError('unknown key (expected minAge, quarantine, holdFor)', at('sweep', key))
  }
  return {minAgeMs: duration('minAge'), holdForMs: duration('holdFor'), quarantine: String(sweep.quarantine)}
}

/** The effective configuration as it may be shown to anyone: every secret is '***'. */
export function redactedConfig(config: RegopsConfig): Record<string, unknown> {
  const regions: Record<string, unknown> = {}
  for (const [name, region] of Object.entries(config.regions)) {
    regions[name] =
      region.kind === 'file'
        ? {kind: region.kind, url: region.url, root: region.root, concurrency: region.concurrency}
        : {
            kind: region.kind,
            url: region.url,
            bucket: region.bucket,
            prefix: region.prefix,
            region: region.region,
            endpoint: region.endpoint,
            forcePathStyle: region.forcePathStyle,
            checksums: region.checksums,
            concurrency: region.concurrency,
            accessKeyId: region.accessKeyId === undefined ? undefined : REDACTED,
            secretAccessKey: region.secretAccessKey === undefined ? undefined : REDACTED,
            credentials: region.accessKeyId === undefined ? 'aws default chain' : 'config',
            caFile: region.caFile,
            insecureSkipTlsVerify: region.insecureSkipTlsVerify,
          }
  }
  return {
    file: config.file ?? null,
    database: config.database ? {url: redactUrl(config.database.url)} : null,
    regions,
    primary: config.primary ?? null,
    registry: config.registry
      ? {
          url: config.registry.url,
          username: config.registry.username ?? null,
          password: config.registry.password === undefined ? null : REDACTED,
          caFile: config.registry.caFile,
          insecureSkipTlsVerify: config.registry.insecureSkipTlsVerify,
        }
      : null,
    registryCache: {
      mode: config.registryCache.mode,
      url: config.registryCache.url === undefined ? null : redactUrl(config.registryCache.url),
    },
    sweep: {minAgeMs: config.sweep.minAgeMs, quarantine: config.sweep.quarantine, holdForMs: config.sweep.holdForMs},
  }
}
