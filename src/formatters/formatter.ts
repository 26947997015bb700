import type {MetricSample} from '../lib/output/metrics.js'

/**
 * What a command shows a person and how it exits, kept apart from the command so that the command is
 * flags in, one service call, result out, and so that both can be unit-tested on a plain result.
 * --json prints the result itself (the base command adds `kind` and `warnings`).
 */
export interface Formatter<R> {
  /** A TTY table or TSV lines (renderTable decides), or '' for nothing. */
  render(result: R): string
  /** 0 clean, 1 found something, 3 partial (see the exit-code table). */
  exitCode(result: R): number
  /**
   * A long-running command's metric name (`sweep` → `regops_sweep_runs_total`); with it, the base
   * command writes --metrics-file and --pushgateway on every exit.
   */
  metricsJob?: string
  /** The result's figures as samples (scanned, candidates, bytes, actions, errors); the base adds runs and time. */
  metrics?(result: R): MetricSample[]
}
