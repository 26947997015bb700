import { readFile } from 'node:fs/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/run.js', import.meta.url));

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON when it is JSON */
  json?: any;
}

/** The environment a test CLI run gets: this process's, minus anything that would point it elsewhere. */
function cleanEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of [
    'REGOPS_CONFIG',
    'REGOPS_DATABASE_URL',
    'DATABASE_URL',
    'REGOPS_PRIMARY',
    'REGOPS_REGISTRY_URL',
    'REGOPS_LOG_FORMAT',
    'REGOPS_LOG_LEVEL',
  ])
    delete env[name];
  return { ...env, ...extra };
}

/** A CLI run that takes longer than this is hung: killed, and the test fails with what it printed. */
export const CLI_TIMEOUT_MS = Number(process.env.REGOPS_TEST_CLI_TIMEOUT_MS ?? 120_000);

export interface CliOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** default CLI_TIMEOUT_MS */
  timeoutMs?: number;
  /** flags for node itself, before the script (e.g. --max-old-space-size=4096) */
  nodeArgs?: string[];
}

/** Runs the built CLI (bin/run.js → dist/) as a child process, as an operator would. */
export function startCli(args: string[], opts: CliOptions = {}): { child: ChildProcess; done: Promise<CliRun> } {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), BIN, ...args], {
    env: cleanEnv(opts.env ?? {}),
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const timeoutMs = opts.timeoutMs ?? CLI_TIMEOUT_MS;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const done = new Promise<CliRun>((resolve, reject) => {
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(
          new Error(
            `regops ${args.join(' ')} did not finish in ${timeoutMs} ms (killed)\n--- stdout:\n${stdout.slice(-4000)}\n--- stderr:\n${stderr.slice(-4000)}`,
          ),
        );
        return;
      }
      let json: unknown;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ code, signal, stdout, stderr, json });
    });
  });
  return { child, done };
}

export function runCli(args: string[], opts: CliOptions = {}): Promise<CliRun> {
  return startCli(args, opts).done;
}

/** The blob digests of a sweep's candidate report (JSON Lines), sorted: what the tests compare with GC's list. */
export async function reportDigests(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line))
    .filter((c) => c.kind === 'blob')
    .map((c) => c.digest as string)
    .sort();
}
