// Self-test of the test helpers: radosgw (real S3 on a one-node Ceph cluster),
// docker-registry (distribution 2.8.2) on filesystem and S3, synthetic images,
// garbage collection, process/temp-dir cleanup.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  GetObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { freePort } from './helpers/ports.js';
import { startRadosgw, type RadosgwServer } from './helpers/radosgw.js';
import { parseGcOutput, startRegistry, type RegistryServer } from './helpers/registry.js';
import {
  blobExists,
  deleteManifest,
  digestOf,
  headManifest,
  listCatalog,
  listTags,
  pullImage,
  pushImage,
  pushIndex,
  randomBlob,
  uploadOrphanBlob,
  type PushedImage,
  type PushedIndex,
} from './helpers/images.js';
import { makeTempDir, removeTempDir } from './helpers/tmp.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // a zombie still answers kill(0); treat it as dead
  const st = spawnSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).stdout.trim();
  return st !== '' && !st.startsWith('Z');
}

async function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

/** Every blob digest a set of pushed artifacts keeps alive (manifests are blobs too). */
function referenced(items: (PushedImage | PushedIndex)[]): Set<string> {
  const out = new Set<string>();
  for (const it of items) {
    out.add(it.manifestDigest);
    if ('children' in it) {
      for (const c of it.children) referenced([c]).forEach((d) => out.add(d));
    } else {
      it.blobs.forEach((b) => out.add(b.digest));
    }
  }
  return out;
}

function allDigests(items: (PushedImage | PushedIndex)[], extra: string[] = []): Set<string> {
  return new Set([...referenced(items), ...extra]);
}

function difference(a: Set<string>, b: Set<string>): string[] {
  return [...a].filter((x) => !b.has(x)).sort();
}

async function putGetList(s3: S3Client, bucket: string, key: string, body: Buffer): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length }));
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: key.split('/')[0] + '/' }));
  assert.deepEqual(
    listed.Contents?.map((o) => [o.Key, o.Size]),
    [[key, body.length]],
  );
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const bytes = Buffer.from(await got.Body!.transformToByteArray());
  assert.equal(digestOf(bytes), digestOf(body));
}

/**
 * Scenario shared by the filesystem and S3 registries: an image, a multi-arch
 * index whose two children share a layer, a second image that gets deleted, and
 * an orphan blob. Returns what remains and the expected GC-eligible blobs.
 */
async function populate(url: string, seed: string) {
  const app = await pushImage(url, 'lib/app', 'v1', { layers: 2, layerSize: 3000, seed: `${seed}/app` });
  const shared = randomBlob(5000, `${seed}/shared`);
  const amd64 = await pushImage(url, 'lib/multi', undefined, {
    layers: [shared, randomBlob(700, `${seed}/amd64-only`)],
    seed: `${seed}/amd64`,
    platform: { os: 'linux', architecture: 'amd64' },
  });
  const arm64 = await pushImage(url, 'lib/multi', undefined, {
    layers: [shared],
    seed: `${seed}/arm64`,
    platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
  });
  const index = await pushIndex(url, 'lib/multi', 'latest', [amd64, arm64]);
  // an OCI image sharing a layer with `app`, then deleted: its own blobs become
  // garbage, the shared layer must not.
  const doomed = await pushImage(url, 'lib/app', 'v2', {
    layers: [randomBlob(3000, `${seed}/app/layer/0`), randomBlob(1500, `${seed}/doomed`)],
    seed: `${seed}/doomed`,
    mediaType: 'oci',
  });
  assert.equal(doomed.layerDigests[0], app.layerDigests[0]);
  await deleteManifest(url, 'lib/app', doomed.manifestDigest);
  const orphan = await uploadOrphanBlob(url, 'lib/orphans', 4096, `${seed}/orphan`);
  const remaining = [app, index];
  const expected = difference(allDigests([app, index, doomed], [orphan.digest]), referenced(remaining));
  return { app, amd64, arm64, index, doomed, orphan, remaining, expected };
}

async function assertAllPull(url: string, refs: [string, string][]): Promise<void> {
  for (const [repo, ref] of refs) {
    const p = await pullImage(url, repo, ref);
    assert.ok(p.ok, `${repo}:${ref} should pull in full: ${p.errors.join('; ')}`);
    assert.ok(p.blobs.length > 0);
  }
}

describe('ports and tmp', () => {
  test('freePort returns distinct bindable ports', async () => {
    const [a, b] = await Promise.all([freePort(), freePort()]);
    assert.notEqual(a, b);
    for (const p of [a, b]) {
      await new Promise<void>((resolve, reject) => {
        const s = net.createServer().once('error', reject);
        s.listen(p, '127.0.0.1', () => s.close(() => resolve()));
      });
    }
  });

  test('install-test-deps.sh is quiet and succeeds when everything is installed', () => {
    const r = spawnSync('bash', [path.join(root, 'scripts/install-test-deps.sh')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout + r.stderr, '');
  });

  test('children die and temp dirs go when the test process exits without stop()', async () => {
    const dir = makeTempDir('exit-check');
    try {
      const script = path.join(dir, 'child.mts');
      const reg = pathToFileURL(path.join(here, 'helpers/registry.ts')).href;
      await writeFile(
        script,
        `import { startRegistry } from ${JSON.stringify(reg)};
const r = await startRegistry({ storage: { kind: 'filesystem' } });
console.log(JSON.stringify({ pid: r.pid, dir: r.dir, port: r.port }));
if (process.argv[2] === 'exit') process.exit(3);
setInterval(() => {}, 1000);
`,
      );
      for (const mode of ['exit', 'sigkill'] as const) {
        const child = spawn(process.execPath, ['--import', 'tsx', script, mode], {
          cwd: root,
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        const info = await new Promise<{ pid: number; dir: string; port: number }>((resolve, reject) => {
          child.stdout!.on('data', (b: Buffer) => {
            out += b.toString();
            const line = out.split('\n').find((l) => l.startsWith('{'));
            if (line) resolve(JSON.parse(line));
          });
          child.once('exit', (c) => (out.includes('{') ? undefined : reject(new Error(`child exited ${c}: ${out}`))));
        });
        assert.ok(info.pid > 0 && info.dir.includes('regops-test-'));
        if (mode === 'sigkill') child.kill('SIGKILL');
        await new Promise((r) => (child.exitCode !== null || child.signalCode ? r(null) : child.once('exit', r)));
        try {
          for (let i = 0; i < 100 && pidAlive(info.pid); i++) await new Promise((r) => setTimeout(r, 20));
          assert.equal(pidAlive(info.pid), false, `${mode}: registry pid ${info.pid} still alive`);
          assert.ok(await refused(info.port), `${mode}: registry port still open`);
          if (mode === 'exit') assert.equal(existsSync(info.dir), false, 'temp dir removed by the exit handler');
        } finally {
          // on failure, do not leak the survivor; SIGKILL of the runner leaves files behind by nature
          if (pidAlive(info.pid)) process.kill(info.pid, 'SIGKILL');
          await removeTempDir(info.dir);
        }
      }
    } finally {
      await removeTempDir(dir);
    }
  });

  test('parseGcOutput reads distribution 2.8.2 output', () => {
    const d = (c: string) => 'sha256:' + c.repeat(64);
    const out = [
      'lib/app',
      `lib/app: marking manifest ${d('a')} `,
      `lib/app: marking blob ${d('b')}`,
      '',
      '2 blobs marked, 2 blobs and 1 manifests eligible for deletion',
      `manifest eligible for deletion: ${d('e')}`,
      `blob eligible for deletion: ${d('d')}`,
      `blob eligible for deletion: ${d('c')}`,
    ].join('\n');
    assert.deepEqual(parseGcOutput(out), {
      eligibleBlobs: [d('c'), d('d')],
      eligibleManifests: [d('e')],
      marked: [d('a'), d('b')],
    });
  });
});

describe('radosgw', () => {
  let a: RadosgwServer;
  before(async () => {
    a = await startRadosgw({ buckets: ['regops-a'] });
    console.log(`# radosgw A ready in ${a.startMs} ms, RSS ${Math.round(a.rssKiB() / 1024)} MiB`);
  });
  after(async () => {
    await a?.stop();
  });

  test('put, list and get objects', async () => {
    const s3 = a.s3Client();
    try {
      assert.match(a.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
      await putGetList(s3, 'regops-a', 'small/one', Buffer.from('hello'));
      // bigger than one rgw stripe (4 MiB), sent with ContentLength
      await putGetList(s3, 'regops-a', 'big/blob', randomBlob(5 * 1024 * 1024 + 17, 'big'));
      const buckets = await s3.send(new ListBucketsCommand({}));
      assert.deepEqual(
        buckets.Buckets?.map((b) => b.Name),
        ['regops-a'],
      );
    } finally {
      s3.destroy();
    }
  });

  test('two clusters side by side; killGateway makes requests fail; startGateway recovers; stop cleans up', async () => {
    const b = await startRadosgw({ buckets: ['regops-b'] });
    const s3b = b.s3Client({ maxAttempts: 1 });
    const s3a = a.s3Client({ maxAttempts: 1 });
    try {
      console.log(`# radosgw B ready in ${b.startMs} ms, RSS ${Math.round(b.rssKiB() / 1024)} MiB`);
      assert.notEqual(b.endpoint, a.endpoint);
      assert.notEqual(b.fsid, a.fsid);
      assert.notEqual(b.dir, a.dir);
      await putGetList(s3b, 'regops-b', 'only-in/b', Buffer.from('bee'));
      // distinct clusters: A knows nothing of B's bucket
      await assert.rejects(s3a.send(new ListObjectsV2Command({ Bucket: 'regops-b' })), /NoSuchBucket/);
      await b.killGateway();
      assert.equal(b.gatewayRunning, false);
      await assert.rejects(s3b.send(new ListBucketsCommand({})), /ECONNREFUSED/);
      // the other cluster is unaffected
      await s3a.send(new ListBucketsCommand({}));
      await b.startGateway();
      const again = await s3b.send(new GetObjectCommand({ Bucket: 'regops-b', Key: 'only-in/b' }));
      assert.equal(await again.Body!.transformToString(), 'bee');
    } finally {
      s3a.destroy();
      s3b.destroy();
      await b.stop();
    }
    assert.equal(existsSync(b.dir), false);
    assert.ok(await refused(b.port));
  });

  describe('docker-registry on S3 (radosgw)', () => {
    let reg: RegistryServer;
    before(async () => {
      await a.createBucket('registry');
      reg = await startRegistry({
        storage: {
          kind: 's3',
          endpoint: a.endpoint,
          bucket: 'registry',
          accessKeyId: a.accessKeyId,
          secretAccessKey: a.secretAccessKey,
          region: a.region,
          rootdirectory: '/reg-root',
        },
      });
      console.log(`# registry (s3) ready in ${reg.startMs} ms`);
    });
    after(async () => {
      await reg?.stop();
    });

    test('push, delete, orphan, GC dry run lists exactly the orphans, pulls work', async () => {
      const s = await populate(reg.url, 's3');
      assert.deepEqual(await listCatalog(reg.url), ['lib/app', 'lib/multi', 'lib/orphans']);
      assert.deepEqual(await listTags(reg.url, 'lib/app'), ['v1']);
      assert.equal(await headManifest(reg.url, 'lib/multi', 'latest'), s.index.manifestDigest);
      await assertAllPull(reg.url, [
        ['lib/app', 'v1'],
        ['lib/multi', 'latest'],
      ]);
      // the layout really is in the bucket
      const s3 = a.s3Client();
      try {
        const hex = s.orphan.digest.slice('sha256:'.length);
        const key = `reg-root/docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
        const l = await s3.send(new ListObjectsV2Command({ Bucket: 'registry', Prefix: key }));
        assert.deepEqual(
          l.Contents?.map((o) => [o.Key, o.Size]),
          [[key, 4096]],
        );
      } finally {
        s3.destroy();
      }
      const gc = await reg.garbageCollect({ dryRun: true });
      assert.equal(gc.exitCode, 0, gc.output);
      assert.deepEqual(gc.eligibleBlobs, s.expected);
      assert.ok(s.expected.includes(s.orphan.digest) && s.expected.includes(s.doomed.manifestDigest));
      assert.ok(!s.expected.includes(s.app.layerDigests[0]!));
      assert.equal(await blobExists(reg.url, 'lib/orphans', s.orphan.digest), true, 'dry run deletes nothing');
    });
  });
});

describe('docker-registry on the filesystem', () => {
  let reg: RegistryServer;
  before(async () => {
    reg = await startRegistry({ storage: { kind: 'filesystem' } });
    console.log(`# registry (filesystem) ready in ${reg.startMs} ms, RSS ${Math.round(reg.rssKiB() / 1024)} MiB`);
  });
  after(async () => {
    await reg?.stop();
  });

  test('GC dry run lists exactly the unreferenced blobs; real GC removes them; every tag still pulls', async () => {
    const s = await populate(reg.url, 'fs');
    assert.deepEqual(await listTags(reg.url, 'lib/app'), ['v1']);
    assert.equal(await headManifest(reg.url, 'lib/app', 'v2'), undefined);
    const pulledDoomed = await pullImage(reg.url, 'lib/app', s.doomed.manifestDigest);
    assert.equal(pulledDoomed.ok, false);
    assert.deepEqual(pulledDoomed.missing, [s.doomed.manifestDigest]);

    const dry = await reg.garbageCollect({ dryRun: true });
    assert.equal(dry.exitCode, 0, dry.output);
    assert.deepEqual(dry.eligibleBlobs, s.expected);
    assert.deepEqual(dry.eligibleManifests, []);
    // expected: doomed manifest + config + its own layer, and the orphan
    assert.equal(s.expected.length, 4);

    // real GC with the registry stopped, then restart on the same port
    await reg.stopServer();
    assert.equal(reg.running, false);
    const real = await reg.garbageCollect();
    assert.equal(real.exitCode, 0, real.output);
    assert.deepEqual(real.eligibleBlobs, s.expected);
    await reg.start();
    const blobDir = (d: string) =>
      path.join(reg.storageRoot!, 'docker/registry/v2/blobs/sha256', d.slice(7, 9), d.slice(7));
    assert.equal(existsSync(blobDir(s.app.configDigest)), true);
    for (const d of s.expected) assert.equal(existsSync(blobDir(d)), false, `${d} removed by GC`);
    assert.equal(await blobExists(reg.url, 'lib/orphans', s.orphan.digest), false);
    await assertAllPull(reg.url, [
      ['lib/app', 'v1'],
      ['lib/multi', 'latest'],
      ['lib/multi', s.arm64.manifestDigest],
    ]);
    const again = await reg.garbageCollect({ dryRun: true });
    assert.deepEqual(again.eligibleBlobs, []);
  });

  test('--delete-untagged in 2.8.2 also condemns index children (known distribution bug)', async () => {
    const gc = await reg.garbageCollect({ dryRun: true, deleteUntagged: true });
    assert.equal(gc.exitCode, 0, gc.output);
    const mf = await headManifest(reg.url, 'lib/multi', 'latest');
    assert.ok(mf);
    // the untagged children of lib/multi:latest are reported as eligible manifests
    assert.equal(gc.eligibleManifests.length, 2, gc.output);
  });

  test('a pull reports blobs whose storage was damaged', async () => {
    const img = await pushImage(reg.url, 'lib/damaged', 'v1', { layers: 2, seed: 'damage' });
    const hex = img.layerDigests[1]!.slice(7);
    const data = path.join(reg.storageRoot!, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    await writeFile(data, randomBlob(1024, 'not the right bytes')); // same size, other content
    const p = await pullImage(reg.url, 'lib/damaged', 'v1');
    assert.equal(p.ok, false);
    assert.deepEqual(p.missing, [img.layerDigests[1]]);
  });
});
