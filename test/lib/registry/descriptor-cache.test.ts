// The registry's blob-descriptor cache, on the real parts: docker-registry 2.8 with a redis cache on a
// real redis-server, and with the stock in-memory cache. A blob removed behind a cache still reads as
// present until its descriptor is evicted; with inmemory there is nothing to evict, so acting is refused.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {rm} from 'node:fs/promises'
import path from 'node:path'
import {startRedis, type RedisServer} from '../../helpers/redis.js'
import {startRegistry, type RegistryServer} from '../../helpers/registry.js'
import {blobExists, pushImage} from '../../helpers/images.js'
import {assertCacheAllowsActing, openDescriptorCache, redisKeys} from '../../../src/lib/registry/descriptor-cache.js'
import {RefusedError, StorageError} from '../../../src/lib/errors.js'

const blobPath = (root: string, digest: string) =>
  path.join(root, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data')

describe('redis blob-descriptor cache', () => {
  let redis: RedisServer
  let registry: RegistryServer
  before(async () => {
    redis = await startRedis()
    registry = await startRegistry({storage: {kind: 'filesystem'}, cache: {redis: redis.addr}})
  })
  after(async () => {
    await registry?.stop()
    await redis?.stop()
  })

  test('a blob deleted behind the cache reads as present until evicted; evict removes the global and scoped entries', async () => {
    const image = await pushImage(registry.url, 'team/app', 'v1', {layers: 2, seed: 'cache-redis'})
    const [layer, kept] = image.layerDigests
    // A HEAD through the registry fills the cache (distribution caches on a successful stat).
    assert.equal(await blobExists(registry.url, 'team/app', layer), true)
    assert.equal(await redis.cli(['EXISTS', redisKeys.descriptor(layer)]), '1')
    assert.equal(await redis.cli(['SISMEMBER', redisKeys.repositorySet('team/app'), layer]), '1')

    await rm(blobPath(registry.storageRoot!, layer))
    assert.equal(
      await blobExists(registry.url, 'team/app', layer),
      true,
      'the hazard: the cache still answers "exists"',
    )

    const cache = openDescriptorCache({mode: 'redis', url: redis.url})
    try {
      assert.equal(await cache.ping(), 'PONG')
      const removed = await cache.evict([layer], () => ['team/app'])
      assert.ok(removed >= 2, `removed ${removed} entries`)
      assert.equal(await redis.cli(['EXISTS', redisKeys.descriptor(layer)]), '0')
      assert.equal(await redis.cli(['EXISTS', redisKeys.repositoryDescriptor('team/app', layer)]), '0')
      assert.equal(await redis.cli(['SISMEMBER', redisKeys.repositorySet('team/app'), layer]), '0')
      assert.equal(await redis.cli(['EXISTS', redisKeys.descriptor(kept)]), '1', 'other digests are left alone')
    } finally {
      await cache.close()
    }
    assert.equal(
      await blobExists(registry.url, 'team/app', layer),
      false,
      'after eviction the registry asks storage, which has no blob',
    )
    assert.equal(await blobExists(registry.url, 'team/app', kept), true)
  })

  test('evicting only the global descriptor already makes every repository lookup miss (distribution 2.8)', async () => {
    const image = await pushImage(registry.url, 'team/other', 'v1', {layers: 1, seed: 'cache-global-only'})
    const [layer] = image.layerDigests
    assert.equal(await blobExists(registry.url, 'team/other', layer), true)
    await rm(blobPath(registry.storageRoot!, layer))
    const cache = openDescriptorCache({mode: 'redis', url: redis.url})
    try {
      await cache.evict([layer])
    } finally {
      await cache.close()
    }
    assert.equal(
      await redis.cli(['SISMEMBER', redisKeys.repositorySet('team/other'), layer]),
      '1',
      'the scoped set entry is still there',
    )
    assert.equal(await blobExists(registry.url, 'team/other', layer), false)
  })

  test('an unreachable redis fails the eviction loudly, naming it without its password', async () => {
    const cache = openDescriptorCache({mode: 'redis', url: 'redis://:s3cret-pw@127.0.0.1:1/0'})
    try {
      await assert.rejects(cache.evict(['sha256:' + 'a'.repeat(64)]), (error: Error) => {
        assert.ok(error instanceof StorageError)
        assert.match(error.message, /127\.0\.0\.1:1/)
        assert.doesNotMatch(error.message, /s3cret-pw/)
        return true
      })
    } finally {
      await cache.close()
    }
  })
})

describe('inmemory blob-descriptor cache (the stock configuration)', () => {
  let registry: RegistryServer
  before(async () => {
    registry = await startRegistry({storage: {kind: 'filesystem'}, cache: 'inmemory'})
  })
  after(async () => {
    await registry?.stop()
  })

  test('a blob deleted behind it reads as present, so acting is refused unless the registry is read-only or stopped', async () => {
    const image = await pushImage(registry.url, 'team/app', 'v1', {layers: 1, seed: 'cache-inmemory'})
    const [layer] = image.layerDigests
    assert.equal(await blobExists(registry.url, 'team/app', layer), true)
    await rm(blobPath(registry.storageRoot!, layer))
    assert.equal(
      await blobExists(registry.url, 'team/app', layer),
      true,
      'the in-process cache cannot be reached from outside',
    )

    assert.throws(
      () => assertCacheAllowsActing('inmemory', false),
      (error: Error) => error instanceof RefusedError && /read-only/.test((error as RefusedError).hint ?? ''),
    )
    assert.doesNotThrow(() => assertCacheAllowsActing('inmemory', true))
    assert.doesNotThrow(() => assertCacheAllowsActing('redis', false))
    assert.doesNotThrow(() => assertCacheAllowsActing('none', false))
  })
})
