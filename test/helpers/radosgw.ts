// A real S3 server for tests: a one-node Ceph cluster (ceph-mon + ceph-osd on
// memstore) with radosgw (beast) on 127.0.0.1. No ceph-mgr. Everything lives
// under one temp dir, removed by stop().
//
// Several clusters may run side by side (distinct ports, fsids, dirs).
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CreateBucketCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { S3RegionConfig } from '../../src/lib/config/config.js';
import { freePort } from './ports.js';
import { makeTempDir, removeTempDir, runCommand, spawnDaemon, waitFor, type Daemon } from './tmp.js';

export interface RadosgwServer {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  port: number;
  region: 'us-east-1';
  accessKeyId: string;
  secretAccessKey: string;
  /** the cluster's temp dir (ceph.conf, logs, mon/osd data) */
  dir: string;
  confPath: string;
  fsid: string;
  /** ms from startRadosgw() call to ready */
  startMs: number;
  createBucket(name: string): Promise<void>;
  /** S3Client configured for this server (path style, checksums only when required). */
  s3Client(overrides?: Partial<S3ClientConfig>): S3Client;
  /** Kill only the radosgw process (mon/osd keep running); S3 requests then fail with ECONNREFUSED. */
  killGateway(): Promise<void>;
  /** Start radosgw again on the same port after killGateway(). */
  startGateway(): Promise<void>;
  /** SIGSTOP / SIGCONT radosgw: requests hang (connection accepted by the kernel, never answered). */
  pauseGateway(): void;
  resumeGateway(): void;
  readonly gatewayRunning: boolean;
  /** Sum of VmRSS (KiB) of mon, osd and radosgw. */
  rssKiB(): number;
  /** Run radosgw-admin against this cluster; returns stdout. */
  radosgwAdmin(args: string[]): Promise<string>;
  /** Stop every process and remove the temp dir. Idempotent. */
  stop(): Promise<void>;
}

export interface StartRadosgwOptions {
  /** buckets to create once the gateway is up */
  buckets?: string[];
  /** default: random */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** memstore capacity in bytes (default 1 GiB; memory is only used for data stored) */
  memstoreBytes?: number;
  /** ms to wait for readiness (default 30000) */
  timeoutMs?: number;
  /** the daemons do not keep this process alive (killed when it exits): for a cluster nobody stops */
  unref?: boolean;
}

/**
 * Client settings radosgw 16 needs: with the SDK's default checksum mode
 * (WHEN_SUPPORTED) streamed uploads get `411 MissingContentLength`.
 * Note: these machines set AWS_CA_BUNDLE (and other CA env vars); irrelevant
 * for plain http endpoints, but the Go-based docker-registry panics on it.
 */
export function radosgwClientConfig(s: {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region?: string;
}): S3ClientConfig {
  return {
    endpoint: s.endpoint,
    region: s.region ?? 'us-east-1',
    credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}

function cephConf(o: { dir: string; fsid: string; monPort: number; rgwPort: number; memstoreBytes: number }): string {
  const d = o.dir;
  return `[global]
fsid = ${o.fsid}
mon_host = v2:127.0.0.1:${o.monPort}
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr1 = false
ms_bind_msgr2 = true
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
run_dir = ${d}/run
crash_dir = ${d}/crash
exporter_sock_dir = ${d}/run
admin_socket = ${d}/run/$name.$pid.asok
pid_file = ${d}/run/$name.pid
log_file = ${d}/log/$name.log
mon_cluster_log_file = ${d}/log/cluster.log
log_to_stderr = false
err_to_stderr = true
keyring = ${d}/keyring
mon_data = ${d}/mon/$cluster-$id
osd_data = ${d}/osd/$cluster-$id
osd_objectstore = memstore
memstore_device_bytes = ${o.memstoreBytes}
paxos_propose_interval = 0.01
paxos_min_wait = 0.001
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_autoscale_mode = off
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
osd_crush_update_on_start = true

[client.rgw]
rgw_frontends = beast endpoint=127.0.0.1:${o.rgwPort} tcp_nodelay=1
rgw_data = ${d}/rgw
rgw_thread_pool_size = 32
`;
}

/** A start failed because another process took one of its ports between freePort() and bind. */
export function isPortTaken(e: unknown): boolean {
  return /address already in use|EADDRINUSE|unable to bind|failed to bind/i.test(
    e instanceof Error ? e.message : String(e),
  );
}

/** Start a one-node Ceph cluster with radosgw; a start whose port was taken meanwhile is retried on new ports. */
export async function startRadosgw(opts: StartRadosgwOptions = {}): Promise<RadosgwServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startRadosgwOnce(opts);
    } catch (e) {
      if (attempt >= 3 || !isPortTaken(e)) throw e;
    }
  }
}

/** What a test needs of an S3 server it shares with others: endpoint, keys, its own buckets. */
export interface SharedRadosgw {
  endpoint: string;
  region: 'us-east-1';
  accessKeyId: string;
  secretAccessKey: string;
  createBucket(name: string): Promise<void>;
  /** a new bucket with a name unique in this run */
  newBucket(label: string): Promise<string>;
  s3Client(overrides?: Partial<S3ClientConfig>): S3Client;
}

/**
 * A region on a bucket of this radosgw as regops configures it: path-style, checksums only when required
 * (radosgw refuses the SDK's default), the registry layout under `prefix`. `endpoint` may be a proxy's.
 */
export function radosgwRegion(
  server: { endpoint: string; accessKeyId: string; secretAccessKey: string },
  bucket: string,
  overrides: Partial<S3RegionConfig> = {},
): S3RegionConfig {
  const prefix = overrides.prefix ?? 'docker/registry/v2';
  return {
    kind: 's3',
    name: bucket,
    url: `s3://${bucket}/${prefix}`,
    bucket,
    prefix,
    region: 'us-east-1',
    endpoint: server.endpoint,
    forcePathStyle: true,
    checksums: 'when_required',
    concurrency: 16,
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    ...overrides,
  };
}

/** Set by scripts/test.sh: the one cluster of the run, as JSON {endpoint, accessKeyId, secretAccessKey}. */
export const SHARED_RGW_ENV = 'REGOPS_TEST_RGW';

let shared: Promise<SharedRadosgw> | undefined;

/**
 * The run's radosgw (booting a Ceph cluster costs seconds of both cores): the one scripts/test.sh started,
 * or, for a test file run alone, one started by this process (stopped when it exits). Each test makes its
 * own bucket. Tests that kill or pause the gateway start their own with startRadosgw().
 */
export function sharedRadosgw(): Promise<SharedRadosgw> {
  shared ??= (async () => {
    const fromEnv = process.env[SHARED_RGW_ENV];
    const server = fromEnv
      ? (JSON.parse(fromEnv) as { endpoint: string; accessKeyId: string; secretAccessKey: string })
      : await startRadosgw({ unref: true });
    const s3Client = (overrides: Partial<S3ClientConfig> = {}): S3Client =>
      new S3Client({ ...radosgwClientConfig(server), ...overrides });
    const createBucket = async (name: string): Promise<void> => {
      const client = s3Client();
      try {
        await client.send(new CreateBucketCommand({ Bucket: name }));
      } finally {
        client.destroy();
      }
    };
    return {
      endpoint: server.endpoint,
      region: 'us-east-1' as const,
      accessKeyId: server.accessKeyId,
      secretAccessKey: server.secretAccessKey,
      createBucket,
      async newBucket(label: string) {
        const name = `${label
          .toLowerCase()
          .replace(/[^a-z0-9-]/g, '-')
          .slice(0, 30)}-${process.pid}-${randomBytes(4).toString('hex')}`;
        await createBucket(name);
        return name;
      },
      s3Client,
    };
  })();
  return shared;
}

async function startRadosgwOnce(opts: StartRadosgwOptions): Promise<RadosgwServer> {
  const t0 = Date.now();
  const phase = (what: string): void => {
    if (process.env.REGOPS_TEST_DEBUG) process.stderr.write(`[radosgw +${Date.now() - t0}ms] ${what}\n`);
  };
  const dir = makeTempDir('rgw');
  const daemons: { mon?: Daemon; osd?: Daemon; rgw?: Daemon } = {};
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // memstore: nothing to flush; SIGKILL is instant and safe.
    await Promise.all([daemons.rgw, daemons.osd, daemons.mon].map((d) => d?.stop('SIGKILL')));
    await removeTempDir(dir);
  };
  try {
    const [monPort, rgwPort] = [await freePort(), await freePort()];
    const fsid = randomUUID();
    const confPath = path.join(dir, 'ceph.conf');
    await Promise.all(
      ['run', 'log', 'mon', 'osd/ceph-0', 'rgw', 'crash'].map((s) => mkdir(path.join(dir, s), { recursive: true })),
    );
    await writeFile(confPath, cephConf({ dir, fsid, monPort, rgwPort, memstoreBytes: opts.memstoreBytes ?? 1 << 30 }));
    const c = ['-c', confPath];
    const env = { ...process.env, CEPH_CONF: confPath };
    const run = (cmd: string, args: string[], timeoutMs = 20_000) =>
      runCommand(cmd, args, { env, cwd: dir, timeoutMs });
    const failed = (): string | undefined => {
      for (const d of [daemons.mon, daemons.osd, daemons.rgw]) {
        if (d && !d.running) return `${d.name} exited:\n${d.logTail(20)}`;
      }
      return undefined;
    };

    const monmap = path.join(dir, 'monmap');
    await run('monmaptool', ['--create', '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, '--fsid', fsid, monmap]);
    // OSD mkfs (memstore) does not need the monitor: run it alongside.
    phase('monmap');
    const osdUuid = randomUUID();
    const osdMkfs = run('ceph-osd', [...c, '-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    await run('ceph-mon', [...c, '--mkfs', '-i', 'a', '--monmap', monmap]);
    phase('mon mkfs');
    daemons.mon = spawnDaemon('ceph-mon', 'ceph-mon', [...c, '-i', 'a', '-f'], {
      logFile: path.join(dir, 'log', 'mon.stderr'),
      env,
      unref: opts.unref,
    });
    const created = await run('ceph', [...c, '--connect-timeout', '15', 'osd', 'new', osdUuid, '0']);
    if (created.stdout.trim() !== '0') throw new Error(`ceph osd new returned ${JSON.stringify(created.stdout)}`);
    phase('osd new');
    await osdMkfs;
    daemons.osd = spawnDaemon('ceph-osd', 'ceph-osd', [...c, '-i', '0', '-f'], {
      logFile: path.join(dir, 'log', 'osd.stderr'),
      env,
      unref: opts.unref,
    });

    phase('osd spawned');
    // Wait until the OSD is up before anything creates pools: PGs of a pool created
    // while the OSD is still booting are only created on the next mon tick (~5 s).
    const osdLog = path.join(dir, 'log', 'osd.0.log');
    await waitFor(
      'ceph-osd to boot',
      async () => (await readFile(osdLog, 'utf8').catch(() => '')).includes('state: booting -> active'),
      { timeoutMs: 20_000, intervalMs: 20, abortIf: failed },
    );
    phase('osd up');
    const accessKeyId = opts.accessKeyId ?? 'AK' + randomBytes(9).toString('hex').toUpperCase();
    const secretAccessKey = opts.secretAccessKey ?? randomBytes(20).toString('hex');
    const radosgwAdmin = async (args: string[]): Promise<string> =>
      (await run('radosgw-admin', [...c, ...args], 30_000)).stdout;
    // Creating the user first also creates the default realm/zone and the .rgw.root
    // pool, so radosgw does not race radosgw-admin for them.
    await radosgwAdmin([
      'user',
      'create',
      '--uid',
      'regops-test',
      '--display-name',
      'regops test',
      '--access-key',
      accessKeyId,
      '--secret-key',
      secretAccessKey,
    ]);

    phase('user created');
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const startGateway = async (): Promise<void> => {
      if (daemons.rgw?.running) return;
      daemons.rgw = spawnDaemon('radosgw', 'radosgw', [...c, '-n', 'client.rgw', '-f'], {
        logFile: path.join(dir, 'log', 'rgw.stderr'),
        env,
        unref: opts.unref,
      });
      await waitFor(
        `radosgw at ${endpoint}`,
        async () => {
          const r = await fetch(endpoint + '/', { signal: AbortSignal.timeout(2000) });
          const body = await r.text();
          return r.status === 200 && body.includes('ListAllMyBucketsResult');
        },
        { timeoutMs, intervalMs: 25, abortIf: failed },
      );
    };
    await startGateway();

    phase('gateway up');
    const s3Client = (overrides: Partial<S3ClientConfig> = {}): S3Client =>
      new S3Client({ ...radosgwClientConfig({ endpoint, accessKeyId, secretAccessKey }), ...overrides });
    const admin = s3Client();
    const server: RadosgwServer = {
      endpoint,
      port: rgwPort,
      region: 'us-east-1',
      accessKeyId,
      secretAccessKey,
      dir,
      confPath,
      fsid,
      startMs: 0,
      async createBucket(name: string) {
        await admin.send(new CreateBucketCommand({ Bucket: name }));
      },
      s3Client,
      async killGateway() {
        await daemons.rgw?.stop('SIGKILL');
      },
      startGateway,
      pauseGateway() {
        daemons.rgw?.pause();
      },
      resumeGateway() {
        daemons.rgw?.resume();
      },
      get gatewayRunning() {
        return !!daemons.rgw?.running;
      },
      rssKiB() {
        return [daemons.mon, daemons.osd, daemons.rgw].reduce((a, d) => a + (d?.running ? d.rssKiB() : 0), 0);
      },
      radosgwAdmin,
      async stop() {
        admin.destroy();
        await stop();
      },
    };
    for (const b of opts.buckets ?? []) await server.createBucket(b);
    server.startMs = Date.now() - t0;
    return server;
  } catch (e) {
    const tail = async (f: string): Promise<string> =>
      (await readFile(path.join(dir, 'log', f), 'utf8').catch(() => '')).split('\n').slice(-12).join('\n');
    const logs = (
      await Promise.all(
        [
          ['ceph-mon', daemons.mon, 'mon.a.log'],
          ['ceph-osd', daemons.osd, 'osd.0.log'],
          ['radosgw', daemons.rgw, 'client.rgw.log'],
        ].map(async ([name, d, f]) => {
          const dm = d as Daemon | undefined;
          if (!dm) return '';
          return `--- ${name} (${dm.running ? 'running' : 'exited'}):\n${dm.logTail(8)}\n${await tail(f as string)}`;
        }),
      )
    ).join('\n');
    await stop();
    throw new Error(`startRadosgw failed: ${e instanceof Error ? e.message : String(e)}\n${logs}`);
  }
}
