// The floor: one sequential listing of every key under a prefix (ListObjectsV2, 1000 keys a page).
import {ListObjectsV2Command, S3Client} from '@aws-sdk/client-s3'

const [endpoint, bucket, prefix, accessKeyId, secretAccessKey] = process.argv.slice(2)
const client = new S3Client({
  region: 'us-east-1',
  endpoint,
  forcePathStyle: true,
  credentials: {accessKeyId, secretAccessKey},
})
let token: string | undefined
let keys = 0
do {
  const page = await client.send(new ListObjectsV2Command({Bucket: bucket, Prefix: prefix, ContinuationToken: token}))
  keys += page.KeyCount ?? 0
  token = page.IsTruncated ? page.NextContinuationToken : undefined
} while (token)
console.log(keys)
client.destroy()
