import {Flags} from '@oclif/core'
import {RegopsCommand} from '../base-command.js'
import {ExitCode} from '../lib/errors.js'
import {runDoctor, type DoctorResult} from '../lib/doctor/doctor.js'
import {renderTable} from '../lib/output/format.js'

export default class Doctor extends RegopsCommand<DoctorResult> {
  static override summary = 'Check the database, every region and the registry: reachable? permitted?'
  static override description = 'One row per check: ok, or what failed and why. Exits 1 when any check fails.'
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --write-check --json']
  static override flags = {
    'write-check': Flags.boolean({summary: 'Also write, read back and delete a scratch object under _regops/doctor/ in every region.'}),
    timeout: Flags.integer({summary: 'Seconds to wait for each check.', default: 20, min: 1}),
    'database-url': Flags.string({summary: 'PostgreSQL URL (overrides config and DATABASE_URL).'}),
  }

  public async run(): Promise<DoctorResult> {
    const {flags} = await this.parse(Doctor)
    const config = this.loadConfig({databaseUrl: flags['database-url']})
    const result = await runDoctor(config, {writeCheck: flags['write-check'], timeoutMs: flags.timeout * 1000})
    this.say(renderTable(['check', 'name', 'target', 'status', 'detail', 'ms'], result.checks.map((c) => [c.component, c.name, c.target, c.status, c.detail, c.ms])))
    if (!result.ok) this.exitCode = ExitCode.Found
    return result
  }
}
