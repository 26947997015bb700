import {test} from 'node:test'
import assert from 'node:assert/strict'
import {nextOpening, parseWindow, resolveTimeBox, windowEnd} from '../../../src/lib/jobs/time-box.js'
import {RefusedError, UsageError} from '../../../src/lib/errors.js'
import {SignalReceived, TimeBoxReached, stopSignalOf, timeBoxOf} from '../../../src/lib/jobs/signals.js'

const at = (iso: string) => new Date(iso)

test('parseWindow reads HH:MM-HH:MM in UTC and refuses what is not a window', () => {
  assert.deepEqual(parseWindow('01:00-05:00'), {start: 60, end: 300, text: '01:00-05:00'})
  assert.deepEqual(parseWindow('22:30-04:00'), {start: 1350, end: 240, text: '22:30-04:00'})
  assert.deepEqual(parseWindow('20:00-24:00'), {start: 1200, end: 0, text: '20:00-24:00'})
  for (const bad of ['1:00-5:00', '01:00', '25:00-01:00', '01:60-02:00', '03:00-03:00', '01:00-24:30'])
    assert.throws(() => parseWindow(bad), UsageError, bad)
})

test('windowEnd: inside a daytime window, inside either side of midnight, and outside', () => {
  const day = parseWindow('01:00-05:00')
  assert.deepEqual(windowEnd(day, at('2026-03-10T01:00:00Z')), at('2026-03-10T05:00:00Z'))
  assert.deepEqual(windowEnd(day, at('2026-03-10T04:59:59Z')), at('2026-03-10T05:00:00Z'))
  assert.equal(windowEnd(day, at('2026-03-10T05:00:00Z')), undefined, 'the end is outside')
  assert.equal(windowEnd(day, at('2026-03-10T00:59:00Z')), undefined)
  const night = parseWindow('22:00-04:00')
  assert.deepEqual(windowEnd(night, at('2026-03-10T23:30:00Z')), at('2026-03-11T04:00:00Z'), 'ends tomorrow')
  assert.deepEqual(windowEnd(night, at('2026-03-11T03:00:00Z')), at('2026-03-11T04:00:00Z'), 'ends today')
  assert.equal(windowEnd(night, at('2026-03-11T12:00:00Z')), undefined)
})

test('nextOpening: later today, or tomorrow once today’s start has passed', () => {
  const day = parseWindow('01:00-05:00')
  assert.deepEqual(nextOpening(day, at('2026-03-10T00:10:00Z')), at('2026-03-10T01:00:00Z'))
  assert.deepEqual(nextOpening(day, at('2026-03-10T06:00:00Z')), at('2026-03-11T01:00:00Z'))
  assert.deepEqual(nextOpening(day, at('2026-12-31T06:00:00Z')), at('2027-01-01T01:00:00Z'), 'across a year')
})

test('resolveTimeBox: the earlier limit wins; outside the window it refuses and says when it opens', () => {
  const now = at('2026-03-10T04:00:00Z')
  const window = parseWindow('01:00-05:00')
  assert.deepEqual(resolveTimeBox({maxDuration: {ms: 30 * 60_000, text: '30m'}, window}, now), {
    deadline: at('2026-03-10T04:30:00Z'),
    stoppedBy: 'max-duration',
    limit: '30m',
  })
  assert.deepEqual(resolveTimeBox({maxDuration: {ms: 4 * 3_600_000, text: '4h'}, window}, now), {
    deadline: at('2026-03-10T05:00:00Z'),
    stoppedBy: 'window',
    limit: '01:00-05:00 UTC',
  })
  assert.equal(resolveTimeBox({}, now), undefined)
  assert.throws(
    () => resolveTimeBox({window}, at('2026-03-10T06:00:00Z')),
    (error: unknown) =>
      error instanceof RefusedError &&
      /opens at 2026-03-11T01:00:00.000Z \(in 19h\)/.test(error.message) &&
      error.details?.opensAt === '2026-03-11T01:00:00.000Z',
  )
  assert.throws(() => resolveTimeBox({maxDuration: {ms: 30 * 86_400_000, text: '30d'}}, now), UsageError)
})

test('a time box is not a signal: stopSignalOf ignores it, timeBoxOf names it', () => {
  const boxed = new AbortController()
  boxed.abort(new TimeBoxReached('window', '01:00-05:00 UTC'))
  assert.equal(stopSignalOf(boxed.signal), undefined)
  assert.equal(timeBoxOf(boxed.signal)?.stoppedBy, 'window')
  const termed = new AbortController()
  termed.abort(new SignalReceived('SIGTERM'))
  assert.equal(stopSignalOf(termed.signal), 'SIGTERM')
  assert.equal(timeBoxOf(termed.signal), undefined)
})
