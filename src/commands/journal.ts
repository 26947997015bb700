import {Flags} from '@oclif/core'
import {RegopsCommand} from '../base-command.js'
import {openConfiguredDatabase} from '../lib/metadata/connect.js'
import {renderTable} from '../lib/output/format.js'
import {databaseUrlFlag} from '../lib/output/flags.js'
import {assertDigest} from '../lib/storage/layout.js'
import {listJournal, type JournalRow} from '../lib/sweep/journal.js'

export interface JournalResult {
  kind: 'journal'
  entries: JournalRow[]
}

export default class Journal extends RegopsCommand<JournalResult> {
  static override summary = 'Every change regops made: intent before, outcome after (delete, quarantine, restore, purge, …).'
  static override description = 'An intent with no outcome is an action a killed process may or may not have finished; resuming its job settles it. Quarantines are undone with regops sweep restore.'
  static override examples = ['<%= config.bin %> <%= command.id %> --job 42', '<%= config.bin %> <%= command.id %> --digest sha256:… --json']
  static override flags = {
    'database-url': databaseUrlFlag,
    job: Flags.string({summary: 'Only the entries of this job.'}),
    digest: Flags.string({summary: 'Only the entries of this digest.'}),
    limit: Flags.integer({summary: 'At most this many entries, oldest first.', default: 1000, min: 1}),
  }

  public async run(): Promise<JournalResult> {
    const {flags} = await this.parse(Journal)
    if (flags.digest) assertDigest(flags.digest, '--digest')
    const db = openConfiguredDatabase(this.loadConfig({databaseUrl: flags['database-url']}))
    try {
      const entries = await listJournal(db, {jobId: flags.job, digest: flags.digest, limit: flags.limit})
      this.say(
        renderTable(
          ['id', 'job', 'action', 'phase', 'region', 'key', 'size', 'at'],
          entries.map((e) => [e.id, e.jobId, e.action, e.phase + (e.intentId ? ` (of ${e.intentId})` : ''), e.region, e.key, e.size, e.at.toISOString()]),
        ),
      )
      return {kind: 'journal', entries}
    } finally {
      await db.close()
    }
  }
}
