export type StopSignal = 'SIGINT' | 'SIGTERM'

/** The abort reason when a signal stops a job: it names the signal, so no one has to read it from a message. */
export class SignalReceived extends Error {
  constructor(readonly signal: StopSignal) {
    super(`interrupted by ${signal}`)
    this.name = 'SignalReceived'
  }
}

/** The signal that aborted `signal`, if a signal did (a caller's own AbortController counts as SIGINT). */
export function stopSignalOf(signal: AbortSignal | undefined): StopSignal | undefined {
  if (!signal?.aborted) return undefined
  return signal.reason instanceof SignalReceived ? signal.reason.signal : 'SIGINT'
}

export interface Interruptible {
  signal: AbortSignal
  received(): StopSignal | undefined
  dispose(): void
}

/**
 * SIGINT/SIGTERM abort the signal instead of killing the process, so the job saves its checkpoint
 * and exits 130/143. A second signal kills at once.
 */
export function interruptOnSignals(): Interruptible {
  const controller = new AbortController()
  let received: StopSignal | undefined
  const handler = (sig: StopSignal) => {
    if (received) process.exit(sig === 'SIGINT' ? 130 : 143)
    received = sig
    controller.abort(new SignalReceived(sig))
  }
  const onInt = () => handler('SIGINT')
  const onTerm = () => handler('SIGTERM')
  process.on('SIGINT', onInt)
  process.on('SIGTERM', onTerm)
  return {
    signal: controller.signal,
    received: () => received,
    dispose() {
      process.off('SIGINT', onInt)
      process.off('SIGTERM', onTerm)
    },
  }
}
