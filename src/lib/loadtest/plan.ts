import {UsageError} from '../errors.js'
import {ArrivalSchedule, type RateStage} from './arrivals.js'
import type {Scenario} from './image-mix.js'
import type {LoadModel} from './run-pull.js'

export interface LoadShape {
  rate?: number
  vus?: number
  durationMs?: number
  maxPulls?: number
  maxInFlight: number
  scenario?: Scenario
  shard?: {index: number; count: number}
}

/**
 * Turns the rate, duration and cap flags (and a scenario's stages) into the load model. A run must end by
 * itself: it needs a duration (flag or stages) or a pull cap, and is refused otherwise. A shard takes its
 * share of the rate, the users and the cap, so n shards together make the load one run would.
 */
export function planLoad(shape: LoadShape): {model: LoadModel; maxPulls?: number} {
  const share = shape.shard ? 1 / shape.shard.count : 1
  const splitCount = (n: number) => {
    if (!shape.shard) return n
    const base = Math.floor(n / shape.shard.count)
    return base + (shape.shard.index < n % shape.shard.count ? 1 : 0)
  }
  const maxPulls = shape.maxPulls === undefined ? undefined : splitCount(shape.maxPulls)
  const stages = shape.scenario?.stages
  if (shape.vus !== undefined) {
    if (shape.rate !== undefined)
      throw new UsageError('--vus (closed model) and --rate (open model) exclude each other')
    if (shape.durationMs === undefined && maxPulls === undefined) {
      throw new UsageError('a --vus run needs --duration or --max-pulls so that it ends by itself')
    }
    const vus = splitCount(shape.vus)
    if (vus < 1)
      throw new UsageError(`--vus ${shape.vus} leaves shard ${shape.shard?.index}/${shape.shard?.count} without a user`)
    return {model: {kind: 'closed', vus, durationMs: shape.durationMs}, maxPulls}
  }
  if (shape.rate !== undefined) {
    if (!(shape.rate > 0)) throw new UsageError('--rate must be above 0 pulls/s')
    const rate = shape.rate * share
    let durationMs = shape.durationMs
    if (durationMs === undefined) {
      if (maxPulls === undefined)
        throw new UsageError('a run needs --duration or --max-pulls so that it ends by itself')
      durationMs = (maxPulls / rate) * 1000 + 1
    }
    return {
      model: {kind: 'open', schedule: ArrivalSchedule.constant(rate, durationMs), maxInFlight: shape.maxInFlight, rate},
      maxPulls,
    }
  }
  if (stages?.length) {
    const scaled: RateStage[] = stages.map((s) => ({durationMs: s.durationMs, target: s.target * share}))
    const startRate = (shape.scenario?.startRate ?? 0) * share
    return {
      model: {
        kind: 'open',
        schedule: new ArrivalSchedule(startRate, scaled),
        maxInFlight: shape.maxInFlight,
        stages: scaled,
      },
      maxPulls,
    }
  }
  throw new UsageError('give an arrival rate (--rate, or stages in --scenario) or --vus for the closed model')
}
