import {createRequire} from 'node:module'
import type {Redis} from 'ioredis'
import {RefusedError, StorageError, errorMessage} from '../errors.js'
import {redactUrl} from '../output/redact.js'

/**
 * What the registry caches about blobs (distribution's `storage.cache.blobdescriptor`). A blob removed
 * behind a cache's back is still "there" for the registry: a re-push skips the upload (HEAD says it
 * exists) and the registry accepts a manifest whose blob is gone, so the image cannot be pulled.
 * - `none`: nothing to do;
 * - `inmemory` (the stock configuration): the cache lives inside each registry process, out of our
 *   reach, so acting is safe only while the registry is read-only or stopped, and it must be restarted;
 * - `redis`: we evict the entries of every digest we act on, before and after acting.
 */
export type RegistryCacheMode = 'none' | 'inmemory' | 'redis'

export interface RegistryCacheConfig {
  mode: RegistryCacheMode
  /** redis://[:password@]host:port[/db] or rediss://… (mode redis) */
  url?: string
}

export interface DescriptorCache {
  readonly mode: RegistryCacheMode
  /**
   * Removes the registry's cached descriptors of these digests. With distribution 2.8's redis cache the
   * global hash `blobs::<digest>` is what every lookup reads (a repository's scoped lookup checks its set
   * membership, then reads that same global hash for digest and size), so deleting it makes the next
   * lookup anywhere miss and go to storage. Where the repositories are known, their scoped hash and set
   * membership go too, so no stale entry is left behind for a later registry version to trust.
   */
  evict(digests: string[], repositoriesOf?: (digest: string) => readonly string[]): Promise<number>
  /** PING, for doctor */
  ping(): Promise<string>
  close(): Promise<void>
}

/** distribution registry/storage/cache/redis key names (2.x) */
export const redisKeys = {
  descriptor: (digest: string) => `blobs::${digest}`,
  repositoryDescriptor: (repository: string, digest: string) => `repository::${repository}::blobs::${digest}`,
  repositorySet: (repository: string) => `repository::${repository}::blobs`,
}

/**
 * The refusal for acting while a cache we cannot reach is in front of the storage. `readOnly` is the
 * operator's statement that the registry is in maintenance (read-only) mode or stopped.
 */
export function assertCacheAllowsActing(mode: RegistryCacheMode, readOnly: boolean): void {
  if (mode !== 'inmemory' || readOnly) return
  throw new RefusedError(
    'the registry caches blob descriptors in memory (registry.cache: inmemory): a blob deleted behind that cache still reads as present, a re-push skips its upload and the image breaks',
    {
      code: 'REGISTRY_CACHE',
      hint: 'put the registry in read-only mode (storage.maintenance.readonly) or stop it, pass --registry-read-only, and restart every registry process afterwards; or switch the registry to a redis cache and set registry.cache to its URL',
    },
  )
}

class NoCache implements DescriptorCache {
  constructor(readonly mode: 'none' | 'inmemory') {}
  async evict(): Promise<number> {
    return 0
  }
  async ping(): Promise<string> {
    return this.mode === 'none' ? 'no cache' : 'in each registry process (not reachable)'
  }
  async close(): Promise<void> {}
}

class RedisDescriptorCache implements DescriptorCache {
  readonly mode = 'redis' as const
  private readonly client: Redis

  constructor(private readonly url: string) {
    // No offline queue and few retries: a sweep must learn at once that eviction failed, not wait.
    // ioredis is loaded only when a Redis cache is configured: every command opens this module.
    const {Redis: RedisClient} = createRequire(import.meta.url)('ioredis') as typeof import('ioredis')
    this.client = new RedisClient(url, {
      lazyConnect: true,
      maxRetriesPerRequest: 2,
      enableOfflineQueue: false,
      connectTimeout: 5_000,
    })
    // ioredis emits 'error' for every failed reconnect; the command that needed it fails on its own.
    this.client.on('error', () => {})
  }

  private async connected(): Promise<Redis> {
    if (this.client.status === 'wait' || this.client.status === 'end') await this.client.connect()
    return this.client
  }

  async evict(digests: string[], repositoriesOf?: (digest: string) => readonly string[]): Promise<number> {
    if (digests.length === 0) return 0
    try {
      const client = await this.connected()
      const pipeline = client.pipeline()
      for (const digest of digests) {
        pipeline.del(redisKeys.descriptor(digest))
        for (const repository of repositoriesOf?.(digest) ?? []) {
          pipeline.del(redisKeys.repositoryDescriptor(repository, digest))
          pipeline.srem(redisKeys.repositorySet(repository), digest)
        }
      }
      const replies = (await pipeline.exec()) ?? []
      const failed = replies.find(([error]) => error)
      if (failed) throw failed[0]
      return replies.reduce((sum, [, removed]) => sum + Number(removed ?? 0), 0)
    } catch (error) {
      throw new StorageError(
        `cannot evict the registry's cached blob descriptors at ${redactUrl(this.url)}: ${errorMessage(error)}`,
        {},
        {
          code: 'REGISTRY_CACHE',
          hint: 'nothing was acted on for this batch; check registry.cache and that this host reaches the Redis',
        },
      )
    }
  }

  async ping(): Promise<string> {
    try {
      const client = await this.connected()
      return await client.ping()
    } catch (error) {
      throw new StorageError(
        `cannot reach the registry's blob-descriptor cache at ${redactUrl(this.url)}: ${errorMessage(error)}`,
      )
    }
  }

  async close(): Promise<void> {
    if (this.client.status !== 'wait' && this.client.status !== 'end')
      await this.client.quit().catch(() => this.client.disconnect())
  }
}

export function openDescriptorCache(config: RegistryCacheConfig | undefined): DescriptorCache {
  if (!config || config.mode === 'none') return new NoCache('none')
  if (config.mode === 'inmemory') return new NoCache('inmemory')
  if (!config.url) throw new RefusedError('registry.cache is redis but has no URL')
  return new RedisDescriptorCache(config.url)
}
