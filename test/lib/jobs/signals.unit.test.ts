// A signal that a job's requests share takes one abort listener per request in flight: past Node's
// threshold of 10 that is no leak, and must not print MaxListenersExceededWarning (seen at --log-level
// debug in every S3 sweep, whose 16 listings shared one derived signal).
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {setImmediate as tick} from 'node:timers/promises'
import {anySignal} from '../../../src/lib/jobs/signals.js'

async function warningsWhile(add: (signal: AbortSignal) => void, signal: AbortSignal): Promise<string[]> {
  const seen: string[] = []
  const onWarning = (warning: Error) => seen.push(warning.name)
  process.on('warning', onWarning)
  try {
    add(signal)
    await tick()
    await tick()
  } finally {
    process.off('warning', onWarning)
  }
  return seen
}

const add64 = (signal: AbortSignal) => {
  for (let i = 0; i < 64; i++) signal.addEventListener('abort', () => {})
}

test('anySignal takes a listener per request in flight without a leak warning, and aborts with either input', async () => {
  const job = new AbortController()
  const stop = new AbortController()
  // The plain derived signal does warn: the test would not notice a missing bound otherwise.
  assert.deepEqual(await warningsWhile(add64, AbortSignal.any([job.signal, stop.signal])), [
    'MaxListenersExceededWarning',
  ])
  const shared = anySignal([job.signal, stop.signal])
  assert.deepEqual(await warningsWhile(add64, shared), [])
  assert.equal(shared.aborted, false)
  stop.abort(new Error('listing stopped'))
  assert.equal(shared.aborted, true)
  assert.equal((shared.reason as Error).message, 'listing stopped')
})
