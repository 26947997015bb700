// The floor an audit of two S3 buckets is measured against: as little as a client can do, in plain
// JavaScript (no TypeScript loader, no CLI framework) on the stack regops reads with (undici, aws4).
//   list  list both buckets' blobs/ (16 ranges in flight each), compare nothing
//   get   the same, then GET every listed blob and hash it, `concurrency` in flight per bucket
// Prints what it listed and read, and how long the GETs took.
//   node bench/audit-floor.mjs <mode> <concurrency> <prefix/> <endpoint> <bucket> <keyId> <secret> <endpoint> <bucket> <keyId> <secret>
import {createHash} from 'node:crypto'
import aws4 from 'aws4'
import {Pool} from 'undici'

const [mode, concurrency, prefix, ...regions] = process.argv.slice(2)
const buckets = [regions.slice(0, 4), regions.slice(4, 8)].map(([endpoint, bucket, accessKeyId, secretAccessKey]) => {
  const url = new URL(endpoint)
  return {url, bucket, credentials: {accessKeyId, secretAccessKey}, pool: new Pool(url.origin)}
})

async function get(b, path) {
  const signed = aws4.sign(
    {
      host: b.url.host,
      path: `/${b.bucket}/${path}`,
      service: 's3',
      region: 'us-east-1',
      headers: {'x-amz-content-sha256': 'UNSIGNED-PAYLOAD'},
    },
    b.credentials,
  )
  const response = await b.pool.request({method: 'GET', path: signed.path, headers: signed.headers})
  const body = Buffer.from(await response.body.arrayBuffer())
  if (response.statusCode !== 200) throw new Error(`${response.statusCode} for ${path}`)
  return body
}

async function listRange(b, range) {
  const keys = []
  let token
  do {
    const query = new URLSearchParams({'list-type': '2', prefix: range})
    if (token) query.set('continuation-token', token)
    const page = (await get(b, `?${query}`)).toString()
    for (const [, key] of page.matchAll(/<Key>([^<]*)<\/Key>/g)) keys.push(key)
    token = /<IsTruncated>true/.test(page) ? /<NextContinuationToken>([^<]*)</.exec(page)[1] : undefined
  } while (token)
  return keys
}

const listed = await Promise.all(
  buckets.map(async (b) =>
    (await Promise.all([...'0123456789abcdef'].map((d) => listRange(b, `${prefix}blobs/sha256/${d}`)))).flat(),
  ),
)
const started = performance.now()
let read = 0
if (mode === 'get') {
  await Promise.all(
    buckets.map(async (b, i) => {
      const keys = listed[i]
      let next = 0
      const reader = async () => {
        while (next < keys.length) {
          const key = keys[next++]
          createHash('sha256')
            .update(await get(b, key))
            .digest('hex')
          read++
        }
      }
      await Promise.all(Array.from({length: Number(concurrency)}, reader))
    }),
  )
}
const seconds = (performance.now() - started) / 1000
console.log(
  `listed ${listed[0].length}+${listed[1].length}; read ${read}${mode === 'get' ? ` in ${seconds.toFixed(2)} s (${Math.round(read / seconds)}/s)` : ''}`,
)
await Promise.all(buckets.map((b) => b.pool.close()))
