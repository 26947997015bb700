import {test} from 'node:test'
import assert from 'node:assert/strict'
import {differingParams, isBug} from '../../../src/lib/jobs/runner.js'
import {SignalReceived, stopSignalOf} from '../../../src/lib/jobs/signals.js'

test('differingParams names the stated settings that differ from the job, and ignores those not stated', () => {
  const job = {strategy: 'metadata', mode: 'delete', minAgeMs: 86_400_000, shard: {index: 1, count: 4}, maxDeletes: 10}
  assert.deepEqual(differingParams(job, {strategy: undefined, mode: undefined}), [])
  assert.deepEqual(
    differingParams(job, {strategy: 'metadata', shard: {count: 4, index: 1}}),
    [],
    'objects compare by value, keys in any order',
  )
  assert.deepEqual(
    differingParams(job, {
      strategy: 'storage',
      minAgeMs: 86_400_000,
      shard: {index: 2, count: 4},
      deleteUntagged: true,
    }),
    [
      {name: 'strategy', job: '"metadata"', given: '"storage"'},
      {name: 'shard', job: '{"count":4,"index":1}', given: '{"count":4,"index":2}'},
      {name: 'deleteUntagged', job: '(not set)', given: 'true'},
    ],
  )
})

test('isBug: engine errors are bugs; database, storage and network failures are not', () => {
  assert.equal(isBug(new TypeError("Cannot read properties of undefined (reading 'x')")), true)
  assert.equal(isBug(new RangeError('Invalid array length')), true)
  const networkFailure = new TypeError('fetch failed', {
    cause: Object.assign(new Error('connect ECONNREFUSED'), {code: 'ECONNREFUSED'}),
  })
  assert.equal(isBug(networkFailure), false)
  assert.equal(
    isBug(Object.assign(new Error('terminating connection due to administrator command'), {code: '57P01'})),
    false,
  )
  assert.equal(isBug(new Error('Connection terminated unexpectedly')), false)
})

test('stopSignalOf names the signal from the abort reason, not from a message', () => {
  const term = new AbortController()
  term.abort(new SignalReceived('SIGTERM'))
  assert.equal(stopSignalOf(term.signal), 'SIGTERM')
  const other = new AbortController()
  other.abort(new Error('interrupted by SIGTERM'))
  assert.equal(stopSignalOf(other.signal), 'SIGINT', "a caller's own abort counts as SIGINT, whatever its text")
  assert.equal(stopSignalOf(new AbortController().signal), undefined)
})
