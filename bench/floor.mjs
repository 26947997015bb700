// The floors a sweep is measured against, with as little as a client can do (plain JavaScript, so no
// TypeScript loader's start-up lands in the figure; S3 through fetch and aws4, not the SDK):
//   blobs      one sequential listing of blobs/ (what the metadata strategy cannot do without)
//   all        one sequential listing of everything (blobs/ and repositories/)
//   manifests  the listing of everything, plus one read of the manifest blob of every revision link as
//              the listing finds it, at most `concurrency` in flight (the storage strategy's floor)
// Prints `<keys listed> <manifests read>`.
//   node bench/floor.mjs fs <root> <mode>
//   node bench/floor.mjs s3 <endpoint> <bucket> <prefix/> <accessKeyId> <secretAccessKey> <mode> [concurrency]
import {readdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import aws4 from 'aws4'
import pLimit from 'p-limit'

const REVISION_LINK = /_manifests\/revisions\/sha256\/([a-f0-9]{64})\/link$/
const blobKey = (hex) => `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`

function filesystemFloor(root, mode) {
  let keys = 0
  let manifests = 0
  // Synchronous, depth first, unsorted: less than any walk that must yield byte order.
  const walk = (dir, key) => {
    for (const entry of readdirSync(dir, {withFileTypes: true})) {
      if (entry.isDirectory()) walk(join(dir, entry.name), `${key}${entry.name}/`)
      else {
        keys++
        const match = mode === 'manifests' ? REVISION_LINK.exec(`${key}${entry.name}`) : null
        if (match && readFileSync(join(root, blobKey(match[1]))).length > 0) manifests++
      }
    }
  }
  walk(mode === 'blobs' ? join(root, 'blobs') : root, mode === 'blobs' ? 'blobs/' : '')
  return [keys, manifests]
}

async function s3Floor([endpoint, bucket, prefix, accessKeyId, secretAccessKey, mode, concurrency = '8']) {
  const url = new URL(endpoint)
  const send = async (path, query = '') => {
    const request = aws4.sign(
      {host: url.host, path: `/${bucket}/${path}${query}`, service: 's3', region: 'us-east-1'},
      {accessKeyId, secretAccessKey},
    )
    const response = await fetch(`${url.protocol}//${url.host}${request.path}`, {headers: request.headers})
    if (!response.ok) throw new Error(`${response.status} for ${request.path}`)
    return response
  }
  const limit = pLimit(Number(concurrency))
  const reads = []
  let keys = 0
  let manifests = 0
  let token
  do {
    const params = new URLSearchParams({'list-type': '2', prefix: mode === 'blobs' ? `${prefix}blobs/` : prefix})
    if (token) params.set('continuation-token', token)
    const page = await (await send('', `?${params}`)).text()
    for (const [, key] of page.matchAll(/<Key>([^<]*)<\/Key>/g)) {
      keys++
      const match = mode === 'manifests' ? REVISION_LINK.exec(key) : null
      if (match)
        reads.push(
          limit(async () => {
            await (await send(`${prefix}${blobKey(match[1])}`)).arrayBuffer()
            manifests++
          }),
        )
    }
    token = /<IsTruncated>true<\/IsTruncated>/.test(page)
      ? /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(page)?.[1]
      : undefined
  } while (token)
  await Promise.all(reads)
  return [keys, manifests]
}

const [backend, ...rest] = process.argv.slice(2)
const [keys, manifests] = backend === 'fs' ? filesystemFloor(rest[0], rest[1]) : await s3Floor(rest)
console.log(`${keys} ${manifests}`)
