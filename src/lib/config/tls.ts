import {readFileSync} from 'node:fs'

/**
 * How regops trusts one HTTPS endpoint (an S3 region, the registry). Verification is always on unless
 * the configuration says `insecureSkipTlsVerify: true`; `caFile` names the CA bundle of a private PKI.
 */
export interface TlsSettings {
  /** PEM file of the CA(s) that sign the endpoint's certificate: replaces the public roots, as curl --cacert does */
  caFile?: string
  /** no certificate check at all: warned every time a client is built with it */
  insecureSkipTlsVerify?: boolean
}

/** What node:https and undici take as TLS connect options. */
export interface TlsConnectOptions {
  ca?: string
  rejectUnauthorized: boolean
}

export const INSECURE_TLS_WARNING_CODE = 'REGOPS_INSECURE_TLS'

/**
 * The connect options for a client of `endpoint`. With insecureSkipTlsVerify a warning goes out as a
 * process warning of type RegopsWarning, which the logger turns into a stderr line and a --json warning:
 * the opt-out is never silent, whichever client (SDK, undici, loadtest) uses it.
 */
export function tlsConnectOptions(settings: TlsSettings, endpoint: string, what: string): TlsConnectOptions {
  if (settings.insecureSkipTlsVerify) {
    process.emitWarning(
      `TLS certificate verification is OFF for ${what} at ${endpoint} (insecureSkipTlsVerify): anyone on the path can read and change this traffic`,
      {type: 'RegopsWarning', code: INSECURE_TLS_WARNING_CODE},
    )
    return {rejectUnauthorized: false}
  }
  if (settings.caFile) return {ca: readFileSync(settings.caFile, 'utf8'), rejectUnauthorized: true}
  return {rejectUnauthorized: true}
}

/** Node's and OpenSSL's codes for a certificate that was presented but not trusted. */
const UNTRUSTED_CERTIFICATE =
  /^(DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|CERT_UNTRUSTED|CERT_REJECTED|CERT_SIGNATURE_FAILURE|ERR_TLS_CERT_ALTNAME_INVALID|INVALID_CA|UNABLE_TO_DECRYPT_CERT_SIGNATURE)$/

/** The TLS verification code of an error or of its causes, when the failure is an untrusted certificate. */
export function untrustedCertificateCode(error: unknown): string | undefined {
  for (let e = error as {code?: unknown; cause?: unknown} | undefined, depth = 0; e && depth < 5; depth++) {
    if (typeof e.code === 'string' && UNTRUSTED_CERTIFICATE.test(e.code)) return e.code
    e = e.cause as typeof e
  }
  return undefined
}

/** What to tell the operator when a certificate is not trusted. */
export function untrustedCertificateHint(field: string): string {
  return `for a private CA set ${field}.caFile to its PEM bundle; ${field}.insecureSkipTlsVerify: true turns the check off (warned on every use)`
}
