// One seeded oracle run: build a registry state from a seed (./scenario.ts), then compare the exact
// candidate sets of `regops sweep blobs` (storage strategy, and metadata strategy after `regops import`)
// with `docker-registry garbage-collect --dry-run`. Used by test/lib/sweep/oracle.test.ts (a few seeds)
// and scripts/oracle.ts (many).
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { reportDigests, runCli } from './cli.js';
import { sharedPostgres } from './postgres.js';
import { sharedRadosgw } from './radosgw.js';
import { startRegistry, type RegistryServer } from './registry.js';
import { buildScenario, type RawLayout, type Scenario } from './scenario.js';
import { makeTempDir, removeTempDir } from './tmp.js';
import { pullImage } from './images.js';
import { ageTree } from '../../src/lib/quickstart/sample.js';
import { openDatabase } from '../../src/lib/metadata/db.js';
import { migrateUp } from '../../src/lib/metadata/migrations.js';

export type Backend = 'filesystem' | 's3';

export interface SetDiff {
  /** the registry's GC names it, regops does not */
  missing: string[];
  /** regops names it, the registry's GC does not */
  extra: string[];
}

export interface OracleRun {
  seed: number;
  backend: Backend;
  scenario: Scenario;
  /** what garbage-collect --dry-run names, less the subjects of kept referrers (regops keeps those) */
  expected: string[];
  storage: SetDiff;
  /** the storage strategy with every spill on disk and every shard's marks split by unit */
  storageSplit: SetDiff;
  metadata: SetDiff;
  importExit: number | null;
  /** tags that no longer pull in full (none expected: nothing was deleted) */
  unpullable: string[];
}

const diff = (expected: string[], got: string[]): SetDiff => ({
  missing: expected.filter((d) => !got.includes(d)),
  extra: got.filter((d) => !expected.includes(d)),
});

export async function runOracle(seed: number, backend: Backend, opts: { bulkBlobs?: number } = {}): Promise<OracleRun> {
  const dir = makeTempDir(`oracle-${backend}-${seed}`);
  let registry: RegistryServer | undefined;
  const s3 = backend === 's3' ? await sharedRadosgw() : undefined;
  const client = s3?.s3Client();
  try {
    const dbUrl = await (await sharedPostgres()).createDatabase();
    const db = openDatabase(dbUrl, { max: 1 });
    try {
      await migrateUp(db);
    } finally {
      await db.close();
    }
    let raw: RawLayout;
    let region: string;
    const root = path.join(dir, 'storage');
    if (s3 && client) {
      const bucket = await s3.newBucket(`oracle-${seed}`);
      registry = await startRegistry({
        storage: {
          kind: 's3',
          endpoint: s3.endpoint,
          bucket,
          accessKeyId: s3.accessKeyId,
          secretAccessKey: s3.secretAccessKey,
          region: s3.region,
        },
      });
      const key = (k: string) => `docker/registry/v2/${k}`;
      raw = {
        write: async (k, bytes) =>
          void (await client.send(new PutObjectCommand({ Bucket: bucket, Key: key(k), Body: bytes }))),
        remove: async (k) => void (await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key(k) }))),
      };
      region = `{url: "s3://${bucket}/docker/registry/v2", endpoint: "${s3.endpoint}", accessKeyId: "${s3.accessKeyId}", secretAccessKey: "${s3.secretAccessKey}", checksums: when_required}`;
    } else {
      registry = await startRegistry({ storage: { kind: 'filesystem', root } });
      const file = (k: string) => path.join(root, 'docker/registry/v2', k);
      raw = {
        write: async (k, bytes) => {
          await mkdir(path.dirname(file(k)), { recursive: true });
          await writeFile(file(k), bytes);
        },
        remove: async (k) => rm(file(k), { force: true }),
      };
      region = `{url: "file://${path.join(root, 'docker/registry/v2')}"}`;
    }
    const config = path.join(dir, 'regops.yaml');
    await writeFile(config, `regions:\n  main: ${region}\ndatabase:\n  url: ${dbUrl}\n`);

    const { scenario, afterImport } = await buildScenario({
      seed,
      registryUrl: registry.url,
      raw,
      bulkBlobs: opts.bulkBlobs,
    });
    // On a filesystem everything so far becomes three days old, so the metadata strategy has to rely on
    // the database for it (its catch-up walk re-reads only what is newer than the import). S3 keeps its
    // own LastModified: there the catch-up walk covers everything.
    if (backend === 'filesystem') await ageTree(root, new Date(Date.now() - 3 * 86_400_000));
    const imported = await runCli(['import', '--config', config, '--json']);
    if (imported.code !== 0 && imported.code !== 1)
      throw new Error(`seed ${seed}: import exited ${imported.code}\n${imported.stdout}${imported.stderr}`);
    await afterImport();

    const gc = await registry.garbageCollect({ dryRun: true });
    if (gc.exitCode !== 0) throw new Error(`seed ${seed}: garbage-collect failed\n${gc.output}`);
    const expected = gc.eligibleBlobs.filter((d) => !scenario.subjectsKept.includes(d));
    const sweep = async (strategy: 'storage' | 'metadata', env: Record<string, string> = {}): Promise<string[]> => {
      const report = path.join(dir, `${strategy}${Object.keys(env).length}.jsonl`);
      const res = await runCli(
        [
          'sweep',
          'blobs',
          '--config',
          config,
          '--strategy',
          strategy,
          '--min-age',
          '0s',
          '--force',
          '--report',
          report,
          '--json',
        ],
        { env },
      );
      if (res.code !== 0 && res.code !== 1)
        throw new Error(`seed ${seed}: sweep --strategy ${strategy} exited ${res.code}\n${res.stdout}${res.stderr}`);
      return reportDigests(report);
    };
    const storage = diff(expected, await sweep('storage'));
    // The storage strategy again with every shard's marks split by unit before they are sorted (as a
    // shard of millions of marks is), spilled from the first line.
    const storageSplit = diff(
      expected,
      await sweep('storage', { REGOPS_SPLIT_MARKS_BYTES: '0', REGOPS_SPILL_MEMORY_LINES: '0' }),
    );
    const metadata = diff(expected, await sweep('metadata'));
    const unpullable: string[] = [];
    for (const { repo, tag } of scenario.pullable) {
      const pulled = await pullImage(registry.url, repo, tag);
      if (!pulled.ok) unpullable.push(`${repo}:${tag} (${pulled.errors.join('; ')})`);
    }
    return {
      seed,
      backend,
      scenario,
      expected,
      storage,
      storageSplit,
      metadata,
      importExit: imported.code,
      unpullable,
    };
  } finally {
    client?.destroy();
    await registry?.stop();
    await removeTempDir(dir);
  }
}

/** A failure message that names the seed, the differences, and the operations that built the state. */
export function describeRun(run: OracleRun): string {
  return [
    `seed ${run.seed} on ${run.backend}: ${run.expected.length} expected candidates`,
    `  storage strategy:  missing ${JSON.stringify(run.storage.missing)} extra ${JSON.stringify(run.storage.extra)}`,
    `  storage strategy, marks split by unit:  missing ${JSON.stringify(run.storageSplit.missing)} extra ${JSON.stringify(run.storageSplit.extra)}`,
    `  metadata strategy: missing ${JSON.stringify(run.metadata.missing)} extra ${JSON.stringify(run.metadata.extra)}`,
    ...(run.unpullable.length ? [`  unpullable: ${run.unpullable.join(', ')}`] : []),
    `  operations:`,
    ...run.scenario.ops.map((o) => `    ${o}`),
  ].join('\n');
}
