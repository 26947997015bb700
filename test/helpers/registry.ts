// Debian's docker-registry (CNCF distribution 2.8.2) on 127.0.0.1, storage on
// the filesystem or on S3 (e.g. radosgw from ./radosgw.ts).
//
// Gotchas:
//  - the registry panics at start (LoadCustomCABundleError) if AWS_CA_BUNDLE is
//    set, so the child gets an environment without any AWS_* variable;
//  - with `regionendpoint` set the S3 driver uses path-style URLs; the bucket
//    must exist before the registry starts;
//  - upload purging is disabled by default (it would delete _uploads/ entries
//    that sweep tests create on purpose).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { freePort } from './ports.js';
import { envWithoutAws, makeTempDir, removeTempDir, runCommand, spawnDaemon, waitFor, type Daemon } from './tmp.js';

export const REGISTRY_BIN = process.env.REGOPS_TEST_REGISTRY_BIN ?? '/usr/bin/docker-registry';

export type RegistryStorage =
  | { kind: 'filesystem'; /** default: <tempdir>/storage */ root?: string }
  | {
      kind: 's3';
      endpoint: string;
      bucket: string;
      accessKeyId: string;
      secretAccessKey: string;
      region: string;
      rootdirectory?: string;
    };

export interface StartRegistryOptions {
  storage: RegistryStorage;
  /** storage.delete.enabled (default true) */
  deleteEnabled?: boolean;
  /** storage.maintenance.uploadpurging.enabled (default false) */
  uploadPurging?: boolean;
  /** storage.maintenance.readonly.enabled (default false) */
  readOnly?: boolean;
  /** storage.cache.blobdescriptor: none (default: no cache section), inmemory (the stock config), or a redis at addr */
  cache?: 'inmemory' | { redis: string };
  /** log.level (default warn) */
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** ms to wait for GET /v2/ == 200 (default 15000) */
  timeoutMs?: number;
  /** auth.token: bearer tokens from this realm, signed by a key in rootcertbundle (see token-issuer.ts) */
  auth?: { realm: string; service: string; issuer: string; rootcertbundle: string };
  /** storage.redirect.disable false: blob GETs answer 307 to a presigned storage URL (default: no redirect) */
  redirect?: boolean;
}

export interface GcResult {
  exitCode: number;
  /** stdout + stderr */
  output: string;
  /** sorted, unique 'sha256:…' digests from "blob eligible for deletion: …" lines */
  eligibleBlobs: string[];
  /** sorted, unique 'sha256:…' digests from "manifest eligible for deletion: …" lines (only with deleteUntagged) */
  eligibleManifests: string[];
  /** sorted, unique digests from "<repo>: marking blob|manifest|configuration …" lines */
  marked: string[];
}

export interface RegistryServer {
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
  configPath: string;
  /** the registry's temp dir (config.yml, log, default filesystem storage) */
  dir: string;
  /** filesystem storage root (filesystem kind only) */
  storageRoot?: string;
  logFile: string;
  /** ms for the last start()/startRegistry() to become ready */
  startMs: number;
  readonly running: boolean;
  /** pid of the registry process while running */
  readonly pid: number | undefined;
  /** Start again (same port, same config) after stopServer(). */
  start(): Promise<void>;
  /** Stop only the registry process; the temp dir and config stay (for garbageCollect, start). */
  stopServer(): Promise<void>;
  /** Stop the process and remove the temp dir (not an external filesystem root). Idempotent. */
  stop(): Promise<void>;
  garbageCollect(opts?: { dryRun?: boolean; deleteUntagged?: boolean }): Promise<GcResult>;
  logTail(lines?: number): string;
  rssKiB(): number;
}

export function registryConfig(opts: StartRegistryOptions & { port: number; root?: string }): Record<string, unknown> {
  const st = opts.storage;
  const storage: Record<string, unknown> =
    st.kind === 'filesystem'
      ? { filesystem: { rootdirectory: opts.root ?? st.root } }
      : {
          s3: {
            accesskey: st.accessKeyId,
            secretkey: st.secretAccessKey,
            region: st.region,
            regionendpoint: st.endpoint,
            bucket: st.bucket,
            secure: st.endpoint.startsWith('https:'),
            v4auth: true,
            ...(st.rootdirectory ? { rootdirectory: st.rootdirectory } : {}),
          },
        };
  storage.delete = { enabled: opts.deleteEnabled ?? true };
  storage.redirect = { disable: !opts.redirect };
  storage.maintenance = {
    uploadpurging: { enabled: opts.uploadPurging ?? false },
    readonly: { enabled: opts.readOnly ?? false },
  };
  if (opts.cache) storage.cache = { blobdescriptor: opts.cache === 'inmemory' ? 'inmemory' : 'redis' };
  return {
    version: 0.1,
    log: { level: opts.logLevel ?? 'warn', accesslog: { disabled: true }, formatter: 'text' },
    storage,
    ...(opts.cache && opts.cache !== 'inmemory' ? { redis: { addr: opts.cache.redis, db: 0 } } : {}),
    http: { addr: `127.0.0.1:${opts.port}`, secret: 'regops-test-secret' },
    health: { storagedriver: { enabled: false } },
    ...(opts.auth ? { auth: { token: opts.auth } } : {}),
  };
}

const DIGEST_RE = /sha256:[0-9a-f]{64}/;

/** Parse `docker-registry garbage-collect` output (distribution 2.8.2). */
export function parseGcOutput(output: string): Pick<GcResult, 'eligibleBlobs' | 'eligibleManifests' | 'marked'> {
  const blobs = new Set<string>();
  const manifests = new Set<string>();
  const marked = new Set<string>();
  for (const line of output.split('\n')) {
    const d = DIGEST_RE.exec(line)?.[0];
    if (!d) continue;
    if (line.includes('blob eligible for deletion:')) blobs.add(d);
    else if (line.includes('manifest eligible for deletion:')) manifests.add(d);
    else if (/: marking (blob|manifest|configuration) /.test(line)) marked.add(d);
  }
  return { eligibleBlobs: [...blobs].sort(), eligibleManifests: [...manifests].sort(), marked: [...marked].sort() };
}

/** Start docker-registry; a start whose port was taken between freePort() and bind is retried on a new port. */
export async function startRegistry(opts: StartRegistryOptions): Promise<RegistryServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startRegistryOnce(opts);
    } catch (e) {
      if (attempt >= 3 || !/address already in use/i.test(e instanceof Error ? e.message : String(e))) throw e;
    }
  }
}

async function startRegistryOnce(opts: StartRegistryOptions): Promise<RegistryServer> {
  const dir = makeTempDir('registry');
  let server: RegistryServer | undefined;
  try {
    const port = await freePort();
    const storageRoot =
      opts.storage.kind === 'filesystem' ? (opts.storage.root ?? path.join(dir, 'storage')) : undefined;
    if (storageRoot) await mkdir(storageRoot, { recursive: true });
    const configPath = path.join(dir, 'config.yml');
    await writeFile(configPath, stringify(registryConfig({ ...opts, port, root: storageRoot })));
    const logFile = path.join(dir, 'registry.log');
    const url = `http://127.0.0.1:${port}`;
    const env = envWithoutAws();
    let daemon: Daemon | undefined;
    let removed = false;

    const srv: RegistryServer = {
      url,
      port,
      configPath,
      dir,
      storageRoot,
      logFile,
      startMs: 0,
      get running() {
        return !!daemon?.running;
      },
      get pid() {
        return daemon?.running ? daemon.pid : undefined;
      },
      async start() {
        if (removed) throw new Error('registry was stopped with stop(); start a new one');
        if (daemon?.running) return;
        const t0 = Date.now();
        const d = spawnDaemon('docker-registry', REGISTRY_BIN, ['serve', configPath], { logFile, env, cwd: dir });
        daemon = d;
        await waitFor(
          `docker-registry at ${url}`,
          async () =>
            (await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2000) })).status === (opts.auth ? 401 : 200),
          {
            timeoutMs: opts.timeoutMs ?? 15_000,
            intervalMs: 20,
            abortIf: () => (d.running ? undefined : `docker-registry exited:\n${d.logTail(20)}`),
          },
        );
        srv.startMs = Date.now() - t0;
      },
      async stopServer() {
        await daemon?.stop('SIGTERM', 2000);
      },
      async stop() {
        if (removed) return;
        removed = true;
        await daemon?.stop('SIGTERM', 2000);
        await removeTempDir(dir);
      },
      async garbageCollect(gc = {}) {
        const args = ['garbage-collect'];
        if (gc.dryRun) args.push('--dry-run');
        if (gc.deleteUntagged) args.push('--delete-untagged');
        args.push(configPath);
        const r = await runCommand(REGISTRY_BIN, args, { env, cwd: dir, timeoutMs: 120_000, check: false });
        const output = r.stdout + r.stderr;
        return { exitCode: r.exitCode, output, ...parseGcOutput(output) };
      },
      logTail(lines = 30) {
        return daemon?.logTail(lines) ?? '';
      },
      rssKiB() {
        return daemon?.running ? daemon.rssKiB() : 0;
      },
    };
    server = srv;
    await srv.start();
    return srv;
  } catch (e) {
    if (server) await server.stop();
    else await removeTempDir(dir);
    throw e;
  }
}

/** The regops region (a YAML flow mapping) for a bucket of an S3 endpoint, as the tests' configs write it. */
export function s3RegionYaml(s: {
  bucket: string;
  prefix?: string;
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}): string {
  return `{url: "s3://${s.bucket}/${s.prefix ?? 'docker/registry/v2'}", endpoint: "${s.endpoint}", accessKeyId: "${s.accessKeyId}", secretAccessKey: "${s.secretAccessKey}", checksums: when_required}`;
}

/**
 * A docker-registry on the filesystem (under `dir`) or on a new bucket of the run's shared radosgw, and
 * the regops region that points at the same storage. The caller stops the registry.
 */
export async function startRegistryWithRegion(
  kind: 'filesystem' | 's3',
  dir: string,
  label: string,
): Promise<{ registry: RegistryServer; region: string }> {
  if (kind === 'filesystem') {
    const root = path.join(dir, 'storage');
    const registry = await startRegistry({ storage: { kind: 'filesystem', root } });
    return { registry, region: `{url: "file://${path.join(root, 'docker', 'registry', 'v2')}"}` };
  }
  const { sharedRadosgw } = await import('./radosgw.js');
  const rgw = await sharedRadosgw();
  const bucket = await rgw.newBucket(label);
  const { endpoint, accessKeyId, secretAccessKey } = rgw;
  const registry = await startRegistry({
    storage: { kind: 's3', endpoint, bucket, accessKeyId, secretAccessKey, region: rgw.region },
  });
  return { registry, region: s3RegionYaml({ bucket, endpoint, accessKeyId, secretAccessKey }) };
}
