// doctor --write-check on radosgw with two users: the bucket's owner (every permission set), and a
// second user whom a bucket policy allows only s3:ListBucket and s3:GetObject (the read set of docs/iam.md).
// Each probe row must say ok or denied as the store decides, and nothing may be left in the scratch prefix.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import path from 'node:path'
import {ListObjectsV2Command, PutBucketPolicyCommand} from '@aws-sdk/client-s3'
import {runCli} from '../helpers/cli.js'
import {sharedPostgres} from '../helpers/postgres.js'
import {startRadosgw, type RadosgwServer} from '../helpers/radosgw.js'
import {makeTempDir, removeTempDir} from '../helpers/tmp.js'

const BUCKET = 'permissions'
const READER = {
  uid: 'regops-reader',
  accessKeyId: 'AKREADERREADONLY0001',
  secretAccessKey: 'reader-secret-readonly-0001',
}

describe('doctor --write-check: which permission sets the credentials hold, probed on radosgw', () => {
  let rgw: RadosgwServer
  let dir: string
  let dbUrl: string
  before(async () => {
    dir = makeTempDir('write-check')
    rgw = await startRadosgw({buckets: [BUCKET]})
    await rgw.radosgwAdmin([
      'user',
      'create',
      '--uid',
      READER.uid,
      '--display-name',
      'read only',
      '--access-key',
      READER.accessKeyId,
      '--secret-key',
      READER.secretAccessKey,
    ])
    const owner = rgw.s3Client()
    await owner.send(
      new PutBucketPolicyCommand({
        Bucket: BUCKET,
        Policy: JSON.stringify({
          Version: '2012-10-17',
          Statement: [
            {
              Effect: 'Allow',
              Principal: {AWS: [`arn:aws:iam:::user/${READER.uid}`]},
              Action: ['s3:ListBucket'],
              Resource: [`arn:aws:s3:::${BUCKET}`],
            },
            {
              Effect: 'Allow',
              Principal: {AWS: [`arn:aws:iam:::user/${READER.uid}`]},
              Action: ['s3:GetObject'],
              Resource: [`arn:aws:s3:::${BUCKET}/*`],
            },
          ],
        }),
      }),
    )
    owner.destroy()
    dbUrl = await (await sharedPostgres()).createDatabase()
  })
  after(async () => {
    await rgw?.stop()
    removeTempDir(dir)
  })

  function config(name: string, keys: {accessKeyId: string; secretAccessKey: string}): string {
    const file = path.join(dir, `${name}.yaml`)
    writeFileSync(
      file,
      `database: {url: "${dbUrl}"}\nregions:\n  eu: {url: "s3://${BUCKET}/docker/registry/v2", endpoint: "${rgw.endpoint}", accessKeyId: "${keys.accessKeyId}", secretAccessKey: "${keys.secretAccessKey}", checksums: when_required, empty: true}\n`,
    )
    return file
  }

  const outcomes = (json: {permissions: Array<{probe: string; outcome: string}>}) =>
    Object.fromEntries(json.permissions.map((p) => [p.probe, p.outcome]))

  test('the owner: every probe ok, every set held, exit 0, scratch prefix left empty', async () => {
    const run = await runCli(['doctor', '--write-check', '--config', config('owner', rgw), '--json'])
    assert.equal(run.code, 0, run.stdout + run.stderr)
    assert.deepEqual(outcomes(run.json), {list: 'ok', put: 'ok', get: 'ok', copy: 'ok', delete: 'ok', multipart: 'ok'})
    assert.deepEqual(run.json.permissionSets.eu, {read: true, write: true, delete: true, multipart: true})
    const client = rgw.s3Client()
    const left = await client.send(new ListObjectsV2Command({Bucket: BUCKET, Prefix: 'docker/registry/v2/_regops/'}))
    client.destroy()
    assert.deepEqual(left.Contents ?? [], [])
  })

  test('the read-only user: list and get ok, put/delete/multipart denied, copy skipped; only the read set', async () => {
    const run = await runCli(['doctor', '--write-check', '--config', config('reader', READER), '--json'])
    // A denial is an answer, not a failure of the region: exit 0.
    assert.equal(run.code, 0, run.stdout + run.stderr)
    assert.deepEqual(outcomes(run.json), {
      list: 'ok',
      put: 'denied',
      get: 'ok',
      copy: 'skip',
      delete: 'denied',
      multipart: 'denied',
    })
    assert.deepEqual(run.json.permissionSets.eu, {read: true, write: false, delete: false, multipart: false})
    const text = await runCli(['doctor', '--write-check', '--config', config('reader-text', READER)])
    assert.match(text.stdout, /put\s.*s3:PutObject\s.*denied/)
  })
})
