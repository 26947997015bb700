// The redactor masks what it was told (raw, URL-encoded, base64) and credentials it recognises unaided:
// presigned S3 URLs, SigV4 Authorization headers, Basic/Bearer tokens, URL passwords with an empty user.
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {redact, registerSecret} from '../../src/lib/output/redact.js'

test('registered secrets are masked raw, URL-encoded and base64', () => {
  registerSecret('s3cr3t/with+chars')
  const out = redact(
    `a s3cr3t/with+chars b ${encodeURIComponent('s3cr3t/with+chars')} c ${Buffer.from('s3cr3t/with+chars').toString('base64')}`,
  )
  assert.equal(out.includes('s3cr3t'), false, out)
  assert.equal(out.includes(Buffer.from('s3cr3t/with+chars').toString('base64').slice(0, 12)), false, out)
})

test('presigned URLs, SigV4 headers, Basic and Bearer tokens, URL passwords are masked without registration', () => {
  const url =
    'https://bucket.s3.amazonaws.com/blobs/x?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAUNREGISTERED%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef&X-Amz-Security-Token=FwoGZXIvYXdzEJr'
  const out = redact(`GET ${url} failed`)
  for (const leak of ['AKIAUNREGISTERED', '0123456789abcdef', 'FwoGZXIvYXdzEJr']) assert.ok(!out.includes(leak), out)
  assert.match(out, /X-Amz-Date=20240101T000000Z/, 'what is not a credential stays')
  const header = redact(
    'Authorization: AWS4-HMAC-SHA256 Credential=AKIAOTHERKEY/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=fedcba9876543210fedcba9876543210',
  )
  assert.ok(!header.includes('AKIAOTHERKEY') && !header.includes('fedcba9876543210'), header)
  assert.equal(redact('Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'), 'Authorization: Bearer ***')
  assert.equal(redact('Basic Y2ktYm90OnBhc3N3b3JkMTIz'), 'Basic ***')
  assert.equal(
    redact('GET /v2/ 401: reachable, Bearer authentication required'),
    'GET /v2/ 401: reachable, Bearer authentication required',
  )
  assert.equal(redact('redis://:unregisteredPass@127.0.0.1:6379/0'), 'redis://:***@127.0.0.1:6379/0')
})
