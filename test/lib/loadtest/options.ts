// Defaults for runPullLoadtest in tests: loopback only, short timeouts, no thresholds.
import {ArrivalSchedule} from '../../../src/lib/loadtest/arrivals.js'
import type {PullLoadtestOptions} from '../../../src/lib/loadtest/run-pull.js'

export function openModel(rate: number, durationMs: number, maxInFlight = 1000): PullLoadtestOptions['model'] {
  return {kind: 'open', schedule: ArrivalSchedule.constant(rate, durationMs), maxInFlight, rate}
}

export function loadOptions(
  over: Partial<PullLoadtestOptions> & Pick<PullLoadtestOptions, 'registry' | 'images' | 'model'>,
): PullLoadtestOptions {
  return {
    zipf: 0,
    manifestsOnly: false,
    verify: false,
    parallelism: 3,
    platform: {os: 'linux', architecture: 'amd64'},
    pingEveryPull: true,
    thresholds: [],
    abortOnFail: false,
    timeoutMs: 5000,
    maxRedirects: 10,
    graceMs: 2000,
    loopbackOnly: true,
    ...over,
  }
}
