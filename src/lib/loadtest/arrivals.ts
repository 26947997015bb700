/** A stretch of the run in which the arrival rate moves linearly to `target` pulls/s. */
export interface RateStage {
  durationMs: number
  target: number
}

/**
 * The open model's clock: when the k-th pull is meant to start, whatever happened to the ones before.
 * Within a stage the rate ramps linearly from the previous target, so the number of arrivals by time t
 * is the integral of the rate, and the k-th arrival is where that integral reaches k.
 */
export class ArrivalSchedule {
  private readonly segments: Array<{startMs: number; durationMs: number; from: number; to: number; arrivals: number}> =
    []
  readonly durationMs: number
  /** pulls the schedule holds in all (fractional: the last one may not fit) */
  readonly expectedArrivals: number

  constructor(startRate: number, stages: readonly RateStage[]) {
    let from = startRate
    let startMs = 0
    let total = 0
    for (const stage of stages) {
      const arrivals = ((from + stage.target) / 2) * (stage.durationMs / 1000)
      this.segments.push({startMs, durationMs: stage.durationMs, from, to: stage.target, arrivals})
      total += arrivals
      startMs += stage.durationMs
      from = stage.target
    }
    this.durationMs = startMs
    this.expectedArrivals = total
  }

  static constant(rate: number, durationMs: number): ArrivalSchedule {
    return new ArrivalSchedule(rate, [{durationMs, target: rate}])
  }

  /**
   * Offset in ms from the run's start of arrival number `k` (0-based; arrival k is where the count
   * reaches k, so the first pull starts at 0), or undefined past the end.
   */
  offsetOf(k: number): number | undefined {
    let remaining = k
    for (const seg of this.segments) {
      if (remaining <= seg.arrivals || seg === this.segments[this.segments.length - 1]) {
        if (remaining > seg.arrivals) return undefined
        const seconds = solveRamp(seg.from, seg.to, seg.durationMs / 1000, remaining)
        if (seconds === undefined) return undefined
        return seg.startMs + seconds * 1000
      }
      remaining -= seg.arrivals
    }
    return undefined
  }
}

/** Time t in [0, D] at which a rate ramping linearly from a to b over D seconds has produced n arrivals. */
function solveRamp(a: number, b: number, durationS: number, n: number): number | undefined {
  if (n === 0) return 0
  const slope = (b - a) / durationS
  if (Math.abs(slope) < 1e-12) return a > 0 ? n / a : undefined
  // a t + slope t^2 / 2 = n
  const disc = a * a + 2 * slope * n
  if (disc < 0) return undefined
  const t = (-a + Math.sqrt(disc)) / slope
  return t >= 0 && t <= durationS + 1e-9 ? t : undefined
}
