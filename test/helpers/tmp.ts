// Temp dirs and child processes for test helpers.
//
// Every temp dir made here lives under os.tmpdir()/regops-test-XXXX and every
// process spawned here is tracked: a process 'exit' handler SIGKILLs all live
// children and removes all temp dirs, and SIGINT/SIGTERM/SIGHUP do the same
// before re-raising the signal. Daemons are additionally started through
// `setpriv --pdeathsig KILL` when available, so that they die even if the test
// runner itself is SIGKILLed.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, rmSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let handlersInstalled = false;

function killAllSync(): void {
  for (const c of liveChildren) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  liveChildren.clear();
  for (const d of liveDirs) {
    if (keepTmp) continue;
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
  liveDirs.clear();
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', killAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllSync();
      process.removeListener(sig, onSignal);
      // Re-raise with the default disposition unless someone else handles it.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/** Create os.tmpdir()/regops-test-XXXX (removed on process exit unless removed earlier). */
export function makeTempDir(label = ''): string {
  installHandlers();
  const prefix = path.join(os.tmpdir(), `regops-test-${label ? label.replace(/[^a-zA-Z0-9_-]/g, '') + '-' : ''}`);
  const dir = mkdtempSync(prefix);
  liveDirs.add(dir);
  return dir;
}

/** Set REGOPS_TEST_KEEP_TMP=1 to keep temp dirs (logs) for debugging. */
const keepTmp = !!process.env.REGOPS_TEST_KEEP_TMP;

export async function removeTempDir(dir: string): Promise<void> {
  liveDirs.delete(dir);
  if (keepTmp) {
    process.stderr.write(`[regops-test] keeping ${dir}\n`);
    return;
  }
  await rm(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
}

/** Environment without any AWS_* variables (docker-registry panics on AWS_CA_BUNDLE). */
export function envWithoutAws(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('AWS_')) env[k] = v;
  }
  return { ...env, ...extra };
}

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

export interface Daemon {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** true until the process has exited */
  readonly running: boolean;
  /** resolves with the exit code (or signal name) when the process exits */
  readonly exited: Promise<number | string>;
  /** Send `signal` (default SIGTERM); SIGKILL after graceMs (default 3000). Resolves when exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
  /** SIGSTOP / SIGCONT */
  pause(): void;
  resume(): void;
  /** last `lines` lines of the log file */
  logTail(lines?: number): string;
  /** resident memory in KiB (from /proc), 0 if gone */
  rssKiB(): number;
}

/** Start a long-running process; stdout+stderr go to logFile. */
export function spawnDaemon(
  name: string,
  cmd: string,
  args: string[],
  opts: { logFile: string; env?: NodeJS.ProcessEnv; cwd?: string; unref?: boolean },
): Daemon {
  installHandlers();
  const fd = openSync(opts.logFile, 'a');
  const [file, argv] = SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', '--', cmd, ...args]] : [cmd, args];
  let child: ChildProcess;
  try {
    child = spawn(file, argv, { stdio: ['ignore', fd, fd], env: opts.env ?? process.env, cwd: opts.cwd });
  } finally {
    closeSync(fd);
  }
  if (child.pid === undefined) throw new Error(`failed to spawn ${cmd}`);
  // An unref'd daemon does not keep the test process alive; the exit handler still kills it.
  if (opts.unref) child.unref();
  liveChildren.add(child);
  let running = true;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, sig) => {
      running = false;
      liveChildren.delete(child);
      resolve(code ?? sig ?? 'unknown');
    });
    child.once('error', () => {
      running = false;
      liveChildren.delete(child);
      resolve('spawn-error');
    });
  });
  const pid = child.pid;
  const d: Daemon = {
    name,
    pid,
    logFile: opts.logFile,
    get running() {
      return running;
    },
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000) {
      if (!running) return;
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        /* ignore */
      }
      child.kill(signal);
      if (signal !== 'SIGKILL') {
        const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(t);
      } else {
        await exited;
      }
    },
    pause() {
      if (running) process.kill(pid, 'SIGSTOP');
    },
    resume() {
      if (running) process.kill(pid, 'SIGCONT');
    },
    logTail(lines = 30) {
      try {
        return readFileSync(opts.logFile, 'utf8').split('\n').slice(-lines).join('\n');
      } catch {
        return '';
      }
    },
    rssKiB() {
      try {
        const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        return m ? Number(m[1]) : 0;
      } catch {
        return 0;
      }
    },
  };
  return d;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Run a command to completion (killed after timeoutMs). Throws on non-zero exit when check is true. */
export function runCommand(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; check?: boolean; input?: string } = {},
): Promise<RunResult> {
  installHandlers();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    liveChildren.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    const timeoutMs = opts.timeoutMs ?? 60_000;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      reject(e);
    });
    child.once('close', (code, sig) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      const r: RunResult = {
        exitCode: code ?? 128,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
      if (timedOut) {
        reject(new Error(`${cmd} ${args.join(' ')} timed out after ${timeoutMs} ms\n${r.stdout}\n${r.stderr}`));
      } else if (opts.check !== false && code !== 0) {
        reject(new Error(`${cmd} ${args.join(' ')} failed (${code ?? sig}):\n${r.stdout}\n${r.stderr}`));
      } else {
        resolve(r);
      }
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a truthy value or timeoutMs passes. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  opts: { timeoutMs?: number; intervalMs?: number; abortIf?: () => string | undefined } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let lastErr: unknown;
  for (;;) {
    const reason = opts.abortIf?.();
    if (reason) throw new Error(`waiting for ${what}: ${reason}`);
    try {
      const v = await fn();
      if (v) return v as T;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    }
    await sleep(opts.intervalMs ?? 50);
  }
}
