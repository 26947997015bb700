import type {Db} from '../metadata/db.js'
import type {DescriptorCache} from '../registry/descriptor-cache.js'
import type {StorageDriver} from '../storage/driver.js'
import type {Problem} from '../storage/repositories.js'
import {journalOutcome, type OutcomePhase} from './journal.js'
import type {ActHooks, ActingMode, SweepBlobsResult, SweepStrategy} from './types.js'

// What the act phase (act.ts) and its re-checks (recheck.ts) share: the context of one acting run,
// the batches waiting for their post-check, and the journal write that must not be lost.

export interface ActContext {
  db: Db
  jobId: string
  driver: StorageDriver
  strategy: SweepStrategy
  metadataAuthoritative?: boolean
  /** --delete-untagged also removes referrers (manifests whose subject is kept) */
  deleteReferrers?: boolean
  mode: ActingMode
  quarantinePrefix: string
  /** cutoff and mark start are in storage time, like every lastModified they are compared with */
  cutoff: Date
  markStart: Date
  /** this host's clock to storage time (ms to add) */
  storageOffsetMs: number
  /** how much earlier than an instant a "written since" walk starts: the clock's uncertainty, with room */
  sinceMarginMs: number
  registryCache: DescriptorCache
  /**
   * the operator stated that the registry takes no writes while this runs (--registry-read-only): nothing
   * can become referenced, so batches are not re-walked; one walk after the last batch checks the statement
   */
  registryReadOnly?: boolean
  concurrency: number
  batchSize: number
  /** see POST_CHECK_AFTER_BLOBS */
  postCheckAfterBlobs?: number
  signal: AbortSignal
  result: SweepBlobsResult
  hooks?: ActHooks
  onProblem: (problem: Problem) => void
  onBatch: () => void
}

/** Blobs acted on in a batch, waiting for a walk of what was written since that batch's re-check began. */
export interface ActedBatch {
  /** storage time at which the batch's re-check began */
  since: Date
  /** performance.now() when the last object of the batch was acted on (records follow) */
  actedAt?: number
  /** digest → how to undo it (quarantine) or report it (delete) */
  acted: Map<string, {key: string; size: number; quarantineKey?: string; outcomeId: string}>
}

export interface ActState {
  windowsMs: number[]
  /** acted batches whose post-check has not yet been walked */
  unchecked: ActedBatch[]
}

export function storageNow(ctx: ActContext): Date {
  return new Date(Date.now() + ctx.storageOffsetMs)
}

/** Tries to record an outcome this often before the job stops: an action that was done must not read as not done. */
const RECORD_ATTEMPTS = 4

/**
 * Records an outcome, retrying: an action that went through is never journaled `failed` because the
 * database missed a beat. If it still cannot be recorded the job stops; the intent stays open and the
 * resume re-checks it (an object already gone then counts as done).
 */
export async function recordOutcome(
  ctx: ActContext,
  intentId: string,
  phase: OutcomePhase,
  detail: Record<string, unknown>,
  candidate?: Parameters<typeof journalOutcome>[5],
): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await journalOutcome(ctx.db, ctx.jobId, intentId, phase, detail, candidate)
    } catch (error) {
      if (attempt >= RECORD_ATTEMPTS) throw error
      await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt))
    }
  }
}
