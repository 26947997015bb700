import type {Db} from '../metadata/db.js'
import {RefusedError, errorMessage} from '../errors.js'
import {assertClockSkewWithin, measureStorageClock, type StorageClock} from '../storage/clock.js'
import {RegionUnavailableError} from '../storage/driver.js'
import {
  FIRST_SWEEP_MASS_DELETE_SHARE,
  MASS_DELETE_SHARE,
  SWEEP_JOB_KIND,
  type SweepBlobsOptions,
  type SweepBlobsResult,
  type SweepMode,
  type SweepSettings,
} from './types.js'

// What must hold before a sweep may act, decided apart from the acting: the storage's clock, the
// operator's caps, a complete mark, and no mass deletion the operator did not ask for.

/**
 * The storage's clock. Acting refuses (exit 4) when it cannot be measured or is too far from this
 * host's; a dry-run warns and uses this host's clock.
 */
export async function storageClock(
  opts: SweepBlobsOptions,
  acting: boolean,
  maxClockSkewMs: number,
): Promise<StorageClock | undefined> {
  try {
    const clock = await measureStorageClock(opts.driver)
    if (acting) assertClockSkewWithin(clock, maxClockSkewMs, opts.driver.location)
    return clock
  } catch (error) {
    // A region that does not answer is an outage: one error now, not a warning and then the same error.
    if (acting || error instanceof RegionUnavailableError) throw error
    opts.logger.warn(`using this host's clock for the cutoff: ${errorMessage(error)}`, {region: opts.driver.region})
    return undefined
  }
}

export interface Refusal {
  reason: string
  hint: string
  details?: Record<string, unknown>
}

/**
 * Whether an acting sweep of this region has finished before (undefined: no database to ask). Until one
 * has, nothing says what the region's usual share of orphans is, so the mass-deletion guard is stricter.
 */
export async function firstActingSweep(db: Db | undefined, region: string): Promise<boolean | undefined> {
  if (!db) return undefined
  const found = await db.query<{found: boolean}>(
    `SELECT EXISTS (SELECT 1 FROM regops_jobs WHERE kind = $1 AND status = 'done' AND params->>'region' = $2) AS found`,
    [SWEEP_JOB_KIND, region],
  )
  return !found.rows[0].found
}

/**
 * Why acting on this plan must not go ahead: an incomplete mark; more candidates than the operator's
 * caps; or, with no cap stated, more than a share of the scanned blobs (a store the mark misread looks
 * like a store of orphans, and no ordinary sweep removes half a registry).
 */
export function actingRefusals(
  result: SweepBlobsResult,
  settings: SweepSettings,
  firstSweep: boolean | undefined,
): Refusal[] {
  const refusals: Refusal[] = []
  const {candidates, scanned} = result
  if (!result.markComplete) {
    const example = result.problems[0] ? `, e.g. ${result.problems[0].kind} at ${result.problems[0].key}` : ''
    refusals.push({
      reason: `the mark is incomplete (${result.problemCount} problem(s)${example}): what the manifests it could not read or see reference is unknown`,
      hint: 'fix or remove the objects named in problems, then run again; a dry-run lists them',
      details: {problems: result.problems.slice(0, 10)},
    })
  }
  // Untagged manifests are deletions too.
  const deletions = candidates.count + candidates.manifests
  const capHint = 'check the dry-run report; raise the cap only if the finding is expected'
  if (settings.maxDeletes !== undefined && deletions > settings.maxDeletes) {
    refusals.push({
      reason: `${deletions} candidates (${candidates.manifests} of them manifests) exceed --max-deletes ${settings.maxDeletes}`,
      hint: capHint,
    })
  }
  if (settings.maxBytes !== undefined && candidates.bytes > settings.maxBytes) {
    refusals.push({
      reason: `${candidates.bytes} candidate bytes exceed --max-bytes ${settings.maxBytes}`,
      hint: capHint,
    })
  }
  const capped =
    settings.maxDeletes !== undefined || settings.maxBytes !== undefined || settings.allowMassDelete === true
  const limit = firstSweep === false ? MASS_DELETE_SHARE : FIRST_SWEEP_MASS_DELETE_SHARE
  if (!capped && scanned.blobs > 0 && candidates.count > scanned.blobs * limit) {
    const which =
      firstSweep === false
        ? 'a sweep'
        : firstSweep === true
          ? `the first acting sweep of region ${result.region}`
          : `the first acting sweep of region ${result.region} (this dry-run has no database to tell whether one finished before; after one: ${percent(MASS_DELETE_SHARE)})`
    refusals.push({
      reason: `${candidates.count} of ${scanned.blobs} scanned blobs (${percent(candidates.count / scanned.blobs)}) are candidates, more than the ${percent(limit)} ${which} acts on`,
      hint: 'check the dry-run report; if the finding is expected, state a cap with --max-deletes or --max-bytes, or pass --allow-mass-delete',
    })
  }
  return refusals
}

function percent(share: number): string {
  return `${Math.round(share * 1000) / 10}%`
}

/** Before anything is touched: an incomplete mark, more than the caps or a mass deletion stops the job. */
export function refuseUnsafePlan(refusals: Refusal[], settings: {mode: SweepMode}): void {
  if (refusals.length === 0) return
  const [first] = refusals
  throw new RefusedError(
    `${refusals.map((refusal) => refusal.reason).join('; ')}: nothing was ${settings.mode === 'delete' ? 'deleted' : 'quarantined'}`,
    {
      hint: first.hint,
      details: first.details,
    },
  )
}
