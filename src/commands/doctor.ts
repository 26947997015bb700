import {Flags} from '@oclif/core'
import {RegopsCommand} from '../base-command.js'
import {databaseUrlFlag} from '../flags.js'
import {runDoctor, type DoctorResult} from '../lib/doctor/doctor.js'
import * as formatter from '../formatters/doctor.js'

export default class Doctor extends RegopsCommand<DoctorResult> {
  static override summary = 'Check the database, every region and the registry: reachable? permitted?'
  static override description = `One row per check: ok, or what failed and why. Exits 1 when any check fails.
With no database or no region configured there is nothing to vouch for: exit 2, naming the files it looked for.`
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --write-check --json',
  ]
  static override flags = {
    'write-check': Flags.boolean({
      summary:
        'Also probe which permission sets (docs/iam.md) the credentials hold, in a scratch prefix _regops/doctor/.',
      description:
        'In every region: list; put, get, copy and delete of a tiny object; a multipart upload created and aborted. Each probe is ok, denied or error; whatever it wrote it deletes. A denial is an answer, not a failure; an error exits 1.',
    }),
    timeout: Flags.integer({summary: 'Seconds to wait for each check.', default: 20, min: 1}),
    'database-url': databaseUrlFlag,
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<DoctorResult> {
    const {flags} = await this.parse(Doctor)
    return runDoctor(this.configuration(), {writeCheck: flags['write-check'], timeoutMs: flags.timeout * 1000})
  }
}
