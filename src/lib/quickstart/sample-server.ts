import {createServer, type IncomingMessage, type ServerResponse} from 'node:http'
import {once} from 'node:events'
import type {AddressInfo} from 'node:net'
import {pipeline} from 'node:stream/promises'
import type {StorageDriver} from '../storage/driver.js'
import {isDigest, isRepositoryName, isTag, parseLink, pathFor} from '../storage/layout.js'
import {MediaTypes} from '../storage/manifest.js'

/** Manifests are read whole; a client refuses anything larger (containerd's limit). */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024

export interface SampleServer {
  url: string
  /** requests answered, by status */
  statuses: Record<string, number>
  close(): Promise<void>
}

/**
 * The read side of the registry API (ping, manifests by tag or digest, blobs) served straight from a
 * distribution layout on loopback, for quickstart's load test when no registry is installed. It answers
 * as distribution does from the same files: a tag through its current link, a manifest only where the
 * repository has its revision link, a blob only where the repository has its _layers link.
 */
export async function serveSampleRegistry(driver: StorageDriver): Promise<SampleServer> {
  const statuses: Record<string, number> = {}
  const server = createServer((request, response) => {
    answer(driver, request, response)
      .catch((error: unknown) => {
        if (!response.headersSent) send(response, 500, 'UNKNOWN', String(error))
        else response.destroy()
      })
      .finally(() => {
        statuses[response.statusCode] = (statuses[response.statusCode] ?? 0) + 1
      })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const {port} = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    statuses,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

async function answer(driver: StorageDriver, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const path = new URL(request.url ?? '/', 'http://localhost').pathname
  if (request.method !== 'GET' && request.method !== 'HEAD') return send(response, 405, 'UNSUPPORTED', 'read only')
  if (path === '/v2/' || path === '/v2') {
    response.writeHead(200, {'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0'})
    response.end('{}')
    return
  }
  const route = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(path)
  const [repository, what, reference] = route ? [route[1], route[2], decodeURIComponent(route[3])] : []
  // Names and references go into storage keys: only what the distribution grammar allows.
  if (
    !repository ||
    !isRepositoryName(repository) ||
    !(isDigest(reference!) || (what === 'manifests' && isTag(reference!)))
  )
    return send(response, 404, 'NAME_UNKNOWN', `no route for ${path}`)
  if (what === 'manifests') return serveManifest(driver, repository, reference!, request, response)
  return serveBlob(driver, repository, reference!, request, response)
}

async function readLink(driver: StorageDriver, key: string): Promise<string | undefined> {
  if (!(await driver.stat(key))) return undefined
  return parseLink(await driver.readSmall(key, 1024), key)
}

async function serveManifest(
  driver: StorageDriver,
  repository: string,
  reference: string,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const digest = isDigest(reference)
    ? reference
    : await readLink(driver, pathFor({kind: 'tag-current-link', repository, tag: reference}))
  const known =
    digest !== undefined &&
    (await readLink(driver, pathFor({kind: 'manifest-revision-link', repository, digest}))) === digest
  if (!digest || !known) return send(response, 404, 'MANIFEST_UNKNOWN', `${repository}:${reference}`)
  const body = await driver.readSmall(pathFor({kind: 'blob-data', digest}), MAX_MANIFEST_BYTES)
  const mediaType = (JSON.parse(body.toString('utf8')) as {mediaType?: string}).mediaType ?? MediaTypes.dockerManifest
  response.writeHead(200, {
    'content-type': mediaType,
    'content-length': body.length,
    'docker-content-digest': digest,
  })
  response.end(request.method === 'HEAD' ? undefined : body)
}

async function serveBlob(
  driver: StorageDriver,
  repository: string,
  digest: string,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const linked = (await readLink(driver, pathFor({kind: 'layer-link', repository, digest}))) === digest
  const key = pathFor({kind: 'blob-data', digest})
  const info = linked ? await driver.stat(key) : undefined
  if (!info) return send(response, 404, 'BLOB_UNKNOWN', `${repository}@${digest}`)
  response.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': info.size,
    'docker-content-digest': digest,
  })
  if (request.method === 'HEAD') return void response.end()
  await pipeline(await driver.read(key), response)
}

function send(response: ServerResponse, status: number, code: string, message: string): void {
  const body = JSON.stringify({errors: [{code, message}]})
  response.writeHead(status, {'content-type': 'application/json', 'content-length': Buffer.byteLength(body)})
  response.end(body)
}
