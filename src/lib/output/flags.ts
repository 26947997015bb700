import {Flags} from '@oclif/core'
import {UsageError} from '../errors.js'

/** `--shard i/n`: worker i of n (0-based), each taking a contiguous range of the 256 digest prefixes. */
export const shardFlag = Flags.custom<{index: number; count: number}>({
  summary: 'Run as worker i of n (0-based, e.g. 2/8); each worker takes its own range of digest prefixes or repositories.',
  helpValue: 'i/n',
  parse: async (input) => {
    const match = /^(\d+)\/(\d+)$/.exec(input)
    const index = Number(match?.[1])
    const count = Number(match?.[2])
    if (!match || count < 1 || count > 256 || index >= count) throw new UsageError(`invalid --shard '${input}': i/n with 0 <= i < n <= 256, e.g. 0/4`)
    return {index, count}
  },
})

export const databaseUrlFlag = Flags.string({summary: 'PostgreSQL URL (overrides config and DATABASE_URL).', env: 'REGOPS_DATABASE_URL'})
export const regionFlag = Flags.string({summary: 'Region to act on (default: primary).', char: 'r'})
