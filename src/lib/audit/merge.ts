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

/** Rows handed over at once by the batched merge: about a listing page's worth. */
const ROWS_PER_BATCH = 1000

export {inBatches} from '../storage/driver.js'

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
  for await (const rows of mergeSortedBatches(sources.map(oneByOne), onFailure, 1)) yield* rows
}

async function* oneByOne<T>(source: AsyncIterable<T>): AsyncIterable<T[]> {
  for await (const item of source) yield [item]
}

/**
 * The merge of `mergeSorted` over sources that hand over their entries a batch at a time (a listing's
 * page, a prefix read ahead, a page of the database), with its rows in batches too: the keys of a batch
 * are merged without an await each. At 10k blobs in two regions, awaiting every key of every source and
 * every row (a dozen promises per blob) was most of a size audit's CPU after start-up. Memory is one
 * batch per source and `rowsPerBatch` rows.
 */
export async function* mergeSortedBatches<T extends {key: string}>(
  sources: Array<AsyncIterable<readonly T[]>>,
  onFailure: (failure: SourceFailure) => void,
  rowsPerBatch = ROWS_PER_BATCH,
): AsyncIterable<Array<MergedRow<T>>> {
  const count = sources.length
  const iterators = sources.map((source) => source[Symbol.asyncIterator]())
  const batches: Array<readonly T[]> = new Array(count).fill([])
  const positions = new Array<number>(count).fill(0)
  /** the key last taken from each source: the next one must sort after it */
  const last = new Array<string | undefined>(count).fill(undefined)
  const failed = new Array<boolean>(count).fill(false)
  const done = new Array<boolean>(count).fill(false)
  const fail = (i: number, error: unknown): void => {
    failed[i] = true
    done[i] = true
    batches[i] = []
    positions[i] = 0
    onFailure({source: i, error})
    void Promise.resolve(iterators[i].return?.()).catch(() => {})
  }
  /** Checks the order of source i's head; false when the source failed on it. */
  const inOrder = (i: number): boolean => {
    const previous = last[i]
    const key = batches[i][positions[i]].key
    if (previous === undefined || keyBefore(previous, key)) return true
    fail(i, new Error(`listing out of order: '${key}' after '${previous}'`))
    return false
  }
  const refill = async (i: number): Promise<void> => {
    try {
      for (;;) {
        const next = await iterators[i].next()
        if (next.done) {
          done[i] = true
          batches[i] = []
          positions[i] = 0
          return
        }
        if (next.value.length === 0) continue
        batches[i] = next.value
        positions[i] = 0
        inOrder(i)
        return
      }
    } catch (error) {
      fail(i, error)
    }
  }
  let rows: Array<MergedRow<T>> = []
  for (;;) {
    const empty: number[] = []
    for (let i = 0; i < count; i++) if (!done[i] && positions[i] >= batches[i].length) empty.push(i)
    if (empty.length > 0) {
      await Promise.all(empty.map(refill))
      continue
    }
    let least: string | undefined
    for (let i = 0; i < count; i++) {
      if (done[i]) continue
      const key = batches[i][positions[i]].key
      if (least === undefined || keyBefore(key, least)) least = key
    }
    if (least === undefined) break
    const slots = new Array<Slot<T>>(count)
    for (let i = 0; i < count; i++) {
      if (failed[i]) slots[i] = UNKNOWN
      else if (done[i] || batches[i][positions[i]].key !== least) slots[i] = undefined
      else {
        slots[i] = batches[i][positions[i]]
        last[i] = least
        if (++positions[i] < batches[i].length) inOrder(i)
      }
    }
    rows.push({key: least, slots})
    if (rows.length >= rowsPerBatch) {
      yield rows
      rows = []
    }
  }
  if (rows.length > 0) yield rows
}
