// Pull-path load test bench (not part of npm test): against one docker-registry endpoint on filesystem
// storage, the highest manifest-GET rate regops sustains on one core (taskset) vs autocannon and wrk with
// 16 connections, as ratios; then the peak memory of a 60 s regops run at that rate, sampled every second.
//
//   npm run build && node --import tsx bench/loadtest.ts [--seconds 5] [--long 60]
import {spawn} from 'node:child_process'
import {readFileSync} from 'node:fs'
import autocannon from 'autocannon'
import {startRegistry} from '../test/helpers/registry.js'
import {pushImage, MANIFEST_ACCEPT} from '../test/helpers/images.js'
import {runCommand} from '../test/helpers/tmp.js'
import {table} from './common.js'

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name)
  return i > 0 ? Number(process.argv[i + 1]) : fallback
}
const seconds = arg('--seconds', 5)
const longSeconds = arg('--long', 60)
const BIN = new URL('../bin/run.js', import.meta.url).pathname

const registry = await startRegistry({storage: {kind: 'filesystem'}})
try {
  await pushImage(registry.url, 'bench/app', 'v1', {layers: 3, seed: 'bench'})
  const manifestUrl = `${registry.url}/v2/bench/app/manifests/v1`

  const wrk = await runCommand('wrk', ['-t2', '-c16', `-d${seconds}s`, '-H', `Accept: ${MANIFEST_ACCEPT}`, manifestUrl])
  const wrkRate = Number(/Requests\/sec:\s+([\d.]+)/.exec(wrk.stdout)?.[1])
  const ac = await autocannon({
    url: manifestUrl,
    connections: 16,
    duration: seconds,
    headers: {accept: MANIFEST_ACCEPT},
  })
  const acRate = ac.requests.average

  // regops at rising rates on one core; "sustained" = 98% of the starts on time, nothing dropped, no error
  const regops = (rate: number, duration: number, onPid?: (pid: number) => void) =>
    new Promise<{report: any; samples: number[]}>((resolve, reject) => {
      const child = spawn(
        'taskset',
        [
          '-c',
          '0',
          process.execPath,
          BIN,
          'loadtest',
          'pull',
          '--registry',
          registry.url,
          '--image',
          'bench/app:v1',
          '--manifests-only',
          '--ping',
          'once',
          '--rate',
          String(rate),
          '--duration',
          `${duration}s`,
          '--max-in-flight',
          '16',
          '--json',
        ],
        {stdio: ['ignore', 'pipe', 'pipe']},
      )
      let out = ''
      child.stdout.on('data', (d) => (out += d))
      const samples: number[] = []
      const timer = setInterval(() => {
        try {
          const status = readFileSync(`/proc/${child.pid}/status`, 'utf8')
          samples.push(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024)
        } catch {
          /* exited */
        }
      }, 1000)
      if (child.pid) onPid?.(child.pid)
      child.on('error', reject)
      child.on('close', () => {
        clearInterval(timer)
        try {
          resolve({report: JSON.parse(out), samples})
        } catch (e) {
          reject(e)
        }
      })
    })
  let best = 0
  let bestReport: any
  for (const rate of [50, 100, 250, 500, 1000, 1500, 2000, 2500, 3000, 4000]) {
    const {report} = await regops(rate, seconds)
    const ok = report.startedInSpan >= 0.98 * rate * seconds && report.pulls.dropped === 0 && report.pulls.failed === 0
    process.stderr.write(
      `regops --rate ${rate}: ${report.startedInSpan} on time, ${report.pulls.dropped} dropped, ${report.pulls.failed} failed, manifest p99 ${report.stages.manifest.p99Ms} ms ${ok ? 'sustained' : 'NOT sustained'}\n`,
    )
    if (!ok) break
    best = rate
    bestReport = report
  }
  const long = await regops(Math.max(best, 250), longSeconds)
  const s = long.samples
  const firstTen = Math.max(...s.slice(0, 10))
  const peak = Math.max(...s)
  console.log(
    table(
      ['tool', 'manifest GETs/s', 'vs autocannon', 'vs wrk'],
      [
        ['wrk -c16 (2 threads)', Math.round(wrkRate), (wrkRate / acRate).toFixed(2), '1.00'],
        ['autocannon -c16', Math.round(acRate), '1.00', (acRate / wrkRate).toFixed(2)],
        ['regops (1 core, open model)', best, (best / acRate).toFixed(2), (best / wrkRate).toFixed(2)],
      ],
    ),
  )
  console.log(
    `regops at ${best}/s: manifest p50 ${bestReport?.stages.manifest.p50Ms} ms, p99 ${bestReport?.stages.manifest.p99Ms} ms`,
  )
  console.log(
    `regops ${longSeconds} s at ${Math.max(best, 250)}/s: ${long.report.pulls.started} pulls, RSS peak ${peak.toFixed(0)} MiB, peak in the first 10 s ${firstTen.toFixed(0)} MiB, at the end ${s[s.length - 1]?.toFixed(0)} MiB`,
  )
  console.log(`load average during the run: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`)
} finally {
  await registry.stop()
}
