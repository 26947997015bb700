import {spawn, type ChildProcess} from 'node:child_process'
import {fileURLToPath} from 'node:url'

export const BIN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))

export interface CliRun {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** stdout parsed as JSON when it is JSON */
  json?: any
}

/** The environment a test CLI run gets: this process's, minus anything that would point it elsewhere. */
function cleanEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {...process.env}
  for (const name of ['REGOPS_CONFIG', 'REGOPS_DATABASE_URL', 'DATABASE_URL', 'REGOPS_PRIMARY', 'REGOPS_REGISTRY_URL', 'REGOPS_LOG_FORMAT', 'REGOPS_LOG_LEVEL']) delete env[name]
  return {...env, ...extra}
}

/** Runs the built CLI (bin/run.js → dist/) as a child process, as an operator would. */
export function startCli(args: string[], opts: {env?: Record<string, string | undefined>; cwd?: string} = {}): {child: ChildProcess; done: Promise<CliRun>} {
  const child = spawn(process.execPath, [BIN, ...args], {env: cleanEnv(opts.env ?? {}), cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (d) => (stdout += d))
  child.stderr!.on('data', (d) => (stderr += d))
  const done = new Promise<CliRun>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => {
      let json: unknown
      try {
        json = JSON.parse(stdout)
      } catch {
        json = undefined
      }
      resolve({code, signal, stdout, stderr, json})
    })
  })
  return {child, done}
}

export function runCli(args: string[], opts: {env?: Record<string, string | undefined>; cwd?: string} = {}): Promise<CliRun> {
  return startCli(args, opts).done
}
