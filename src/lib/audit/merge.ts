import {keyBefore} from '../storage/driver.js'

/** What one source says about a key: its entry, absent (undefined), or unknown because the source failed. */
export const UNKNOWN = Symbol('unknown')
export type Slot<T> = T | undefined | typeof UNKNOWN

export interface MergedRow<T> {
  key: string
  /** one slot per source, in the order the sources were given */
  slots: Array<Slot<T>>
}

export interface SourceFailure {
  source: number
  error: unknown
}

/**
 * K-way merge of sorted key streams (one per region, plus the database): yields each key once, with what
 * every source holds for it. Memory is one pending entry per source. A source that throws is reported
 * through `onFailure` and counts as UNKNOWN for every key from then on (never as absent: a listing that
 * broke off must not make an object look missing). A source that goes backwards is a failure too, since
 * the merge would silently pair the wrong keys.
 */
export async function* mergeSorted<T extends {key: string}>(
  sources: Array<AsyncIterable<T>>,
  onFailure: (failure: SourceFailure) => void,
): AsyncIterable<MergedRow<T>> {
  const iterators = sources.map((source) => source[Symbol.asyncIterator]())
  const heads: Array<T | undefined> = new Array(sources.length).fill(undefined)
  const failed = new Array<boolean>(sources.length).fill(false)
  const done = new Array<boolean>(sources.length).fill(false)
  const advance = async (i: number): Promise<void> => {
    const previous = heads[i]?.key
    try {
      const next = await iterators[i].next()
      if (next.done) {
        done[i] = true
        heads[i] = undefined
        return
      }
      if (previous !== undefined && !keyBefore(previous, next.value.key)) {
        throw new Error(`listing out of order: '${next.value.key}' after '${previous}'`)
      }
      heads[i] = next.value
    } catch (error) {
      failed[i] = true
      done[i] = true
      heads[i] = undefined
      onFailure({source: i, error})
      await iterators[i].return?.().catch(() => {})
    }
  }
  await Promise.all(iterators.map((_, i) => advance(i)))
  for (;;) {
    let least: string | undefined
    for (const head of heads) if (head && (least === undefined || keyBefore(head.key, least))) least = head.key
    if (least === undefined) return
    const slots: Array<Slot<T>> = heads.map((head, i) => (failed[i] ? UNKNOWN : head?.key === least ? head : undefined))
    const moving = heads.flatMap((head, i) => (head?.key === least ? [i] : []))
    await Promise.all(moving.map((i) => advance(i)))
    yield {key: least, slots}
  }
}
