import {corruptionBound} from '../audit/classify.js'

/** The commands whose shard reports `report merge` adds up, by their --json `kind`. */
export const MERGEABLE_KINDS = ['import', 'sweep-blobs', 'audit-regions', 'audit-integrity', 'replicate'] as const
export type MergeableKind = (typeof MERGEABLE_KINDS)[number]

/**
 * How the reports of one command add up. By default numbers add, lists concatenate, objects merge
 * field by field, and any other value (a region, a mode, a group) must be the same in every shard or the
 * merge is refused. These say where a field means something else.
 */
export interface KindRules {
  /** where the report says which shard it is ({index, count, …}) */
  shardField: string
  /** fields that describe one shard's run (its job, its timing, its own files): listed per shard, not merged */
  perShard: string[]
  /** numbers every shard counts over the whole store (each walks every repository): the same, not added */
  whole?: string[]
  /** booleans that hold for the merge only when they hold in every shard */
  all?: string[]
  /** booleans that hold for the merge when they hold in any shard */
  any?: string[]
  /** lists of reasons: the union, once each */
  union?: string[]
  /** lists that state a setting (repository filters): the same in every shard */
  same?: string[]
  /**
   * What the merge shows for a per-shard field (each shard's own value stays in `shards`): the shards ran
   * side by side, so the longest duration is the run's, and the earliest cutoff the conservative one.
   */
  combine?: Record<string, (values: unknown[]) => unknown>
  /** figures derived from the sums, computed again on the merge */
  derive?: (merged: Record<string, unknown>) => void
}

const longest = (values: unknown[]) => Math.max(0, ...values.map(Number).filter(Number.isFinite))
const earliest = (values: unknown[]) => values.filter((v): v is string => typeof v === 'string').sort()[0] ?? null
/** each shard wrote its own file: listed per shard, none for the whole */
const perShardOnly = () => null

const integrityStatement = (corrupt: number, checked: number, bound: number, of: string) =>
  `${corrupt} corrupt in ${checked} re-hashed ${of}: no corruption above ${(bound * 100).toPrecision(2)}% at 95% confidence`

export const KIND_RULES: Record<MergeableKind, KindRules> = {
  import: {
    shardField: 'shard',
    perShard: ['jobId', 'resumedAfter', 'checkpoint', 'durationMs'],
    same: ['filters'],
    combine: {durationMs: longest},
  },
  'sweep-blobs': {
    shardField: 'shards',
    perShard: ['jobId', 'cutoff', 'reportFile', 'durationMs', 'storageClock', 'window'],
    // the storage mark walks every repository in each shard; the database mark counts them too
    whole: ['marked.repositories', 'marked.manifests', 'marked.youngLinks'],
    all: ['markComplete'],
    any: ['restartRegistry'],
    union: ['wouldRefuse'],
    combine: {
      durationMs: longest,
      cutoff: earliest,
      reportFile: perShardOnly,
      storageClock: perShardOnly,
      // an upper bound of each percentile: the slowest shard's
      window: (values) => {
        const windows = values as Array<{batches: number; p50Ms: number; p99Ms: number; maxMs: number}>
        return {
          batches: windows.reduce((sum, w) => sum + (w?.batches ?? 0), 0),
          p50Ms: longest(windows.map((w) => w?.p50Ms)),
          p99Ms: longest(windows.map((w) => w?.p99Ms)),
          maxMs: longest(windows.map((w) => w?.maxMs)),
        }
      },
    },
  },
  'audit-regions': {
    shardField: 'shard',
    perShard: ['jobId', 'cutoff', 'durationMs', 'findings.file', 'checksum.bound95', 'checksum.statement'],
    same: ['regions'],
    combine: {durationMs: longest, cutoff: earliest, 'findings.file': perShardOnly},
    derive: (merged) => {
      const checksum = merged.checksum as {checked: number; corrupt: number; sampleFraction?: number}
      if (checksum.sampleFraction === undefined) return
      const bound = corruptionBound(checksum.checked, checksum.corrupt)
      Object.assign(checksum, {
        bound95: bound,
        statement: integrityStatement(checksum.corrupt, checksum.checked, bound, 'copies'),
      })
    },
  },
  'audit-integrity': {
    shardField: 'shard',
    perShard: ['jobId', 'durationMs', 'findings.file', 'bound95', 'statement'],
    combine: {durationMs: longest, 'findings.file': perShardOnly},
    derive: (merged) => {
      const {checked, corrupt} = merged as {checked: number; corrupt: number}
      const bound = corruptionBound(checked, corrupt)
      Object.assign(merged, {bound95: bound, statement: integrityStatement(corrupt, checked, bound, 'blobs')})
    },
  },
  replicate: {
    shardField: 'shard',
    perShard: ['jobId', 'durationMs'],
    combine: {durationMs: longest},
  },
}
