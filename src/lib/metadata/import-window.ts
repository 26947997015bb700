/**
 * The in-order checkpoint over work done concurrently: items start in listing order and finish in any
 * order; the checkpoint may pass an item only when it and every item before it finished well. After the
 * first item that did not (failed, or stopped by a signal) the checkpoint never moves again in this run,
 * so a resume starts from before it.
 */
export class CheckpointWindow<T> {
  private readonly inFlight: Array<Slot<T>> = []
  private stuck = false

  /** Whether an item failed: later items are no longer tracked. */
  get blocked(): boolean {
    return this.stuck
  }

  /** An item starts; items must start in listing order. */
  start(name: string): Slot<T> {
    const slot = new Slot<T>(name)
    // Once an item failed the checkpoint cannot pass it: stop remembering the ones after it.
    if (!this.stuck) this.inFlight.push(slot)
    return slot
  }

  /** The items the checkpoint now passes, in order (each once). */
  advance(): Array<{name: string; outcome: T}> {
    const passed: Array<{name: string; outcome: T}> = []
    while (!this.stuck && this.inFlight.length > 0 && this.inFlight[0].state !== 'running') {
      const head = this.inFlight.shift()!
      if (head.state !== 'done') {
        this.stuck = true
        this.inFlight.length = 0
        break
      }
      passed.push({name: head.name, outcome: head.outcome!})
    }
    return passed
  }
}

export class Slot<T> {
  state: 'running' | 'done' | 'failed' = 'running'
  outcome?: T

  constructor(readonly name: string) {}

  done(outcome: T): void {
    this.state = 'done'
    this.outcome = outcome
  }

  /** failed, or stopped before it finished: either way not imported in full */
  failed(): void {
    this.state = 'failed'
  }
}
