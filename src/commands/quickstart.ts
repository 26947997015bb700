import {Flags} from '@oclif/core'
import {RegopsCommand} from '../base-command.js'
import {quickstart, type QuickstartResult} from '../lib/quickstart/quickstart.js'
import * as formatter from '../formatters/quickstart.js'

export default class Quickstart extends RegopsCommand<QuickstartResult> {
  static override summary =
    'The whole thing on local embedded defaults: sample registry, embedded PostgreSQL, import, dry-run sweeps, a drifted second region audited and repaired, a short load test.'
  static override description =
    'Needs nothing installed beyond npm ci. Writes only under --dir and deletes nothing outside it. Exits 0 when both sweep strategies find exactly the planted orphans, the audit names exactly the drift planted in the second region, the repair leaves the re-audit clean, and every pull of the load test succeeds.'
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --dir /tmp/regops-demo --json',
  ]
  static override flags = {
    dir: Flags.string({
      summary:
        'Working directory: created, or replaced if an earlier quickstart made it; any other non-empty directory is refused.',
      default: '.regops/quickstart',
    }),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<QuickstartResult> {
    const {flags} = await this.parse(Quickstart)
    // The steps are the formatter's table; as log lines they would say everything twice (--log-level debug shows them).
    return quickstart({
      dir: flags.dir,
      logger: this.logger.child({}),
      signal: this.interruptible(),
      onStep: (s) => this.logger.debug(`${s.step}: ${s.detail}`, {ms: s.ms}),
    })
  }
}
