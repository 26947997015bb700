// A purge SIGKILLed between its intent and its outcome (found by the crash matrix, test/reliability/crash.ts):
// the re-run gives that intent its outcome instead of journaling a second intent beside it, whether the
// killed run had deleted the quarantine copy already or not.
import {after, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {sharedPostgres} from '../../helpers/postgres.js'
import {openDatabase} from '../../../src/lib/metadata/db.js'
import {migrateUp} from '../../../src/lib/metadata/migrations.js'
import {FilesystemDriver} from '../../../src/lib/storage/filesystem.js'
import {LayoutWriter} from '../../../src/lib/sample/layout-writer.js'
import {ageTree} from '../../../src/lib/quickstart/sample.js'
import {sweepBlobs} from '../../../src/lib/sweep/sweep-blobs.js'
import {purgeQuarantine, quarantinedEntries} from '../../../src/lib/sweep/restore-purge.js'
import {journalIntents} from '../../../src/lib/sweep/journal.js'
import {Logger} from '../../../src/lib/output/logger.js'

const logger = new Logger('silent')
const cleanups: Array<() => Promise<void>> = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

test('a killed purge: the re-run closes its open intents once, done where the copy is gone, redone where not', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'regops-purge-killed-'))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  const driver = new FilesystemDriver('main', join(dir, 'store'))
  const writer = new LayoutWriter(driver)
  await writer.writeImage({repository: 'team/app', tag: 'v1', seed: 'purge-killed-kept', layers: 1, layerSize: 200})
  for (let i = 0; i < 3; i++) await writer.writeOrphan('team/app', `purge-killed-${i}`, 300 + i)
  await ageTree(join(dir, 'store'), new Date(Date.now() - 3 * 86_400_000))
  const db = openDatabase(await (await sharedPostgres()).createDatabase(), {max: 4})
  cleanups.push(() => db.close())
  await migrateUp(db)
  const swept = await sweepBlobs({
    driver,
    db,
    logger,
    mode: 'quarantine',
    strategy: 'storage',
    minAgeMs: 86_400_000,
    quarantinePrefix: '_regops/quarantine',
    allowMassDelete: true,
  })
  assert.equal(swept.acted.quarantined, 3)
  const [deleted, untouched] = await quarantinedEntries(db, 'main')
  // What the killed purge left: an intent for each of two entries, one whose copy it had deleted already.
  for (const entry of [deleted!, untouched!])
    await journalIntents(db, null, [
      {
        action: 'purge',
        region: 'main',
        key: entry.key,
        digest: entry.digest,
        size: entry.size,
        detail: {quarantineEntry: entry.entry, quarantineKey: entry.quarantineKey},
      },
    ])
  await driver.deleteMany([deleted!.quarantineKey])

  const purged = await purgeQuarantine({db, driver, holdForMs: 0, strategy: 'storage', dryRun: false, logger})
  assert.equal(purged.failed.length, 0)
  assert.equal(purged.purged, 2, 'the untouched entry and the third one; the deleted one is done already')
  const intents = await db.query<{digest: string; outcomes: string[]}>(
    `SELECT i.digest, array_agg(o.phase ORDER BY o.id) AS outcomes
       FROM regops_journal i LEFT JOIN regops_journal o ON o.intent_id = i.id
      WHERE i.action = 'purge' AND i.phase = 'intent' GROUP BY i.id, i.digest ORDER BY i.id`,
  )
  const byDigest = (digest: string) => intents.rows.filter((row) => row.digest === digest).map((row) => row.outcomes)
  assert.deepEqual(byDigest(deleted!.digest), [['done']], 'one intent, closed done')
  assert.deepEqual(byDigest(untouched!.digest), [['failed'], ['done']], 'closed as interrupted, then purged')
  assert.deepEqual(await quarantinedEntries(db, 'main'), [])
  for (const entry of [deleted!, untouched!]) assert.equal(await driver.stat(entry.quarantineKey), undefined)
})
