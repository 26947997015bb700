import type {Logger} from '../output/logger.js'
import type {StorageDriver} from '../storage/driver.js'
import {pathFor} from '../storage/layout.js'
import {copyVerified, finishInterruptedCopies, type CopyResult, type VerifiedCopier} from './copy.js'

export interface RepairCounts {
  copied: number
  failed: number
  unavailable: number
}

/**
 * What `--repair --from R` does with the audit's findings: copy the object from R to the region that lacks
 * it or holds a bad copy, verified and journaled. It decides nothing: the audit's comparison (classify,
 * tag and link presence) names what is wrong; this only knows how to fix one object.
 */
export class RegionRepair {
  constructor(
    private readonly copier: VerifiedCopier,
    private readonly from: string,
    private readonly logger: Logger,
  ) {}

  /** The copies a killed run of this job left without an outcome: finished (or found done) before it goes on. */
  async finishInterrupted(drivers: StorageDriver[], counts: RepairCounts): Promise<void> {
    for (const result of await finishInterruptedCopies(this.copier, drivers)) {
      counts[result.outcome]++
      if (result.outcome !== 'copied')
        this.logger.warn(`interrupted repair: ${result.outcome}`, {message: result.message})
    }
  }

  /** Copies `key` from the healthy region to `target` (nothing when the target is that region). */
  async object(target: StorageDriver, key: string, reason: string, counts: RepairCounts): Promise<void> {
    if (target.region === this.from) return
    const result: CopyResult = await copyVerified(this.copier, target, key, {reason})
    counts[result.outcome]++
    if (result.outcome !== 'copied')
      this.logger.warn(`repair of ${key} in ${target.region}: ${result.outcome}`, {message: result.message})
  }

  /**
   * Sets a tag in `target` to what it is in the healthy region: the tag's history (index link) of that digest
   * first, as the registry writes both, then its current link.
   */
  async tag(
    target: StorageDriver,
    key: string,
    tag: {repository: string; tag: string; digest?: string},
    counts: RepairCounts,
  ): Promise<void> {
    if (target.region === this.from) return
    if (tag.digest) {
      const history = pathFor({kind: 'tag-index-link', repository: tag.repository, tag: tag.tag, digest: tag.digest})
      // Only when the target lacks it: rewriting a history link it holds already would journal a copy of nothing.
      if (!(await this.holdsSame(target, history))) await this.object(target, history, 'tag_mismatch', counts)
    }
    await this.object(target, key, 'tag_mismatch', counts)
  }

  private async holdsSame(target: StorageDriver, key: string): Promise<boolean> {
    const read = (driver: StorageDriver) =>
      driver.readSmall(key, 1024).catch((error: unknown) => {
        if ((error as {code?: string}).code === 'NOT_FOUND') return undefined
        throw error
      })
    const [wanted, held] = await Promise.all([read(this.copier.source), read(target)])
    return wanted !== undefined && held !== undefined && wanted.equals(held)
  }
}
