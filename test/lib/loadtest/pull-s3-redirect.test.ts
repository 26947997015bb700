// loadtest pull against docker-registry on S3 (radosgw) with redirects on and token authentication: the
// registry answers blob GETs with a 307 to a presigned radosgw URL. A recording proxy in front of radosgw
// (the registry's S3 endpoint) shows that the storage host never receives an Authorization header from us.
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {startRadosgw} from '../../helpers/radosgw.js'
import {startRegistry, type RegistryServer} from '../../helpers/registry.js'
import {startTokenIssuer, type TokenIssuer} from '../../helpers/token-issuer.js'
import {startHttpProxy, type HttpProxy} from '../../helpers/http-proxy.js'
import {pushImage} from '../../helpers/images.js'
import type {runPullLoadtest as RunPullLoadtest} from '../../../src/lib/loadtest/run-pull.js'
import {loadOptions, openModel} from './options.js'

const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

let runPullLoadtest: typeof RunPullLoadtest
let registry: RegistryServer
let storageProxy: HttpProxy
let issuer: TokenIssuer

before(async () => {
  const rgw = await startRadosgw({buckets: ['registry']})
  cleanups.push(() => rgw.stop())
  storageProxy = await startHttpProxy(rgw.endpoint)
  cleanups.push(() => storageProxy.stop())
  const storage = {
    kind: 's3' as const,
    endpoint: storageProxy.url,
    bucket: 'registry',
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
    region: rgw.region,
  }
  const pusher = await startRegistry({storage})
  cleanups.push(() => pusher.stop())
  await pushImage(pusher.url, 'app/s3', 'v1', {layers: 3, layerSize: 8192, seed: 's3'})
  issuer = await startTokenIssuer({lifetimeSeconds: 60})
  cleanups.push(() => issuer.stop())
  registry = await startRegistry({storage, redirect: true, auth: issuer.registryAuth()})
  cleanups.push(() => registry.stop())
  // Loading undici (npm) replaces global fetch's dispatcher, which the image helpers cannot use: after the push.
  ;({runPullLoadtest} = await import('../../../src/lib/loadtest/run-pull.js'))
})

test('the layer hop to S3 is followed and timed as its own stage, and S3 never sees our Authorization header', async () => {
  storageProxy.requests.length = 0
  const report = await runPullLoadtest(
    loadOptions({
      registry: {url: registry.url},
      images: [{repository: 'app/s3', reference: 'v1', weight: 1}],
      model: openModel(10, 2000),
      verify: true,
    }),
  )
  assert.equal(report.pulls.failed, 0, JSON.stringify(report.errors))
  assert.ok(report.pulls.succeeded >= 15)
  // config + 3 layers per pull, each through one 307 to the storage host
  assert.equal(report.stages.redirect!.count, report.pulls.succeeded * 4)
  assert.equal(report.stages.config!.statuses['307'], report.pulls.succeeded)
  assert.equal(report.stages.redirect!.statuses['200'], report.pulls.succeeded * 4)
  const presigned = storageProxy.requests.filter((r) => /X-Amz-Signature=/i.test(r.url))
  assert.equal(presigned.length, report.pulls.succeeded * 4, 'every blob body came from the storage host')
  assert.deepEqual(
    presigned.filter((r) => r.headers.authorization !== undefined),
    [],
  )
  assert.ok(
    !storageProxy.requests.some((r) => /^Bearer /i.test(r.headers.authorization ?? '')),
    'no bearer token ever reached storage',
  )
  assert.equal(issuer.requests.length, 1, 'one token for the whole run (60 s lifetime)')
})
