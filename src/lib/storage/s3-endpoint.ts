import {UsageError} from '../errors.js'

export interface S3EndpointInput {
  bucket: string
  region: string
  /** the region's configured endpoint */
  endpoint?: string
  /** as the configuration resolved it: true when stated, or when an endpoint is configured and it is not stated false */
  forcePathStyle: boolean
}

export interface S3Endpoint {
  /** the service endpoint, without the bucket: what the SDK gets as `endpoint` */
  endpoint: string
  /** whether the bucket goes in the path (`/bucket/key`) rather than the host (`bucket.host`) */
  pathStyle: boolean
  /** where requests go: the endpoint's origin, with the bucket in the host name when virtual-hosted */
  origin: string
  /** where the endpoint came from, for messages */
  source: 'config' | 'AWS_ENDPOINT_URL_S3' | 'AWS_ENDPOINT_URL' | 'aws'
}

const TRUE = /^(1|true)$/i

/**
 * Where a region's S3 requests go, decided once for both paths (the undici read path and the SDK's
 * writes), so that a LIST and the DELETE after it reach the same bucket:
 *
 * - endpoint: the region's `endpoint`, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` (the AWS
 *   CLI and SDKs' variables), else AWS's regional endpoint, with `AWS_USE_FIPS_ENDPOINT` and
 *   `AWS_USE_DUALSTACK_ENDPOINT` choosing its FIPS and dual-stack forms;
 * - path style: as configured (an endpoint implies it, `forcePathStyle` overrides), and also for an
 *   endpoint from the environment (S3-compatible stores rarely have wildcard DNS), and always for a
 *   bucket whose name is not a single DNS label set (dots: `my.bucket.s3.amazonaws.com` fails TLS
 *   against the `*.s3.amazonaws.com` certificate; upper case or `_` is not a host name).
 */
export function resolveS3Endpoint(input: S3EndpointInput, env: NodeJS.ProcessEnv = process.env): S3Endpoint {
  const fromEnv = env.AWS_ENDPOINT_URL_S3
    ? ({endpoint: env.AWS_ENDPOINT_URL_S3, source: 'AWS_ENDPOINT_URL_S3'} as const)
    : env.AWS_ENDPOINT_URL
      ? ({endpoint: env.AWS_ENDPOINT_URL, source: 'AWS_ENDPOINT_URL'} as const)
      : undefined
  const chosen = input.endpoint
    ? {endpoint: input.endpoint, source: 'config' as const}
    : (fromEnv ?? {endpoint: awsEndpoint(input.region, env), source: 'aws' as const})
  let url: URL
  try {
    url = new URL(chosen.endpoint)
  } catch {
    throw new UsageError(`S3 endpoint from ${chosen.source} is not a URL: '${chosen.endpoint}'`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`S3 endpoint from ${chosen.source} must be http:// or https://, got '${chosen.endpoint}'`)
  const pathStyle =
    input.forcePathStyle || chosen.source === 'AWS_ENDPOINT_URL_S3' || chosen.source === 'AWS_ENDPOINT_URL'
      ? true
      : !isVirtualHostable(input.bucket)
  const endpoint = url.origin + url.pathname.replace(/\/+$/, '')
  const origin = pathStyle ? url.origin : `${url.protocol}//${input.bucket}.${url.host}`
  return {endpoint, pathStyle, origin, source: chosen.source}
}

function awsEndpoint(region: string, env: NodeJS.ProcessEnv): string {
  const fips = TRUE.test(env.AWS_USE_FIPS_ENDPOINT ?? '')
  const dualstack = TRUE.test(env.AWS_USE_DUALSTACK_ENDPOINT ?? '')
  return `https://s3${fips ? '-fips' : ''}${dualstack ? '.dualstack' : ''}.${region}.amazonaws.com`
}

/** A bucket name that can be one DNS label in front of the endpoint's host name. */
function isVirtualHostable(bucket: string): boolean {
  return /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket)
}
