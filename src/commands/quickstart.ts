import {Flags} from '@oclif/core'
import {RegopsCommand} from '../base-command.js'
import {ExitCode} from '../lib/errors.js'
import {formatDuration, renderTable} from '../lib/output/format.js'
import {interruptOnSignals} from '../lib/metadata/jobs.js'
import {quickstart, type QuickstartResult} from '../lib/quickstart/quickstart.js'

export default class Quickstart extends RegopsCommand<QuickstartResult> {
  static override summary = 'The whole thing on local embedded defaults: sample registry, embedded PostgreSQL, migrate, import, dry-run sweeps.'
  static override description = 'Needs nothing installed beyond npm ci. Writes only under --dir and deletes nothing outside it. Exits 0 when both sweep strategies find exactly the planted orphans.'
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --dir /tmp/regops-demo --json']
  static override flags = {
    dir: Flags.string({summary: 'Working directory: created, or replaced if an earlier quickstart made it; any other non-empty directory is refused.', default: '.regops/quickstart'}),
  }

  public async run(): Promise<QuickstartResult> {
    const {flags} = await this.parse(Quickstart)
    const interrupt = interruptOnSignals()
    const result = await quickstart({dir: flags.dir, logger: this.logger.child({}), signal: interrupt.signal, onStep: (s) => this.logger.info(`${s.step}: ${s.detail}`, {ms: s.ms})}).finally(
      () => interrupt.dispose(),
    )
    this.say(renderTable(['step', 'time', 'result'], result.steps.map((s) => [s.step, formatDuration(s.ms), s.detail])))
    this.say('\nOrphaned blobs found (dry-run: nothing was deleted):')
    this.say(
      renderTable(
        ['digest', 'why it is an orphan', 'storage', 'metadata'],
        result.planted.map((o) => [o.digest, o.why, result.found.storage.includes(o.digest) ? 'found' : 'MISSED', result.found.metadata.includes(o.digest) ? 'found' : 'MISSED']),
      ),
    )
    this.say(`\nin-flight upload ${result.inFlight.slice(0, 19)}… left alone: ${result.found.storage.includes(result.inFlight) ? 'NO' : 'yes'} (younger than --min-age 24h)`)
    this.say(result.matches ? 'both strategies found exactly the planted orphans.' : 'MISMATCH: the sweeps did not find exactly the planted orphans.')
    this.say(`\nNext:\n${result.next.map((n) => `  ${n}`).join('\n')}`)
    if (!result.matches) this.exitCode = ExitCode.Found
    return result
  }
}
