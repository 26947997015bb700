import {Agent} from 'undici'
import {configSearchPaths, type RegistryConfig, type RegopsConfig} from '../config/config.js'
import {tlsConnectOptions, untrustedCertificateCode, untrustedCertificateHint} from '../config/tls.js'
import {UsageError, errorMessage} from '../errors.js'
import {openDatabase} from '../metadata/db.js'
import {migrationStatus} from '../metadata/migrations.js'
import {redact, redactUrl} from '../output/redact.js'
import {openDriver} from '../storage/index.js'
import type {S3Driver} from '../storage/s3.js'
import {REPOSITORIES_PREFIX} from '../storage/layout.js'
import {openDescriptorCache} from '../registry/descriptor-cache.js'
import {probeWritePermissions, type PermissionProbe, type PermissionSet} from './write-check.js'

const BLOBS_ROOT = 'blobs/'

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip'

export interface DoctorCheck {
  component: 'database' | 'region' | 'registry' | 'registry-cache' | 'lifecycle'
  name: string
  target: string
  status: CheckStatus
  detail: string
  ms: number
}

export interface DoctorResult {
  kind: 'doctor'
  ok: boolean
  checks: DoctorCheck[]
  /** --write-check: one row per probe and region (ok, denied, error, skip) */
  permissions?: PermissionProbe[]
  /** --write-check: per region, which permission sets of docs/iam.md the credentials hold */
  permissionSets?: Record<string, Record<PermissionSet, boolean>>
}

export interface DoctorOptions {
  writeCheck: boolean
  timeoutMs: number
}

/** Reachability and permissions of everything the configuration names, one check each. */
export async function runDoctor(config: RegopsConfig, options: DoctorOptions): Promise<DoctorResult> {
  refuseNothingConfigured(config)
  const tasks: Array<Promise<DoctorCheck>> = []
  tasks.push(
    timed('database', 'postgres', redactUrl(config.database!.url), options.timeoutMs, () =>
      checkDatabase(config.database!.url),
    ),
  )
  for (const region of Object.values(config.regions)) {
    tasks.push(timed('region', region.name, region.url, options.timeoutMs, () => checkRegion(config, region.name)))
    if (region.kind === 's3')
      tasks.push(
        timed('lifecycle', region.name, region.url, options.timeoutMs, () => checkUploadLifecycle(config, region.name)),
      )
  }
  if (config.registry)
    tasks.push(
      timed('registry', 'registry', config.registry.url, options.timeoutMs, () => checkRegistry(config.registry!)),
    )
  else tasks.push(Promise.resolve(skip('registry', 'registry', 'not configured (registry.url)')))
  tasks.push(checkRegistryCache(config, options.timeoutMs))
  const writeChecks = options.writeCheck
    ? Object.values(config.regions).map(async (region) => ({
        region: region.name,
        ...(await probeWritePermissions(region)),
      }))
    : []
  const [checks, probed] = await Promise.all([Promise.all(tasks), Promise.all(writeChecks)])
  const ok = checks.every((c) => c.status !== 'fail')
  if (!options.writeCheck) return {kind: 'doctor', ok, checks}
  // A denial is an answer (read-only credentials are right for an audit); a probe that failed otherwise is not.
  const permissions = probed.flatMap((p) => p.probes)
  return {
    kind: 'doctor',
    ok: ok && permissions.every((p) => p.outcome !== 'error'),
    checks,
    permissions,
    permissionSets: Object.fromEntries(probed.map((p) => [p.region, p.sets])),
  }
}

/**
 * A preflight that checks nothing must not pass: with no database or no region, every row would be
 * 'skip' and the exit 0, so a missing or misplaced config file would look healthy.
 */
function refuseNothingConfigured(config: RegopsConfig): void {
  const missing = [
    config.database ? undefined : 'no database',
    Object.keys(config.regions).length > 0 ? undefined : 'no region',
  ].filter(Boolean)
  if (missing.length === 0) return
  const file = config.file ? `config file ${config.file}` : `no config file found (looked for ${configSearchPaths()})`
  throw new UsageError(`nothing to check: ${missing.join(' and ')} configured; ${file}`, {
    code: 'NOTHING_CONFIGURED',
    hint: 'pass --config FILE or set REGOPS_CONFIG; a database can also come from DATABASE_URL or --database-url',
  })
}

function skip(component: DoctorCheck['component'], name: string, detail: string): DoctorCheck {
  return {component, name, target: '-', status: 'skip', detail, ms: 0}
}

async function timed(
  component: DoctorCheck['component'],
  name: string,
  target: string,
  timeoutMs: number,
  fn: () => Promise<{status: CheckStatus; detail: string}>,
): Promise<DoctorCheck> {
  const started = performance.now()
  let timer: NodeJS.Timeout | undefined
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
    })
    const outcome = await Promise.race([fn(), timeout])
    return {component, name, target, ...outcome, ms: Math.round(performance.now() - started)}
  } catch (error) {
    return {
      component,
      name,
      target,
      status: 'fail',
      detail: redact(errorMessage(error)),
      ms: Math.round(performance.now() - started),
    }
  } finally {
    clearTimeout(timer)
  }
}

/**
 * What the registry caches blob descriptors in decides whether a sweep may act: a redis regops must be
 * able to reach (it evicts what it deletes); an in-process cache it cannot, so acting needs the registry
 * read-only or stopped.
 */
function checkRegistryCache(config: RegopsConfig, timeoutMs: number): Promise<DoctorCheck> {
  const {mode, url} = config.registryCache
  if (mode === 'none') return Promise.resolve(skip('registry-cache', 'cache', 'none (registry.cache)'))
  if (mode === 'inmemory') {
    return Promise.resolve({
      component: 'registry-cache',
      name: 'cache',
      target: 'inmemory',
      status: 'warn',
      detail:
        'in each registry process, out of reach: sweeps act only with --registry-read-only, then restart the registry',
      ms: 0,
    })
  }
  return timed('registry-cache', 'cache', redactUrl(url ?? ''), timeoutMs, async () => {
    const cache = openDescriptorCache(config.registryCache)
    try {
      return {status: 'ok', detail: `redis answers ${await cache.ping()}: sweeps evict the descriptors they act on`}
    } finally {
      await cache.close()
    }
  })
}

async function checkDatabase(url: string): Promise<{status: CheckStatus; detail: string}> {
  const db = openDatabase(url, {max: 1, connectTimeoutMs: 5000})
  try {
    const version = await db.query<{server_version: string}>('show server_version')
    const status = await migrationStatus(db)
    const pending = status.migrations.filter((m) => m.state === 'pending').length
    const drifted = status.migrations.filter((m) => m.state === 'drifted' || m.state === 'missing-file').length
    const schema = `schema v${status.current}${pending ? `, ${pending} pending` : ''}${drifted ? `, ${drifted} drifted` : ''}`
    const detail = `PostgreSQL ${version.rows[0].server_version}; ${schema}`
    if (drifted) return {status: 'fail', detail}
    return {status: pending ? 'warn' : 'ok', detail: pending ? `${detail} (run: regops db migrate up)` : detail}
  } finally {
    await db.close()
  }
}

async function checkRegion(config: RegopsConfig, name: string): Promise<{status: CheckStatus; detail: string}> {
  const region = config.regions[name]
  // Two attempts: a doctor reports a dead endpoint in seconds instead of backing off for a minute.
  const driver = await openDriver(region, {maxAttempts: 2})
  try {
    const steps: string[] = []
    // Reachable is not enough: a URL with a typo (…/registry/v3) lists fine and holds nothing, and a
    // sweep there, or one missing repositories/, would take every blob it sees for an orphan.
    const firstKey = async (prefix: string) => {
      for await (const object of driver.list(prefix)) return object.key
      return undefined
    }
    const [blob, repository] = [await firstKey(BLOBS_ROOT), await firstKey(REPOSITORIES_PREFIX)]
    steps.push('list')
    const sample = blob ?? repository
    if (sample) {
      const stream = await driver.read(sample, {start: 0, end: 0})
      for await (const _ of stream) {
        // one byte is enough to prove read permission
      }
      steps.push('read')
    }
    const done = `${steps.join(', ')} ok`
    if (region.empty) {
      if (sample)
        return {
          status: 'warn',
          detail: `${done}; declared empty, but holds ${blob ? BLOBS_ROOT : REPOSITORIES_PREFIX} (remove empty: true once it is in use)`,
        }
      return {status: 'ok', detail: `${done}; declared empty (no ${BLOBS_ROOT} or ${REPOSITORIES_PREFIX} yet)`}
    }
    if (!blob && !repository) {
      return {
        status: 'fail',
        detail: `${done}, but no ${BLOBS_ROOT} and no ${REPOSITORIES_PREFIX}: not a registry root (a typo in the URL?); a new region takes empty: true`,
      }
    }
    if (!repository)
      return {
        status: 'fail',
        detail: `${done}, but ${BLOBS_ROOT} without ${REPOSITORIES_PREFIX}: a sweep here would take every blob for an orphan`,
      }
    if (!blob)
      return {
        status: 'fail',
        detail: `${done}, but ${REPOSITORIES_PREFIX} without ${BLOBS_ROOT}: the blobs are elsewhere`,
      }
    return {status: 'ok', detail: `${done}; ${BLOBS_ROOT} and ${REPOSITORIES_PREFIX} present`}
  } finally {
    await driver.close()
  }
}

/**
 * An upload abandoned on S3 leaves a pending multipart upload that no object listing shows and that is
 * billed until aborted. A bucket lifecycle rule (AbortIncompleteMultipartUpload) aborts them after some
 * days; without one, only `regops sweep uploads --delete` does. A warning, not a failure: the registry
 * works either way, and a bucket whose lifecycle regops may not read is "unknown".
 */
async function checkUploadLifecycle(
  config: RegopsConfig,
  name: string,
): Promise<{status: CheckStatus; detail: string}> {
  const driver = await openDriver(config.regions[name], {maxAttempts: 2})
  try {
    const rule = await (driver as S3Driver).abortIncompleteUploadsRule()
    if (rule.state === 'present')
      return {
        status: 'ok',
        detail: `AbortIncompleteMultipartUpload after ${rule.days.join(', ')} days: abandoned uploads' parts are freed`,
      }
    if (rule.state === 'none')
      return {
        status: 'warn',
        detail:
          "no AbortIncompleteMultipartUpload lifecycle rule: abandoned uploads' multipart parts stay (and are billed) until regops sweep uploads --delete aborts them",
      }
    return {status: 'warn', detail: `unknown: the lifecycle configuration could not be read (${rule.reason})`}
  } finally {
    await driver.close()
  }
}

async function checkRegistry(registry: RegistryConfig): Promise<{status: CheckStatus; detail: string}> {
  const agent = new Agent({connect: tlsConnectOptions(registry, registry.url, 'the registry')})
  try {
    const url = new URL(registry.url)
    const response = await agent.request({
      origin: url.origin,
      path: `${url.pathname.replace(/\/+$/, '')}/v2/`,
      method: 'GET',
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    })
    const apiVersion = response.headers['docker-distribution-api-version']
    await response.body.dump()
    if (response.statusCode === 200)
      return {status: 'ok', detail: `GET /v2/ 200${apiVersion ? ` (${apiVersion})` : ''}`}
    if (response.statusCode === 401) {
      const challenge = String(response.headers['www-authenticate'] ?? '').split(' ')[0]
      return {status: 'ok', detail: `GET /v2/ 401: reachable, ${challenge || 'auth'} authentication required`}
    }
    return {status: 'fail', detail: `GET /v2/ answered HTTP ${response.statusCode}`}
  } catch (error) {
    const untrusted = untrustedCertificateCode(error)
    if (!untrusted) throw error
    return {
      status: 'fail',
      detail: `the TLS certificate of ${registry.url} is not trusted (${untrusted}): ${untrustedCertificateHint('registry')}`,
    }
  } finally {
    await agent.close()
  }
}
