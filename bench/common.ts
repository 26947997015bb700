import {spawn} from 'node:child_process'
import {existsSync} from 'node:fs'

export interface Measured {
  seconds: number
  /** peak resident set size of the process, MiB */
  peakMiB: number
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Runs a command under GNU time for wall time and peak RSS (`apt-get install time` if it is missing).
 * The environment is passed as given: docker-registry panics if AWS_* variables are present.
 */
export function measure(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Measured> {
  if (!existsSync('/usr/bin/time')) throw new Error('benchmarks need GNU time: apt-get install -y time')
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', '__TIME__ %e %M', cmd, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => {
      const match = /__TIME__ ([\d.]+) (\d+)/.exec(stderr)
      if (!match) return reject(new Error(`no timing from ${cmd}: ${stderr.slice(-500)}`))
      resolve({
        seconds: Number(match[1]),
        peakMiB: Math.round(Number(match[2]) / 1024),
        code,
        stdout,
        stderr: stderr.replace(/__TIME__.*\n?/, ''),
      })
    })
  })
}

/** The environment without AWS_* (docker-registry's s3 driver panics on AWS_CA_BUNDLE). */
export function envWithoutAws(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AWS_')))
}

export function table(head: string[], rows: Array<Array<string | number>>): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)))
  const line = (cells: Array<string | number>) => cells.map((c, i) => String(c).padStart(widths[i])).join('  ')
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')
}
