import {writeFileSync} from 'node:fs'
import {Flags} from '@oclif/core'
import {RegopsCommand} from '../../base-command.js'
import {UsageError} from '../../lib/errors.js'
import {parseDuration} from '../../lib/config/duration.js'
import {shardFlag, metricsFlags} from '../../flags.js'
import {formatDuration} from '../../lib/output/format.js'
import {redactValue} from '../../lib/output/redact.js'
import {loadScenario, parseImage} from '../../lib/loadtest/image-mix.js'
import {planLoad} from '../../lib/loadtest/plan.js'
import {parsePlatform} from '../../lib/loadtest/pull-flow.js'
import type {PullReport} from '../../lib/loadtest/report.js'
import {runPullLoadtest} from '../../lib/loadtest/run-pull.js'
import {parseThresholds} from '../../lib/loadtest/thresholds.js'
import * as formatter from '../../formatters/loadtest-pull.js'

export default class LoadtestPull extends RegopsCommand<PullReport> {
  static override summary =
    'Pull images the way container clients do, at an arrival rate, and judge the latencies per stage.'
  static override description = `Each pull: GET /v2/, a bearer token from the realm (cached until it expires), the manifest by tag with the full Accept list, the platform's child of an index, the config, then the layers at client parallelism; redirects are followed and the Authorization header stays with the registry.
Open model (--rate, or stages in --scenario): pulls start on schedule whatever the latency, and latency runs from each pull's intended start, so a stall is not hidden; starts over --max-in-flight are dropped and counted. --vus runs the closed model for comparison.
Thresholds decide the exit code: 1 when one is breached (named in the output), 0 when all hold.`
  static override examples = [
    "<%= config.bin %> <%= command.id %> --image library/alpine:3.19 --rate 50 --duration 60s --threshold 'manifest.p99<250ms'",
    "<%= config.bin %> <%= command.id %> --scenario ramp.yaml --report shard0.json --shard 0/4 --threshold 'errors.rate<0.1%'",
    '<%= config.bin %> <%= command.id %> --from-catalog 20 --zipf 1.1 --manifests-only --rate 500 --duration 30s',
  ]
  static override flags = {
    registry: Flags.string({summary: 'Registry URL (default: registry.url of the configuration).', helpValue: 'URL'}),
    insecure: Flags.boolean({
      summary: 'Skip TLS certificate verification for the registry (warned); a private CA belongs in registry.caFile.',
    }),
    image: Flags.string({
      summary: 'Image to pull, REPO:TAG or REPO@DIGEST, with an optional =WEIGHT; repeatable.',
      multiple: true,
    }),
    scenario: Flags.string({
      summary: 'YAML file: images (with weights), zipf, startRate, stages of {duration, target}, thresholds.',
      helpValue: 'FILE',
    }),
    'from-catalog': Flags.integer({summary: "Pull the first N images of the registry's catalog.", min: 1}),
    zipf: Flags.string({
      summary: 'Popularity skew: the image of rank k gets a share proportional to 1/k^S.',
      helpValue: 'S',
    }),
    'manifests-only': Flags.boolean({summary: 'Stop each pull after its manifests (the metadata path).'}),
    verify: Flags.boolean({summary: 'Re-hash every body against its digest (a correctness check under load).'}),
    rate: Flags.string({summary: 'Open model: pulls started per second.'}),
    vus: Flags.integer({summary: 'Closed model: N users, each starting its next pull when the last one ends.', min: 1}),
    duration: Flags.string({summary: 'How long pulls are started, e.g. 60s, 5m.'}),
    'max-pulls': Flags.integer({summary: 'Stop after starting this many pulls.', min: 1}),
    'max-in-flight': Flags.integer({
      summary: 'Most pulls running at once; starts over it are dropped and counted.',
      default: 1000,
      min: 1,
    }),
    connections: Flags.integer({
      summary:
        'Most connections per host (default: one per request in flight); a request over it waits for one, and the wait counts in its latency.',
      min: 1,
    }),
    parallelism: Flags.integer({
      summary: 'Layers fetched at once within a pull (Docker and containerd use 3).',
      default: 3,
      min: 1,
    }),
    platform: Flags.string({summary: 'Platform picked from an index.', default: 'linux/amd64'}),
    ping: Flags.option({
      options: ['every-pull', 'once'] as const,
      default: 'every-pull' as const,
      summary: 'GET /v2/ before every pull (Docker) or once per run (containerd-like).',
    })(),
    threshold: Flags.string({
      summary: "Pass/fail rule, repeatable: 'manifest.p99<250ms', 'layer.p95<2s', 'errors.rate<0.1%'.",
      multiple: true,
    }),
    'abort-on-fail': Flags.boolean({summary: 'Stop as soon as a threshold is breached (checked once a second).'}),
    report: Flags.string({
      summary: 'Write the JSON report (with encoded histograms, for loadtest merge) to FILE.',
      helpValue: 'FILE',
    }),
    timeout: Flags.string({summary: 'Per request: to the response headers, and between body chunks.', default: '30s'}),
    'max-redirects': Flags.integer({
      summary: 'Redirects followed per request before it counts as an error.',
      default: 10,
      min: 0,
    }),
    grace: Flags.string({
      summary: 'How long pulls still running at the end may finish before they are cut off.',
      default: '5s',
    }),
    shard: shardFlag({
      summary: 'Run as shard i of n (0-based): this process takes 1/n of the rate, the users and the pull cap.',
    }),
    ...metricsFlags,
  }

  protected readonly formatter = formatter

  protected async execute(): Promise<PullReport> {
    const {flags} = await this.parse(LoadtestPull)
    const configured = this.configuration().registry
    const chosen = flags.registry ? {...configured, url: flags.registry} : configured
    if (!chosen) throw new UsageError('no registry: give --registry URL or registry.url in the configuration')
    const registry = flags.insecure ? {...chosen, caFile: undefined, insecureSkipTlsVerify: true} : chosen
    const scenario = flags.scenario ? loadScenario(flags.scenario) : undefined
    const thresholds = parseThresholds([...(scenario?.thresholds ?? []), ...(flags.threshold ?? [])])
    const flagImages = (flags.image ?? []).map((text) => parseImage(text))
    const images = flags['from-catalog']
      ? {fromCatalog: flags['from-catalog']}
      : flagImages.length
        ? flagImages
        : (scenario?.images ?? [])
    const zipf = flags.zipf === undefined ? (scenario?.zipf ?? 0) : Number(flags.zipf)
    if (!(zipf >= 0)) throw new UsageError(`--zipf '${flags.zipf}': must be a number >= 0`)
    const rate = flags.rate === undefined ? undefined : Number(flags.rate)
    if (rate !== undefined && !(rate > 0))
      throw new UsageError(`--rate '${flags.rate}': must be a number of pulls/s above 0`)
    const {model, maxPulls} = planLoad({
      rate,
      vus: flags.vus,
      durationMs: flags.duration === undefined ? undefined : parseDuration(flags.duration, '--duration'),
      maxPulls: flags['max-pulls'],
      maxInFlight: flags['max-in-flight'],
      scenario,
      shard: flags.shard,
    })
    const progress = this.progress('starting')
    const result = await runPullLoadtest({
      registry,
      images,
      zipf,
      model,
      maxPulls,
      manifestsOnly: flags['manifests-only'],
      verify: flags.verify,
      parallelism: flags.parallelism,
      connections: flags.connections,
      platform: parsePlatform(flags.platform),
      pingEveryPull: flags.ping === 'every-pull',
      thresholds,
      abortOnFail: flags['abort-on-fail'],
      timeoutMs: parseDuration(flags.timeout, '--timeout'),
      maxRedirects: flags['max-redirects'],
      graceMs: parseDuration(flags.grace, '--grace'),
      loopbackOnly: process.env.REGOPS_LOADTEST_LOOPBACK_ONLY === '1',
      onProgress: (p) =>
        progress.update(
          `${formatDuration(p.elapsedMs)}: ${p.started} started, ${p.completed} done (${p.failed} failed), ${p.dropped} dropped, ${p.inFlight} in flight, pull p99 ${formatDuration(p.pullP99Ms)}`,
          {phase: 'pull', ...p},
        ),
    })
    if (flags.report) writeFileSync(flags.report, JSON.stringify(redactValue(result), null, 2) + '\n')
    return result
  }
}
