/**
 * Every secret regops learns (passwords, secret keys, tokens, passwords inside URLs) is registered
 * here, and every byte regops writes passes through `redact`. Redacting at the writer rather than at
 * each call site means a secret that leaks into an error message from a library is still masked.
 */
const MASK = '***'
const secrets = new Set<string>()

export function registerSecret(value: string | undefined | null): void {
  // Very short values would mask innocent text ("a", "1"); they are not credible secrets either.
  if (!value || value.length < 4) return
  secrets.add(value)
  // A header or a config dump may carry it base64-encoded (HTTP Basic, Kubernetes secrets).
  secrets.add(Buffer.from(value).toString('base64').replace(/=+$/, ''))
  try {
    const encoded = encodeURIComponent(value)
    if (encoded !== value) secrets.add(encoded)
  } catch {
    // lone surrogates cannot be URI-encoded; the raw value is still registered
  }
}

/**
 * Credentials that need no registration to be recognised: the signature and credential scope of a
 * presigned S3 URL (a registry's redirect, an SDK error quoting its request) or of a SigV4 Authorization
 * header, a session token, and HTTP Basic / Bearer credentials.
 */
const CREDENTIAL_PATTERNS: Array<[RegExp, string]> = [
  [/((?:X-Amz-(?:Signature|Credential|Security-Token)|AWSAccessKeyId|Signature)=)[^&\s"'<>]+/gi, `$1${MASK}`],
  [/(\bCredential=)[^,&\s"']+/g, `$1${MASK}`],
  // a token has a digit or a symbol: "Bearer authentication required" is prose, not a credential
  [/(\b(?:Basic|Bearer)\s+)(?=[A-Za-z0-9+/=._~-]*[0-9+/=._~-])[A-Za-z0-9+/=._~-]{12,}/g, `$1${MASK}`],
]

/**
 * A URL with its passwords masked: the userinfo password and a `password=` / `sslpassword=` query
 * parameter (libpq reads both). Each password is also registered, so it is masked wherever else it
 * turns up (a library's error text, a log field). Strings that do not parse as URLs are masked by pattern.
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) {
      registerSecret(safeDecode(parsed.password))
      parsed.password = MASK
    }
    for (const key of [...parsed.searchParams.keys()]) {
      if (!PASSWORD_PARAM.test(key)) continue
      registerSecret(parsed.searchParams.get(key))
      parsed.searchParams.set(key, MASK)
    }
    return parsed.toString()
  } catch {
    const userinfo = /^[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:(.*)@/i.exec(url)
    if (userinfo) registerSecret(safeDecode(userinfo[1]))
    return url
      .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*):.*@/i, `$1:${MASK}@`)
      .replace(/([?&](?:ssl)?password=)[^&#\s]*/gi, `$1${MASK}`)
  }
}

const PASSWORD_PARAM = /^(password|sslpassword)$/i

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value)
  } catch {
    return value
  }
}

export function redact(text: string): string {
  if (!text) return text
  let out = text
  // Longest first, so a secret that contains another is masked whole.
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    if (out.includes(secret)) out = out.split(secret).join(MASK)
  }
  for (const [pattern, replacement] of CREDENTIAL_PATTERNS) out = out.replace(pattern, replacement)
  // Passwords in URLs that were never registered (e.g. from a library's error text).
  return out.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)([^@\s/]+)@/gi, `$1${MASK}@`)
}

/** Deep-redacts a JSON-able value (used for --json output and structured logs). */
export function redactValue<T>(value: T): T {
  if (typeof value === 'string') return redact(value) as T
  if (Array.isArray(value)) return value.map((item) => redactValue(item)) as T
  if (value && typeof value === 'object' && !(value instanceof Date) && !Buffer.isBuffer(value)) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = redactValue(v)
    return out as T
  }
  return value
}

export const REDACTED = MASK

/** Environment variables whose values are credentials wherever they are set. */
const SECRET_ENV = [
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'PGPASSWORD',
  'REGOPS_REGISTRY_PASSWORD',
  'REGISTRY_PASSWORD',
]

export function registerEnvironmentSecrets(env: NodeJS.ProcessEnv = process.env): void {
  for (const name of SECRET_ENV) registerSecret(env[name])
  for (const name of ['DATABASE_URL', 'REGOPS_DATABASE_URL']) if (env[name]) redactUrl(env[name]!)
}
