// An upload abandoned on S3 keeps its data in a pending multipart upload that no object listing shows:
// docker-registry 2.8 on radosgw, a blob upload PATCHed and left; sweep uploads names its real size,
// --delete aborts it, and doctor says whether the bucket's lifecycle would. Real PostgreSQL and radosgw.
import {after, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {ListMultipartUploadsCommand, PutBucketLifecycleConfigurationCommand} from '@aws-sdk/client-s3'
import {runCli} from '../../helpers/cli.js'
import {sharedPostgres} from '../../helpers/postgres.js'
import {sharedRadosgw} from '../../helpers/radosgw.js'
import {startRegistryWithRegion} from '../../helpers/registry.js'
import {pushImage, randomBlob, startAbandonedUpload} from '../../helpers/images.js'

const cleanups: Array<() => Promise<unknown>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

test('S3: an abandoned upload is sized by its multipart parts, aborted by --delete; doctor reads the lifecycle', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'regops-uploads-s3-'))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  const {registry, region} = await startRegistryWithRegion('s3', dir, 'uploads-mp')
  cleanups.push(() => registry.stop())
  const bucket = /s3:\/\/([^/]+)\//.exec(region)![1]
  const s3 = (await sharedRadosgw()).s3Client()
  const pending = async () =>
    (await s3.send(new ListMultipartUploadsCommand({Bucket: bucket, Prefix: 'docker/registry/v2/repositories/'})))
      .Uploads ?? []
  const url = await (await sharedPostgres()).createDatabase()
  const config = join(dir, 'regops.yaml')
  await writeFile(config, `regions:\n  main: ${region}\ndatabase:\n  url: ${url}\n`)
  assert.equal((await runCli(['db', 'migrate', 'up', '--config', config])).code, 0)
  await pushImage(registry.url, 'app/web', 'v1', {layers: 1, seed: 'uploads-s3'})

  // The registry's S3 driver writes a PATCH's data as a part of a multipart upload on the upload's `data` key.
  const size = 10_240
  const abandoned = await startAbandonedUpload(registry.url, 'app/web', randomBlob(size, 'abandoned-s3'))
  const uploads = await pending()
  assert.equal(uploads.length, 1, 'the registry left one pending multipart upload')
  assert.equal(uploads[0].Key, `docker/registry/v2/repositories/app/web/_uploads/${abandoned.uuid}/data`)
  await new Promise((resolve) => setTimeout(resolve, 2500))

  const args = ['sweep', 'uploads', '--config', config, '--older-than', '1s', '--force', '--json']
  const dry = await runCli(args)
  assert.equal(dry.code, 1, dry.stdout + dry.stderr)
  assert.equal(dry.json.items.length, 1)
  const item = dry.json.items[0]
  assert.equal(item.uuid, abandoned.uuid)
  assert.deepEqual(item.multipart, {uploads: 1, parts: 1, bytes: size})
  assert.ok(item.bytes > size, `the upload's bytes (${item.bytes}) hold its parts and its _uploads objects`)
  assert.equal(dry.json.abandoned.multipartBytes, size)
  assert.equal((await pending()).length, 1, 'a dry-run aborts nothing')

  const deleted = await runCli([...args, '--delete'])
  assert.equal(deleted.code, 0, deleted.stdout + deleted.stderr)
  assert.equal(deleted.json.deleted, 1)
  assert.equal(deleted.json.aborted, 1)
  assert.deepEqual(await pending(), [], 'the multipart upload is aborted')
  const again = await runCli(args)
  assert.equal(again.code, 0, 'nothing left: ' + again.stdout)

  // doctor: no lifecycle rule is a warning; a rule that aborts incomplete uploads is ok.
  const lifecycleRow = async () => {
    const doctor = await runCli(['doctor', '--config', config, '--json'])
    return doctor.json.checks.find((c: {component: string}) => c.component === 'lifecycle')
  }
  const missing = await lifecycleRow()
  assert.equal(missing.status, 'warn', JSON.stringify(missing))
  assert.match(missing.detail, /no AbortIncompleteMultipartUpload lifecycle rule/)
  await s3.send(
    new PutBucketLifecycleConfigurationCommand({
      Bucket: bucket,
      LifecycleConfiguration: {
        Rules: [
          {
            ID: 'abort-uploads',
            Status: 'Enabled',
            Filter: {Prefix: ''},
            AbortIncompleteMultipartUpload: {DaysAfterInitiation: 3},
          },
        ],
      },
    }),
  )
  const present = await lifecycleRow()
  assert.equal(present.status, 'ok', JSON.stringify(present))
  assert.match(present.detail, /after 3 days/)
})
