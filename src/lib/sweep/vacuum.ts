import type {StorageDriver} from '../storage/driver.js'
import {parseKey, tagsPrefix} from '../storage/layout.js'

/**
 * The storage primitives of the sweep and of its undo: they know how to remove or move an object and
 * nothing about why. Every caller journals the intent before and the outcome after.
 */

/** Deletes the keys, throwing the first failure (a missing object counts as deleted, as in the driver). */
export async function deleteObjects(driver: StorageDriver, keys: string[]): Promise<void> {
  const outcome = await driver.deleteMany(keys)
  if (outcome.errors.length > 0) throw new Error(outcome.errors[0].message)
}

/** Copies `from` to `to` and says whether the copy landed whole (its size is `size`). */
export async function copyChecked(driver: StorageDriver, from: string, to: string, size: number): Promise<boolean> {
  await driver.copy(from, to)
  const copy = await driver.stat(to)
  return copy !== undefined && copy.size === size
}

/**
 * Moves a blob to its quarantine key: copy, check the copy's size, then delete the original. `signal`
 * is checked before the original is touched, so a stopped job leaves it in place.
 */
export async function quarantineBlob(
  driver: StorageDriver,
  key: string,
  quarantineKey: string,
  signal?: AbortSignal,
): Promise<void> {
  const source = await driver.stat(key)
  if (source) {
    signal?.throwIfAborted()
    if (!(await copyChecked(driver, key, quarantineKey, source.size)))
      throw new Error(`quarantine copy ${quarantineKey} is not complete; the blob was left in place`)
    signal?.throwIfAborted()
    await deleteObjects(driver, [key])
    return
  }
  // Already moved (a resumed action): the quarantine copy must exist.
  if (!(await driver.stat(quarantineKey))) throw new Error(`neither ${key} nor its quarantine copy exists`)
}

/** Moves a quarantined blob back to its place in the blob store (unless an intact copy is already there). */
export async function moveBack(
  driver: StorageDriver,
  item: {key: string; quarantineKey: string; size: number},
): Promise<void> {
  const present = await driver.stat(item.key)
  if (!present || present.size !== item.size) {
    if (!(await copyChecked(driver, item.quarantineKey, item.key, item.size)))
      throw new Error(`restored copy of ${item.key} has the wrong size; the quarantine copy was kept`)
  }
  await deleteObjects(driver, [item.quarantineKey])
}

/** Removes an untagged manifest from a repository the way distribution does: its revision link and tag index entries. */
export async function deleteManifestLinks(
  driver: StorageDriver,
  repository: string,
  digest: string,
  revisionKey: string,
): Promise<void> {
  const keys = [revisionKey]
  for await (const object of driver.list(tagsPrefix(repository))) {
    try {
      const spec = parseKey(object.key)
      if (spec.kind === 'tag-index-link' && spec.digest === digest) keys.push(object.key)
    } catch {
      // not ours to judge here; the sweep's walk reported it
    }
  }
  await deleteObjects(driver, keys)
}
