import {ReportWriter, asReportTarget, type ReportTarget} from '../output/report-target.js'
import type {SweepCandidate} from './types.js'

/** The JSON Lines report of a sweep's candidates (a file, stdout or an s3:// object), written as the plan finds them. */
export class CandidateReport {
  private constructor(private readonly writer: ReportWriter) {}

  /** Opens (truncates) the report; undefined when none was asked for. */
  static async open(target: string | ReportTarget | undefined): Promise<CandidateReport | undefined> {
    if (!target) return undefined
    const writer = ReportWriter.open(asReportTarget(target))
    await writer.opened()
    return new CandidateReport(writer)
  }

  /**
   * Returns a promise only when the target asks to wait (backpressure: millions of candidates must not pile
   * up in memory); the caller awaits it then, and otherwise goes on without a turn of the event loop.
   */
  write(candidate: SweepCandidate): Promise<unknown> | undefined {
    return this.writer.write(JSON.stringify(candidate) + '\n')
  }

  async close(): Promise<void> {
    await this.writer.close()
  }
}
