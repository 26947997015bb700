import {errorMessage} from '../errors.js'
import type {Db} from '../metadata/db.js'
import {journalIntents, journalOutcome, type JournalEntry} from '../sweep/journal.js'

export interface JournaledChange {
  /** the intent's journal id: what `regops journal undo` takes */
  entry: string
  ok: boolean
  error?: string
}

/**
 * Journals the intent, makes the change, journals its outcome. A crash between the two leaves an intent
 * without outcome, which the journal shows as an action that may or may not have happened.
 */
export async function journaledChange(
  db: Db,
  entry: JournalEntry,
  change: () => Promise<Record<string, unknown> | void>,
  /** the intent of an interrupted run that this change completes, instead of a new one */
  interrupted?: string,
): Promise<JournaledChange> {
  const [intent] = interrupted ? [interrupted] : await journalIntents(db, null, [entry])
  try {
    const detail = await change()
    await journalOutcome(db, null, intent, 'done', detail ?? {})
    return {entry: intent, ok: true}
  } catch (error) {
    await journalOutcome(db, null, intent, 'failed', {error: errorMessage(error)})
    return {entry: intent, ok: false, error: errorMessage(error)}
  }
}
