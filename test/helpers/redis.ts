// A throwaway redis-server (Debian's package) on a free 127.0.0.1 port: no persistence, its own temp
// dir, stopped with the test process. Used as the registry's blob-descriptor cache.
import path from 'node:path';
import { freePort } from './ports.js';
import { makeTempDir, removeTempDir, runCommand, spawnDaemon, waitFor } from './tmp.js';

export const REDIS_BIN = process.env.REGOPS_TEST_REDIS_BIN ?? '/usr/bin/redis-server';

export interface RedisServer {
  /** host:port, as distribution's `redis.addr` wants it */
  addr: string;
  /** redis://127.0.0.1:PORT */
  url: string;
  port: number;
  /** redis-cli against this server; returns stdout trimmed */
  cli(args: string[]): Promise<string>;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<RedisServer> {
  const dir = makeTempDir('redis');
  const port = await freePort();
  const daemon = spawnDaemon(
    'redis-server',
    REDIS_BIN,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { logFile: path.join(dir, 'redis.log'), cwd: dir },
  );
  const cli = async (args: string[]) =>
    (
      await runCommand('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeoutMs: 10_000 })
    ).stdout.trim();
  try {
    await waitFor(`redis-server on ${port}`, async () => (await cli(['PING'])) === 'PONG', {
      timeoutMs: 10_000,
      intervalMs: 20,
      abortIf: () => (daemon.running ? undefined : `redis-server exited:\n${daemon.logTail(20)}`),
    });
  } catch (e) {
    await daemon.stop('SIGKILL', 100);
    await removeTempDir(dir);
    throw e;
  }
  return {
    addr: `127.0.0.1:${port}`,
    url: `redis://127.0.0.1:${port}`,
    port,
    cli,
    async stop() {
      await daemon.stop('SIGTERM', 2000);
      await removeTempDir(dir);
    },
  };
}
