import {Flags} from '@oclif/core'
import {RegopsCommand} from '../base-command.js'
import {databaseUrlFlag, jobIdFlag} from '../flags.js'
import {assertDigest} from '../lib/storage/layout.js'
import {listJournal} from '../lib/sweep/journal.js'
import * as formatter from '../formatters/journal.js'

export default class Journal extends RegopsCommand<formatter.JournalResult> {
  static override summary =
    'Every change regops made: intent before, outcome after (delete, quarantine, restore, purge, …).'
  static override description =
    'An intent with no outcome is an action a killed process may or may not have finished; resuming its job settles it. Quarantines are undone with regops sweep restore.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> --job 42',
    '<%= config.bin %> <%= command.id %> --limit 20',
    '<%= config.bin %> <%= command.id %> --digest sha256:… --json',
  ]
  static override flags = {
    'database-url': databaseUrlFlag,
    job: jobIdFlag({summary: 'Only the entries of this job.'}),
    digest: Flags.string({summary: 'Only the entries of this digest.'}),
    limit: Flags.integer({
      summary: 'At most this many entries (the newest, unless --oldest-first).',
      default: 1000,
      min: 1,
    }),
    'oldest-first': Flags.boolean({summary: 'List the oldest entries first (default: newest first).'}),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<formatter.JournalResult> {
    const {flags} = await this.parse(Journal)
    if (flags.digest) assertDigest(flags.digest, '--digest')
    const db = await this.database({schema: 'any'})
    return {
      kind: 'journal',
      entries: await listJournal(db, {
        jobId: flags.job,
        digest: flags.digest,
        limit: flags.limit,
        oldestFirst: flags['oldest-first'],
      }),
    }
  }
}
