// Pull-path load test bench (not part of npm test). One docker-registry on filesystem storage; every load
// generator on the same single core (taskset -c 0, the registry kept on the other), the same manifest URL,
// the same Accept list, 16 connections:
//   - wrk (1 thread) and autocannon: the highest rate they reach (closed loop, 16 requests always in flight);
//   - regops loadtest pull --manifests-only --ping once --connections 16: the highest open-model arrival
//     rate it sustains, found by doubling then bisecting, each probe right after an autocannon run (the
//     goal compares the best probe with the autocannon runs on either side of it);
//   - regops --vus 16, the closed model the peers run, for the client's own throughput and CPU per request;
//   - peers again after the search (the machine is shared: both figures are shown, ratios use their mean);
//   - a --long run of regops at two thirds of that rate: RSS sampled every second, the registry's CPU, regops' start lag.
// "Sustained" for regops: at least 98% of the scheduled pulls started on time, none dropped, failed or cut
// off, and the pull p99 (from each pull's intended start, queueing for a connection included) within twice
// the worse p99 the peers saw at their own top rate (at least 25 ms): a backlog that grows breaks it.
// An open model cannot sustain the server's saturation rate (the closed peers' figure): at 100% utilisation
// its queue grows without bound. The closed row compares the clients; the open row shows the usable rate.
// Memory is judged after a warm-up of 20 s (a third of a shorter run): in its first 10-20 s at hundreds of pulls/s
// V8 grows the young generation from 16 to its 32 MiB maximum (heapTotal 33 -> 50 MiB, RSS ~100 -> ~117 MiB),
// once, while the live heap after a full GC stays at ~15 MiB for 180 s. That is sizing, not growth; a leak is
// growth that continues, so "flat" is the end within 10% of the RSS at the end of the warm-up and the
// least-squares slope after it under 5% of that RSS per minute. The peak is the kernel's high-water mark (GNU
// time's %M), warm-up included: it holds a ~30 MiB transient in the first second, when V8 recompiles undici's
// WebAssembly HTTP parser with its optimising tier (gone with --liftoff-only), which the 1 s samples mostly miss.
//
//   npm run build && node --import tsx bench/loadtest.ts [--seconds 5] [--long 60] [--memory-only RATE]
// --memory-only skips the peers and the rate search: the long run alone, at RATE, and its memory verdict.
import {spawn} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import {startRegistry} from '../test/helpers/registry.js'
import {pushImage} from '../test/helpers/images.js'
import {runCommand} from '../test/helpers/tmp.js'
import {table} from './common.js'

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name)
  return i > 0 ? Number(process.argv[i + 1]) : fallback
}
const seconds = arg('--seconds', 5)
const longSeconds = arg('--long', 60)
const memoryOnlyRate = arg('--memory-only', 0)
const CONNECTIONS = 16
const BIN = new URL('../bin/run.js', import.meta.url).pathname
const AUTOCANNON = createRequire(import.meta.url).resolve('autocannon/autocannon.js')
// regops' own Accept list, for the peers too; loaded after the push (loading undici replaces global fetch's
// dispatcher, which refuses the image helpers' explicit Content-Length).
let MANIFEST_ACCEPT = ''

interface Run {
  stdout: string
  wallS: number
  /** user + system CPU seconds of the tool (GNU time) */
  cpuS: number
  /** RSS once every second, MiB */
  rssMiB: number[]
  /** the kernel's high-water mark of its RSS (GNU time's %M), MiB: catches what the 1 s samples miss */
  peakRssMiB: number
}

/** Runs a load generator on core 0 under GNU time (its CPU), sampling its RSS every second. */
function onCoreZero(cmd: string, args: string[]): Promise<Run> {
  if (!existsSync('/usr/bin/time')) throw new Error('this bench needs GNU time: apt-get install -y time')
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const time = spawn('/usr/bin/time', ['-f', '__TIME__ %U %S %M', 'taskset', '-c', '0', cmd, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    time.stdout.on('data', (d) => (stdout += d))
    time.stderr.on('data', (d) => (stderr += d))
    const rssMiB: number[] = []
    const timer = setInterval(() => {
      try {
        // taskset execs the tool: it is GNU time's only child
        const tool = readFileSync(`/proc/${time.pid}/task/${time.pid}/children`, 'utf8').trim()
        const status = readFileSync(`/proc/${tool}/status`, 'utf8')
        rssMiB.push(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024)
      } catch {
        /* not started yet, or exited */
      }
    }, 1000)
    time.on('error', reject)
    time.on('close', () => {
      clearInterval(timer)
      const match = /__TIME__ ([\d.]+) ([\d.]+) (\d+)/.exec(stderr)
      if (!match) return reject(new Error(`${cmd}: ${stderr.slice(-1000)}`))
      const cpuS = Number(match[1]) + Number(match[2])
      resolve({stdout, wallS: (performance.now() - started) / 1000, cpuS, rssMiB, peakRssMiB: Number(match[3]) / 1024})
    })
  })
}

interface Peer {
  rate: number
  p99Ms: number
  cpuUsPerRequest: number
}

async function wrk(url: string): Promise<Peer> {
  const run = await onCoreZero('wrk', [
    '-t1',
    `-c${CONNECTIONS}`,
    `-d${seconds}s`,
    '--latency',
    '-H',
    `Accept: ${MANIFEST_ACCEPT}`,
    url,
  ])
  const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(run.stdout)?.[1])
  const requests = Number(/(\d+) requests in/.exec(run.stdout)?.[1])
  if (/Non-2xx/.test(run.stdout) || !(rate > 0)) throw new Error(`wrk: ${run.stdout}`)
  const [, value, unit] = /99%\s+([\d.]+)(us|ms|s)/.exec(run.stdout) ?? []
  const p99Ms = Number(value) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1)
  return {rate, p99Ms, cpuUsPerRequest: (run.cpuS / requests) * 1e6}
}

async function autocannon(url: string): Promise<Peer> {
  const run = await onCoreZero(process.execPath, [
    AUTOCANNON,
    '-c',
    String(CONNECTIONS),
    '-d',
    String(seconds),
    '-H',
    `accept:${MANIFEST_ACCEPT}`,
    '--json',
    url,
  ])
  const result = JSON.parse(run.stdout)
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`autocannon: ${run.stdout}`)
  return {
    rate: result.requests.average,
    p99Ms: result.latency.p99,
    cpuUsPerRequest: (run.cpuS / result.requests.total) * 1e6,
  }
}

interface Probe {
  rate: number
  report: any
  run: Run
  ok: boolean
  why: string
  /** autocannon's rate in the run just before this probe (the search interleaves them) */
  autocannonBefore?: number
}

async function regops(registryUrl: string, rate: number, duration: number, p99BoundMs: number): Promise<Probe> {
  const run = await onCoreZero(process.execPath, [
    BIN,
    'loadtest',
    'pull',
    '--registry',
    registryUrl,
    '--image',
    'bench/app:v1',
    '--manifests-only',
    '--ping',
    'once',
    '--rate',
    String(rate),
    '--duration',
    `${duration}s`,
    '--connections',
    String(CONNECTIONS),
    '--json',
  ])
  const report = JSON.parse(run.stdout)
  const p = report.pulls
  const scheduled = rate * duration
  const p99 = report.stages.pull.p99Ms
  const why = [
    report.startedInSpan < 0.98 * scheduled ? `${report.startedInSpan} of ${scheduled} started on time` : '',
    p.dropped > 0 ? `${p.dropped} dropped` : '',
    p.failed > 0 ? `${p.failed} failed` : '',
    p.cutOff > 0 ? `${p.cutOff} cut off` : '',
    p99 > p99BoundMs ? `pull p99 ${p99} ms > ${p99BoundMs} ms` : '',
  ]
    .filter(Boolean)
    .join(', ')
  return {rate, report, run, ok: why === '', why}
}

/** regops' closed model, as the peers run: 16 users on 16 connections, each request sent when the last one ended. */
async function regopsClosed(registryUrl: string): Promise<Peer> {
  const run = await onCoreZero(process.execPath, [
    BIN,
    'loadtest',
    'pull',
    '--registry',
    registryUrl,
    '--image',
    'bench/app:v1',
    '--manifests-only',
    '--ping',
    'once',
    '--vus',
    String(CONNECTIONS),
    '--duration',
    `${seconds}s`,
    '--connections',
    String(CONNECTIONS),
    '--json',
  ])
  const report = JSON.parse(run.stdout)
  if (report.pulls.failed > 0) throw new Error(`regops --vus: ${JSON.stringify(report.errors)}`)
  return {
    rate: report.pulls.completed / (report.elapsedMs / 1000),
    p99Ms: report.stages.manifest.p99Ms,
    cpuUsPerRequest: (run.cpuS / report.pulls.completed) * 1e6,
  }
}

/** user + system CPU seconds a process has used so far (0 when it is gone) */
function registryCpuS(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    // utime and stime, in clock ticks of 1/100 s (CLK_TCK on Linux)
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return 0
  }
}

/** RSS after the warm-up (see the header): the value where it ends, where the run ends, and the slope between. */
function judgeMemory(rssMiB: number[]) {
  const warmUpS = Math.max(1, Math.min(20, Math.floor(rssMiB.length / 3)))
  const settled = rssMiB.slice(warmUpS - 1)
  const atWarmUp = settled[0] ?? 0
  const end = settled[settled.length - 1] ?? 0
  // least squares over one sample a second
  const n = settled.length
  const meanT = (n - 1) / 2
  const meanRss = settled.reduce((a, b) => a + b, 0) / Math.max(1, n)
  let num = 0
  let den = 0
  settled.forEach((rss, t) => {
    num += (t - meanT) * (rss - meanRss)
    den += (t - meanT) ** 2
  })
  const slopePerMin = den > 0 ? (num / den) * 60 : 0
  return {
    warmUpS,
    atWarmUp,
    end,
    peak: Math.max(0, ...rssMiB),
    slopePerMin,
    flat: n >= 2 && end <= atWarmUp * 1.1 && slopePerMin <= atWarmUp * 0.05,
  }
}

const registry = await startRegistry({storage: {kind: 'filesystem'}})
try {
  // The registry on core 1, the load generators on core 0: neither takes the other's core.
  if (registry.pid) await runCommand('taskset', ['-a', '-p', '-c', '1', String(registry.pid)])
  await pushImage(registry.url, 'bench/app', 'v1', {layers: 3, seed: 'bench'})
  ;({MANIFEST_ACCEPT} = await import('../src/lib/loadtest/registry-client.js'))
  const manifestUrl = `${registry.url}/v2/bench/app/manifests/v1`
  if (memoryOnlyRate > 0) {
    const long = await regops(registry.url, memoryOnlyRate, longSeconds, 100)
    const memory = judgeMemory(long.run.rssMiB)
    console.log(
      `regops ${longSeconds} s at ${memoryOnlyRate}/s: ${long.report.pulls.started} pulls, ${long.ok ? 'sustained' : `NOT sustained (${long.why})`}, ${long.run.cpuS.toFixed(2)} s CPU; ` +
        `RSS peak ${long.run.peakRssMiB.toFixed(0)} MiB, at ${memory.warmUpS} s ${memory.atWarmUp.toFixed(0)} MiB, ` +
        `at the end ${memory.end.toFixed(0)} MiB, slope ${memory.slopePerMin.toFixed(2)} MiB/min: ${memory.flat ? 'flat' : 'NOT flat'}`,
    )
    console.log(`RSS each second: ${long.run.rssMiB.map((m) => m.toFixed(0)).join(' ')}`)
  } else {
    const before = {wrk: await wrk(manifestUrl), autocannon: await autocannon(manifestUrl)}
    const p99BoundMs = Math.max(25, 2 * Math.max(before.wrk.p99Ms, before.autocannon.p99Ms))
    process.stderr.write(
      `peers: wrk ${Math.round(before.wrk.rate)}/s (p99 ${before.wrk.p99Ms} ms), autocannon ${Math.round(before.autocannon.rate)}/s (p99 ${before.autocannon.p99Ms} ms); regops pull p99 bound ${p99BoundMs} ms\n`,
    )

    // Each probe follows an autocannon run: the registry's capacity drifts within a run (autocannon 980/s
    // before the search and 713/s after it, measured), so regops' best rate is also compared with the
    // autocannon runs on either side of it, seconds away rather than minutes.
    const probes: Probe[] = []
    const probe = async (rate: number) => {
      const autocannonBefore = (await autocannon(manifestUrl)).rate
      const result = {...(await regops(registry.url, Math.round(rate), seconds, p99BoundMs)), autocannonBefore}
      const r = result.report
      process.stderr.write(
        `regops --rate ${result.rate}: ${r.startedInSpan} on time, ${r.pulls.dropped} dropped, ${r.pulls.failed} failed, ` +
          `manifest p50 ${r.stages.manifest.p50Ms} ms, pull p99 ${r.stages.pull.p99Ms} ms, max start lag ${r.maxStartLagMs} ms, ` +
          `${result.run.cpuS.toFixed(2)} s CPU: ${result.ok ? 'sustained' : `NOT sustained (${result.why})`}\n`,
      )
      probes.push(result)
      return result.ok
    }
    // Double from 250/s until a rate is not sustained (or 3x wrk's), then bisect between the last two.
    let good = 0
    let bad = 0
    for (let rate = 250; ; rate *= 2) {
      if (!(await probe(rate))) {
        bad = rate
        break
      }
      good = rate
      if (rate > 3 * before.wrk.rate) break
    }
    // Bisected until the bracket is within 3% of the rate: at 125/s (three steps from 1,000-2,000) it
    // could not tell 1,125/s from autocannon's 1,143-1,187/s, which is what the goal compares.
    if (bad > 0) {
      while (bad - good > 0.03 * good) {
        const mid = Math.round((good + bad) / 2)
        if (await probe(mid)) good = mid
        else bad = mid
      }
    }
    const autocannonClosing = (await autocannon(manifestUrl)).rate
    const best = probes.filter((p) => p.ok).sort((a, b) => b.rate - a.rate)[0]
    const bestRate = best?.rate ?? 0
    const bestIndex = best ? probes.indexOf(best) : -1
    const adjacentAutocannon = best
      ? [best.autocannonBefore!, probes[bestIndex + 1]?.autocannonBefore ?? autocannonClosing]
      : [0, 0]
    const adjacentAcRate = (adjacentAutocannon[0]! + adjacentAutocannon[1]!) / 2

    const closed = await regopsClosed(registry.url)
    const after = {wrk: await wrk(manifestUrl), autocannon: await autocannon(manifestUrl)}
    const wrkRate = (before.wrk.rate + after.wrk.rate) / 2
    const acRate = (before.autocannon.rate + after.autocannon.rate) / 2

    // Two thirds of the best rate: the run judges the client's memory, and a backlog's queued pulls would be
    // measured as memory growth. On this shared host the registry's capacity drifts within a minute: at 80%
    // (700/s of 875) two 60 s runs out of three had pull p99 of 264-736 ms against a 144 ms bound, and RSS
    // followed the queue (95 -> 106 MiB); at 600/s, 2/2 runs were sustained and flat at 98-99 MiB.
    const longRate = Math.max(Math.round((bestRate * 2) / 3), 100)
    const registryCpuBefore = registryCpuS(registry.pid)
    const long = await regops(registry.url, longRate, longSeconds, p99BoundMs)
    const registryCpuPct = ((registryCpuS(registry.pid) - registryCpuBefore) / long.run.wallS) * 100
    const memory = judgeMemory(long.run.rssMiB)

    const cpuPerPull = (probe?: Probe) =>
      probe ? ((probe.run.cpuS / Math.max(1, probe.report.pulls.completed)) * 1e6).toFixed(0) : '-'
    console.log(
      table(
        ['tool (core 0, 16 connections)', 'manifest GETs/s', 'p99 ms', 'CPU µs/request', 'vs autocannon', 'vs wrk'],
        [
          [
            'wrk -t1 (before, after)',
            `${Math.round(before.wrk.rate)}, ${Math.round(after.wrk.rate)}`,
            `${before.wrk.p99Ms}, ${after.wrk.p99Ms}`,
            Math.round(before.wrk.cpuUsPerRequest),
            (wrkRate / acRate).toFixed(2),
            '1.00',
          ],
          [
            'autocannon (before, after)',
            `${Math.round(before.autocannon.rate)}, ${Math.round(after.autocannon.rate)}`,
            `${before.autocannon.p99Ms}, ${after.autocannon.p99Ms}`,
            Math.round(before.autocannon.cpuUsPerRequest),
            '1.00',
            (acRate / wrkRate).toFixed(2),
          ],
          [
            'regops --vus 16 (closed, like the peers)',
            Math.round(closed.rate),
            closed.p99Ms,
            Math.round(closed.cpuUsPerRequest),
            (closed.rate / acRate).toFixed(2),
            (closed.rate / wrkRate).toFixed(2),
          ],
          [
            'regops open model, sustained',
            bestRate,
            best?.report.stages.pull.p99Ms ?? '-',
            cpuPerPull(best),
            (bestRate / acRate).toFixed(2),
            (bestRate / wrkRate).toFixed(2),
          ],
        ],
      ),
    )
    console.log(
      `regops at ${bestRate}/s: manifest p50 ${best?.report.stages.manifest.p50Ms} ms, p99 ${best?.report.stages.manifest.p99Ms} ms; ` +
        `pull p99 from the intended start ${best?.report.stages.pull.p99Ms} ms (bound ${p99BoundMs} ms); CPU µs/pull includes the CLI's start`,
    )
    const lost = probes.filter((p) => !p.ok).sort((a, b) => a.rate - b.rate)[0]
    if (lost) console.log(`first rate not sustained: ${lost.rate}/s (${lost.why})`)
    console.log(
      `regops ${longSeconds} s at ${longRate}/s: ${long.report.pulls.started} pulls, ${long.ok ? 'sustained' : `NOT sustained (${long.why})`}, ` +
        `CPU ${((long.run.cpuS / long.run.wallS) * 100).toFixed(0)}% of the core, ${cpuPerPull(long)} µs/pull; ` +
        `RSS peak ${long.run.peakRssMiB.toFixed(0)} MiB (high-water mark; ${memory.peak.toFixed(0)} MiB in the 1 s samples), at ${memory.warmUpS} s ${memory.atWarmUp.toFixed(0)} MiB, ` +
        `at the end ${memory.end.toFixed(0)} MiB, slope after ${memory.warmUpS} s ${memory.slopePerMin.toFixed(2)} MiB/min`,
    )
    // Where a late pull's time went: regops starting it late (start lag), or the answer (manifest, from dispatch,
    // a wait for one of the 16 connections included) on a registry using its core.
    console.log(
      `  pull p99 ${long.report.stages.pull.p99Ms} ms, manifest p99 ${long.report.stages.manifest.p99Ms} ms, ` +
        `max start lag ${long.report.maxStartLagMs} ms; registry CPU ${registryCpuPct.toFixed(0)}% of its core`,
    )
    const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met')
    console.log(
      `regops' best sustained rate against the autocannon runs just before and after its probe ` +
        `(${adjacentAutocannon.map((r) => Math.round(r)).join(' and ')}/s): ${(bestRate / Math.max(1, adjacentAcRate)).toFixed(2)}x; ` +
        `against the peers' runs before and after the whole search: ${(bestRate / acRate).toFixed(2)}x`,
    )
    console.log(
      `goals: >= autocannon (adjacent runs) ${verdict(bestRate >= adjacentAcRate)}; >= half of wrk ${verdict(bestRate >= wrkRate / 2)}; ` +
        `memory flat after the ${memory.warmUpS} s warm-up (end within 10% of its RSS, slope under 5% of it a minute) ` +
        verdict(memory.flat) +
        // A backlog's pulls hold their requests until answered (at most --max-in-flight of them): memory then
        // follows the registry's stalls, and the figure says more about the registry than about the client.
        (long.ok ? '' : ' (on a run that was not sustained: pulls waiting on the registry hold memory)'),
    )
    console.log(`load average at the end: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`)
  }
} finally {
  await registry.stop()
}
