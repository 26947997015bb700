// One endpoint resolution for the undici read path and the SDK write path: a table of configurations
// and environments, and both drivers built from the same region agree on where requests go.
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {resolveS3Endpoint, type S3EndpointInput} from '../../../src/lib/storage/s3-endpoint.js'
import {S3Driver} from '../../../src/lib/storage/s3.js'
import type {S3RegionConfig} from '../../../src/lib/config/config.js'

const plain: S3EndpointInput = {bucket: 'registry-eu', region: 'eu-west-1', forcePathStyle: false}

const cases: Array<{
  name: string
  input: S3EndpointInput
  env?: Record<string, string>
  endpoint: string
  pathStyle: boolean
  origin: string
  source: string
}> = [
  {
    name: 'AWS, nothing set: regional endpoint, virtual-hosted',
    input: plain,
    endpoint: 'https://s3.eu-west-1.amazonaws.com',
    pathStyle: false,
    origin: 'https://registry-eu.s3.eu-west-1.amazonaws.com',
    source: 'aws',
  },
  {
    name: 'AWS, bucket with dots: path style (the wildcard certificate covers one label)',
    input: {...plain, bucket: 'registry.eu.example'},
    endpoint: 'https://s3.eu-west-1.amazonaws.com',
    pathStyle: true,
    origin: 'https://s3.eu-west-1.amazonaws.com',
    source: 'aws',
  },
  {
    name: 'AWS, FIPS',
    input: plain,
    env: {AWS_USE_FIPS_ENDPOINT: 'true'},
    endpoint: 'https://s3-fips.eu-west-1.amazonaws.com',
    pathStyle: false,
    origin: 'https://registry-eu.s3-fips.eu-west-1.amazonaws.com',
    source: 'aws',
  },
  {
    name: 'AWS, dual-stack and FIPS',
    input: plain,
    env: {AWS_USE_FIPS_ENDPOINT: '1', AWS_USE_DUALSTACK_ENDPOINT: 'TRUE'},
    endpoint: 'https://s3-fips.dualstack.eu-west-1.amazonaws.com',
    pathStyle: false,
    origin: 'https://registry-eu.s3-fips.dualstack.eu-west-1.amazonaws.com',
    source: 'aws',
  },
  {
    name: 'forcePathStyle on AWS',
    input: {...plain, forcePathStyle: true},
    endpoint: 'https://s3.eu-west-1.amazonaws.com',
    pathStyle: true,
    origin: 'https://s3.eu-west-1.amazonaws.com',
    source: 'aws',
  },
  {
    name: 'AWS_ENDPOINT_URL_S3: path style, before AWS_ENDPOINT_URL',
    input: plain,
    env: {AWS_ENDPOINT_URL_S3: 'http://rgw.internal:7480', AWS_ENDPOINT_URL: 'http://other:9000'},
    endpoint: 'http://rgw.internal:7480',
    pathStyle: true,
    origin: 'http://rgw.internal:7480',
    source: 'AWS_ENDPOINT_URL_S3',
  },
  {
    name: 'AWS_ENDPOINT_URL alone',
    input: plain,
    env: {AWS_ENDPOINT_URL: 'http://minio:9000/'},
    endpoint: 'http://minio:9000',
    pathStyle: true,
    origin: 'http://minio:9000',
    source: 'AWS_ENDPOINT_URL',
  },
  {
    name: 'the configured endpoint wins over the environment and FIPS',
    input: {...plain, endpoint: 'https://s3.us-east-1.amazonaws.com', forcePathStyle: true},
    env: {AWS_ENDPOINT_URL_S3: 'http://rgw.internal:7480', AWS_USE_FIPS_ENDPOINT: 'true'},
    endpoint: 'https://s3.us-east-1.amazonaws.com',
    pathStyle: true,
    origin: 'https://s3.us-east-1.amazonaws.com',
    source: 'config',
  },
  {
    name: 'a configured endpoint with forcePathStyle: false is virtual-hosted',
    input: {...plain, endpoint: 'https://storage.example.com'},
    endpoint: 'https://storage.example.com',
    pathStyle: false,
    origin: 'https://registry-eu.storage.example.com',
    source: 'config',
  },
  {
    name: 'a configured endpoint, forcePathStyle false, but a dotted bucket: path style',
    input: {...plain, bucket: 'a.b', endpoint: 'https://storage.example.com'},
    endpoint: 'https://storage.example.com',
    pathStyle: true,
    origin: 'https://storage.example.com',
    source: 'config',
  },
]

for (const c of cases) {
  test(`endpoint: ${c.name}`, () => {
    assert.deepEqual(resolveS3Endpoint(c.input, c.env ?? {}), {
      endpoint: c.endpoint,
      pathStyle: c.pathStyle,
      origin: c.origin,
      source: c.source,
    })
  })
}

test('endpoint: not a URL, or not http(s), is a usage error naming where it came from', () => {
  assert.throws(() => resolveS3Endpoint(plain, {AWS_ENDPOINT_URL_S3: 'rgw:7480'}), /AWS_ENDPOINT_URL_S3/)
  assert.throws(() => resolveS3Endpoint(plain, {AWS_ENDPOINT_URL: 'ftp://x'}), /AWS_ENDPOINT_URL must be http/)
})

test('the SDK client of a driver gets the endpoint and addressing the read path uses', async () => {
  const region: S3RegionConfig = {
    kind: 's3',
    name: 'eu',
    url: 's3://registry.eu/docker/registry/v2',
    bucket: 'registry.eu',
    prefix: 'docker/registry/v2',
    region: 'eu-west-1',
    forcePathStyle: false,
    checksums: 'when_supported',
    concurrency: 4,
    accessKeyId: 'AKIAEXAMPLE',
    secretAccessKey: 'secret',
  }
  const saved = {...process.env}
  process.env.AWS_USE_FIPS_ENDPOINT = 'true'
  try {
    const driver = new S3Driver(region)
    const config = (await driver.sdkClient()).config
    const endpoint = await config.endpoint!()
    assert.equal(`${endpoint.protocol}//${endpoint.hostname}`, 'https://s3-fips.eu-west-1.amazonaws.com')
    assert.equal(config.forcePathStyle, true, 'a dotted bucket goes in the path on both paths')
    assert.equal(await config.useFipsEndpoint(), false, 'the SDK adds no FIPS resolution of its own')
    await driver.close()
  } finally {
    process.env = saved
  }
})
