import {createWriteStream, type WriteStream} from 'node:fs'
import {mkdir} from 'node:fs/promises'
import {dirname} from 'node:path'
import {once} from 'node:events'
import {UsageError, errorMessage} from '../errors.js'
import type {SweepCandidate} from './types.js'

/** The JSON Lines file of a sweep's candidates, one object per line, written as the plan finds them. */
export class CandidateReport {
  private constructor(private readonly stream: WriteStream) {}

  /** Opens (truncates) the file; undefined when no file was asked for. */
  static async open(file: string | undefined): Promise<CandidateReport | undefined> {
    if (!file) return undefined
    try {
      await mkdir(dirname(file), {recursive: true})
    } catch (error) {
      throw new UsageError(`cannot create the report directory for ${file}: ${errorMessage(error)}`)
    }
    const stream = createWriteStream(file, {flags: 'w'})
    await Promise.race([
      once(stream, 'open'),
      once(stream, 'error').then(([error]) => {
        throw new UsageError(`cannot write the report ${file}: ${errorMessage(error)}`)
      }),
    ])
    return new CandidateReport(stream)
  }

  /**
   * Returns a promise only when the file asks to wait (backpressure: millions of candidates must not pile
   * up in memory); the caller awaits it then, and otherwise goes on without a turn of the event loop.
   */
  write(candidate: SweepCandidate): Promise<unknown> | undefined {
    return this.stream.write(JSON.stringify(candidate) + '\n') ? undefined : once(this.stream, 'drain')
  }

  async close(): Promise<void> {
    this.stream.end()
    await once(this.stream, 'close')
  }
}
