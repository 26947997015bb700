import {Args, Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {databaseUrlFlag} from '../../flags.js'
import {undoEntry, type UndoResult} from '../../lib/repair/undo.js'
import {UsageError} from '../../lib/errors.js'
import * as formatter from '../../formatters/journal-undo.js'

export default class JournalUndo extends RegopsCommand<UndoResult> {
  static override summary = 'Reverse one journaled change: a created link, a tag move, a quarantine.'
  static override description =
    'Dry-run unless --apply: says what undoing would do. Refuses (exit 4), with the reason, what cannot be undone (a delete, a purge, a re-import), what did not complete, what was already undone, and an object that changed since the entry.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> 1234',
    '<%= config.bin %> <%= command.id %> 1234 --apply --json',
  ]
  static override args = {
    entry: Args.string({
      required: true,
      description: 'journal entry id (an intent or its outcome, see regops journal)',
    }),
  }
  static override flags = {
    'database-url': databaseUrlFlag,
    apply: Flags.boolean({summary: 'Undo it (default: dry-run).'}),
  }
  protected readonly formatter = formatter

  protected async execute(): Promise<UndoResult> {
    const {args, flags} = await this.parse(JournalUndo)
    if (!/^\d{1,18}$/.test(args.entry))
      throw new UsageError(`invalid journal entry '${args.entry}': a number (see regops journal)`)
    const db = await this.database({schema: 'current', neededFor: 'journal undo'})
    return undoEntry({
      db,
      entryId: args.entry,
      region: (name) => this.region(name),
      apply: flags.apply,
      logger: this.logger,
    })
  }
}
