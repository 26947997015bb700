// Hostile input: random and adversarial bytes where regops reads what it does not control (link files,
// manifests, repository names, tags and digests on the command line, the config file, a registry's answers).
// Property-based (fast-check, seeded with the row's seed, so a failure's seed replays it and fast-check names
// the shrunk counterexample): the pure parsers are called directly, hundreds of times; the end-to-end
// criteria run the built CLI on a filesystem store (sweep blobs, import, audit regions, inspect repo) or
// the load test against a loopback registry that misbehaves, tens of times.
import {createHash} from 'node:crypto'
import {cp, readFile, readdir, rm, stat, writeFile} from 'node:fs/promises'
import http from 'node:http'
import type {AddressInfo, Socket} from 'node:net'
import {join, posix} from 'node:path'
import fc from 'fast-check'
import pg from 'pg'
import {runCli, type CliRun} from '../helpers/cli.js'
import {startPostgres, type PgServer} from '../helpers/postgres.js'
import {makeTempDir, removeTempDir} from '../helpers/tmp.js'
import {writeSampleRegistry, type SampleRegistry} from '../../src/lib/quickstart/sample.js'
import {FilesystemDriver} from '../../src/lib/storage/filesystem.js'
import {
  assertDigest,
  assertRepositoryName,
  assertTag,
  isDigest,
  isRepositoryName,
  isTag,
  parseLink,
  pathFor,
  repositoryPrefix,
} from '../../src/lib/storage/layout.js'
import {parseManifest} from '../../src/lib/storage/manifest.js'
import {MAX_MANIFEST_SIZE} from '../../src/lib/storage/repositories.js'
import {parseManifestReference} from '../../src/lib/inspect/inspect-manifest.js'
import {loadConfigFromText} from '../../src/lib/config/config.js'
import {ConfigError, InvalidInputError} from '../../src/lib/errors.js'
import {runPullLoadtest} from '../../src/lib/loadtest/run-pull.js'
import {ArrivalSchedule} from '../../src/lib/loadtest/arrivals.js'
import {runTrials, type ReliabilityRow, type Scale, type Suite, type TrialFailure} from './suite.js'

/** Property runs per row at each scale: the pure parsers are cheap, a CLI run costs about a second. */
const RUNS: Record<Scale, {pure: number; cli: number; store: number; loadtest: number}> = {
  subset: {pure: 150, cli: 4, store: 1, loadtest: 2},
  full: {pure: 1000, cli: 40, store: 20, loadtest: 20},
}

/** A clear error is a line an operator reads: bounded, whatever the size of the input it names. */
const MAX_MESSAGE = 1000

const sha256 = (bytes: Buffer | string): string => createHash('sha256').update(bytes).digest('hex')
const hex = (length: number) => fc.stringMatching(new RegExp(`^[a-f0-9]{${length}}$`))

/** What a message shows of a value: regops prints non-ASCII and control characters as '?'. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?')
}

/** A counterexample in one readable line (no control characters, bounded). */
function show(value: unknown): string {
  // A Buffer reaches a replacer already as {type: 'Buffer', data}: shown as its first bytes, as text.
  const bytes = (b: Uint8Array) => `<${b.length} bytes: ${Buffer.from(b.slice(0, 60)).toString('utf8')}>`
  const text = JSON.stringify(value, (_k, v: unknown) => {
    if (v instanceof Uint8Array) return bytes(v)
    const maybe = v as {type?: unknown; data?: unknown} | null
    if (maybe && maybe.type === 'Buffer' && Array.isArray(maybe.data))
      return bytes(Uint8Array.from(maybe.data as number[]))
    return v
  })
  const line = printable(text ?? String(value))
  return line.length > 200 ? `${line.slice(0, 197)}...` : line
}

/** CPU time of this process: a bound on it holds on a busy host, where wall time measures the neighbours. */
function cpuMs(): number {
  const {user, system} = process.cpuUsage()
  return (user + system) / 1000
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e)
}

/** One row from one fast-check property: trials = the runs made, a failure = the shrunk counterexample. */
async function propertyRow<T>(
  row: Omit<ReliabilityRow, 'trials' | 'survived' | 'failures'>,
  seed: number,
  numRuns: number,
  arbitrary: fc.Arbitrary<T>,
  check: (value: T) => void | Promise<void>,
  opts: {shrink?: boolean} = {},
): Promise<ReliabilityRow> {
  const details = await fc.check(
    fc.asyncProperty(arbitrary, async (value) => {
      await check(value)
    }),
    {seed, numRuns, endOnFailure: opts.shrink === false},
  )
  const failures: TrialFailure[] = []
  if (details.failed) {
    const reason = details.errorInstance ? errorText(details.errorInstance) : 'property failed'
    failures.push({
      seed,
      reason: `${reason.split('\n')[0]!.slice(0, 200)}; counterexample ${show(details.counterexample?.[0])}`,
    })
  }
  return {...row, trials: details.numRuns, survived: details.numRuns - failures.length, failures}
}

function fail(message: string): never {
  throw new Error(message)
}

/** A message regops gives for bad input: the right type, bounded, naming what it names. */
function expectInvalidInput(e: unknown, key: string | undefined, what: string): void {
  if (!(e instanceof InvalidInputError)) fail(`${what}: threw ${errorText(e)}, not an InvalidInputError`)
  if (e.exitCode !== 2) fail(`${what}: exit code ${e.exitCode}, not 2`)
  if (key !== undefined && e.key !== key) fail(`${what}: the error names '${e.key}', not the key '${key}'`)
  if (e.message.length > MAX_MESSAGE) fail(`${what}: a ${e.message.length}-character message`)
}

// ---------------------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------------------

const WHITESPACE = [' ', '\n', '\r\n', '\t', '\0', '\ufeff', '\u00a0', '\v']

/** The bytes of a hostile link file: random, empty, huge, another algorithm's digest, whitespace variants. */
function linkContent(): fc.Arbitrary<Buffer> {
  const goodDigest = hex(64).map((h) => `sha256:${h}`)
  return fc.oneof(
    fc.uint8Array({maxLength: 300}).map((b) => Buffer.from(b)),
    fc.constant(Buffer.alloc(0)),
    fc
      .tuple(goodDigest, fc.integer({min: 1025, max: 256 * 1024}))
      .map(([d, size]) => Buffer.concat([Buffer.from(d), Buffer.alloc(size - d.length, 0x20)])),
    fc
      .oneof(
        hex(96).map((h) => `sha384:${h}`),
        hex(32).map((h) => `md5:${h}`),
        hex(64).map((h) => `sha512:${h}`),
        hex(64).map((h) => `SHA256:${h}`),
        hex(64).map((h) => `sha256:${h.toUpperCase()}`),
        hex(63).map((h) => `sha256:${h}`),
        hex(64).map((h) => `sha256:${h}0`),
        hex(64).map((h) => `sha256;${h}`),
      )
      .map((s) => Buffer.from(s)),
    fc
      .tuple(fc.constantFrom(...WHITESPACE, ''), goodDigest, fc.constantFrom(...WHITESPACE, ''), fc.boolean())
      .map(([before, d, after, inside]) =>
        Buffer.from(before + (inside ? `${d.slice(0, 7)} ${d.slice(7)}` : d) + after),
      ),
  )
}

function nested(depth: number, open: string, close: string, core = '0'): string {
  return open.repeat(depth) + core + close.repeat(depth)
}

const MEDIA = {
  image: 'application/vnd.docker.distribution.manifest.v2+json',
  oci: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
}

/** A manifest payload regops must survive: garbage, the wrong shape, deep, wrong media type, odd digests. */
function manifestPayload(opts: {huge: boolean}): fc.Arbitrary<{what: string; bytes: Buffer}> {
  const digest = fc.oneof(
    hex(64).map((h) => `sha256:${h}`),
    hex(128).map((h) => `sha512:${h}`),
    hex(96).map((h) => `sha384:${h}`),
    hex(32).map((h) => `md5:${h}`),
    fc.string({maxLength: 80}),
  )
  const descriptor = fc.record(
    {
      mediaType: fc.oneof(fc.constantFrom('application/octet-stream', MEDIA.image, ''), fc.string()),
      digest,
      size: fc.oneof(fc.nat(), fc.constantFrom(-1, 1e400, 2 ** 64), fc.string({maxLength: 8})),
    },
    {requiredKeys: ['digest']},
  )
  const json = (what: string) => (value: unknown) => ({what, bytes: Buffer.from(JSON.stringify(value))})
  const wellFormed = fc.record({
    mediaType: fc.constantFrom('application/octet-stream', 'application/vnd.oci.image.layer.v1.tar+gzip'),
    digest: fc.oneof(
      hex(64).map((h) => `sha256:${h}`),
      hex(128).map((h) => `sha512:${h}`),
    ),
    size: fc.nat(),
  })
  const variants: Array<fc.Arbitrary<{what: string; bytes: Buffer}>> = [
    // Well-formed descriptors under any media type, with extra fields: every one must come out a reference.
    fc
      .record(
        {
          schemaVersion: fc.constant(2),
          mediaType: fc.oneof(fc.constantFrom(MEDIA.image, MEDIA.oci, MEDIA.index), fc.string({maxLength: 40})),
          config: wellFormed,
          layers: fc.array(wellFormed, {maxLength: 5}),
          manifests: fc.array(wellFormed, {maxLength: 3}),
          subject: wellFormed,
          blobs: fc.array(wellFormed, {maxLength: 2}),
          annotations: fc.dictionary(fc.string({maxLength: 10}), fc.string({maxLength: 20})),
        },
        {requiredKeys: ['schemaVersion', 'config', 'layers']},
      )
      .map(json('well-formed descriptors, any media type, extra fields')),
    fc.uint8Array({maxLength: 2000}).map((b) => ({what: 'random bytes', bytes: Buffer.from(b)})),
    fc.jsonValue({maxDepth: 4}).map(json('JSON of the wrong shape')),
    fc
      .record({
        schemaVersion: fc.oneof(fc.constant(2), fc.jsonValue({maxDepth: 1})),
        mediaType: fc.oneof(fc.constantFrom(MEDIA.image, MEDIA.oci, MEDIA.index), fc.jsonValue({maxDepth: 1})),
        config: fc.oneof(descriptor, fc.jsonValue({maxDepth: 2})),
        layers: fc.oneof(fc.array(descriptor, {maxLength: 4}), fc.jsonValue({maxDepth: 2})),
        manifests: fc.oneof(fc.array(descriptor, {maxLength: 3}), fc.jsonValue({maxDepth: 2})),
        subject: descriptor,
        blobs: fc.array(descriptor, {maxLength: 2}),
      })
      .map(json('manifest fields of the wrong types')),
    fc
      .record({
        schemaVersion: fc.constant(2),
        mediaType: fc.oneof(fc.string({maxLength: 60}), fc.constantFrom('text/html', MEDIA.index, 'image/png')),
        config: descriptor,
        layers: fc.array(descriptor, {maxLength: 4}),
      })
      .map(json('wrong media type, odd or missing digests')),
    fc
      .tuple(
        fc.integer({min: 1000, max: 10_000}),
        fc.constantFrom<[string, string]>(['[', ']'], ['{"a":', '}']),
        fc.constantFrom('layers', 'config', 'manifests', 'subject', 'annotations'),
      )
      .map(([depth, [open, close], field]) => ({
        what: `JSON nested ${depth} deep in ${field}`,
        bytes: Buffer.from(`{"schemaVersion":2,"mediaType":"${MEDIA.oci}","${field}":${nested(depth, open, close)}}`),
      })),
  ]
  if (opts.huge)
    variants.push(
      fc.integer({min: 1, max: 100}).map((mb) => ({
        what: `a ${mb} MB manifest`,
        bytes: Buffer.concat([
          Buffer.from(`{"schemaVersion":2,"mediaType":"${MEDIA.oci}","annotations":{"pad":"`),
          Buffer.alloc(mb * 1024 * 1024, 0x61),
          Buffer.from('"}}'),
        ]),
      })),
    )
  return fc.oneof(...variants)
}

/** Fragments that make any repository name, tag or digest invalid wherever they land. */
const HOSTILE_FRAGMENTS = [
  '../',
  '..',
  '%2e%2e',
  '%2F',
  '/',
  '//',
  '\\',
  ' ',
  '\t',
  '\u202e',
  'é',
  '名前',
  '\u{1f600}',
  ':',
  '@',
  '$(id)',
  "'",
  '\x01',
]

/** A string that breaks the grammar: a hostile fragment somewhere, overlong, a trailing slash, or empty. */
function hostileName(opts: {nul: boolean; invalidFor: (s: string) => boolean}): fc.Arbitrary<string> {
  const fragment = fc.constantFrom(...HOSTILE_FRAGMENTS, ...(opts.nul ? ['\0'] : []))
  const plain = fc.stringMatching(/^[a-z0-9]{0,12}$/)
  return fc
    .oneof(
      fc.tuple(plain, fragment, plain).map(([a, f, b]) => a + f + b),
      fc.tuple(plain, fragment, fragment, plain).map(([a, f, g, b]) => a + f + g + b),
      fc.integer({min: 256, max: 5000}).map((n) => 'a'.repeat(n)),
      plain.map((p) => `${p || 'x'}/`),
      plain.map((p) => `/${p || 'x'}`),
      fc.constant(''),
      fc.constantFrom('..', '.', '../../../../etc/passwd', '%2e%2e/%2e%2e/etc', 'a/../../b', 'A', 'a/./b'),
      fc.string({unit: 'binary', maxLength: 40}),
    )
    .filter(opts.invalidFor)
}

// ---------------------------------------------------------------------------------------------------------
// Rows on the pure parsers
// ---------------------------------------------------------------------------------------------------------

async function linkParserRow(seed: number, runs: number): Promise<ReliabilityRow> {
  const key = 'repositories/hostile/app/_layers/sha256/' + 'ab'.repeat(32) + '/link'
  return propertyRow(
    {
      case: 'link file content: random bytes, empty, up to 256 KB, digests of other algorithms, whitespace variants',
      command: 'parseLink (every command that reads a link)',
      criterion:
        'returns the digest only when the content is one (surrounding whitespace aside), else a bad-input error (exit 2) naming the key; never another error',
    },
    seed,
    runs,
    linkContent(),
    (bytes) => {
      const text = bytes.toString('utf8').trim()
      let digest: string
      try {
        digest = parseLink(bytes, key)
      } catch (e) {
        expectInvalidInput(e, key, 'parseLink')
        if (isDigest(text)) fail(`a valid digest was refused: '${show(text)}'`)
        return
      }
      if (digest !== text || !/^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/.test(digest))
        fail(`accepted '${show(bytes.toString('utf8'))}' as ${show(digest)}`)
    },
  )
}

/** The digests a manifest's reference fields carry, read independently of regops' parser. */
function referencedDigests(doc: Record<string, unknown>): string[] {
  const valid = (d: unknown): d is string =>
    typeof d === 'string' && /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/.test(d)
  const of = (v: unknown): string[] => {
    const d = (v as {digest?: unknown} | null)?.digest
    return v && typeof v === 'object' && valid(d) ? [d] : []
  }
  const list = (v: unknown): string[] => (Array.isArray(v) ? v.flatMap(of) : [])
  if (doc.schemaVersion === 1)
    return Array.isArray(doc.fsLayers) ? doc.fsLayers.map((l) => (l as {blobSum?: unknown})?.blobSum).filter(valid) : []
  return [...of(doc.config), ...list(doc.layers), ...list(doc.blobs), ...list(doc.manifests), ...of(doc.subject)]
}

async function manifestParserRow(seed: number, runs: number): Promise<ReliabilityRow> {
  const key = 'blobs/sha256/ab/' + 'ab'.repeat(32) + '/data'
  const started = {slowest: 0}
  const row = await propertyRow(
    {
      case: 'manifest payload: random bytes, JSON of the wrong shape, fields of the wrong types, wrong media type, digests of other algorithms, JSON nested up to 10,000 deep',
      command: 'parseManifest (sweep, import, audit, inspect)',
      criterion:
        'parses within 1 s of CPU and keeps every well-formed digest of config, layers, blobs, manifests and subject as a reference, or is a bad-input error (exit 2) naming the key; never another error',
    },
    seed,
    runs,
    manifestPayload({huge: false}),
    ({bytes}) => {
      const t0 = cpuMs()
      let references: string[]
      try {
        references = parseManifest(bytes, 'sha256:' + 'ab'.repeat(32), key).references
      } catch (e) {
        expectInvalidInput(e, key, 'parseManifest')
        return
      } finally {
        started.slowest = Math.max(started.slowest, cpuMs() - t0)
      }
      if (cpuMs() - t0 > 1000) fail(`took ${Math.round(cpuMs() - t0)} ms of CPU`)
      if (!references.every(isDigest)) fail(`a reference that is not a digest: ${show(references)}`)
      const doc = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>
      const missed = referencedDigests(doc).filter((d) => !references.includes(d))
      if (missed.length > 0) fail(`dropped references ${show(missed)}`)
    },
  )
  return {...row, figures: {'slowest parse (CPU ms)': Math.round(started.slowest)}}
}

/** Where a key lands under a root: it must stay inside, with no component a filesystem or S3 would read twice. */
function expectContained(key: string, what: string): void {
  const root = '/store/docker/registry/v2'
  const joined = posix.join(root, key)
  if (!joined.startsWith(`${root}/`)) fail(`${what}: key '${show(key)}' escapes the root`)
  for (const part of key.split('/').slice(0, -1))
    if (part === '' || part === '.' || part === '..' || /[\0%\\]/.test(part))
      fail(`${what}: key '${show(key)}' has the component '${show(part)}'`)
}

async function namesParserRow(seed: number, runs: number): Promise<ReliabilityRow> {
  const anyString = fc.oneof(
    hostileName({nul: true, invalidFor: () => true}),
    fc.string({unit: 'binary', maxLength: 300}),
    fc.stringMatching(/^[a-z0-9._/-]{1,40}$/),
    fc.stringMatching(/^[A-Za-z0-9._-]{1,40}$/),
    hex(64).map((h) => `sha256:${h}`),
  )
  return propertyRow(
    {
      case: "repository names, tags, digests and REPO:TAG / REPO@DIGEST references: '../', '%2e%2e', unicode, NUL, overlong, trailing slashes, random strings",
      command: 'the name, tag and digest checks behind every argument and flag',
      criterion:
        'accepted only when the layout key it makes stays inside the store root (no empty, ., .. or % component); else a bad-input error (exit 2) that shows the value',
    },
    seed,
    runs,
    fc.tuple(anyString, fc.constantFrom('repository', 'tag', 'digest', 'reference')),
    ([value, as]) => {
      const shows = (e: unknown) => {
        expectInvalidInput(e, undefined, `${as} '${show(value)}'`)
        // A reference's message may name just the part it found invalid (the repository, tag or digest).
        const at = value.indexOf('@')
        const colon = value.lastIndexOf(':')
        const parts =
          as !== 'reference'
            ? [value]
            : [
                value,
                ...(at >= 0 ? [value.slice(0, at), value.slice(at + 1)] : []),
                value.slice(0, colon),
                value.slice(colon + 1),
              ]
        const message = (e as Error).message
        if (!parts.some((part) => message.includes(printable(part).slice(0, 40))))
          fail(`the error does not show the ${as}: ${message}`)
      }
      try {
        if (as === 'repository') {
          assertRepositoryName(value)
          expectContained(`${repositoryPrefix(value)}_layers/sha256/${'ab'.repeat(32)}/link`, 'repository')
        } else if (as === 'tag') {
          assertTag(value)
          expectContained(pathFor({kind: 'tag-current-link', repository: 'library/app', tag: value}), 'tag')
        } else if (as === 'digest') {
          assertDigest(value)
          expectContained(pathFor({kind: 'blob-data', digest: value}), 'digest')
        } else {
          const ref = parseManifestReference(value)
          if (!isRepositoryName(ref.repository) || (ref.tag !== undefined && !isTag(ref.tag)))
            fail(`reference '${show(value)}' accepted as ${show(ref)}`)
          expectContained(repositoryPrefix(ref.repository) + '_manifests/x', 'reference')
        }
      } catch (e) {
        if (e instanceof Error && e.constructor === Error) throw e
        shows(e)
      }
    },
  )
}

/** Billion laughs: `depth` levels of `width` aliases each, the last key expanding to width^depth strings. */
function aliasBomb(depth: number, width: number): string {
  const lines = [`l0: &l0 [${Array(width).fill('"lol"').join(', ')}]`]
  for (let i = 1; i < depth; i++)
    lines.push(
      `l${i}: &l${i} [${Array(width)
        .fill(`*l${i - 1}`)
        .join(', ')}]`,
    )
  return `regions:\n  eu: {url: "file:///tmp/x"}\n${lines.join('\n')}\n`
}

const CONFIG_KEYS = [
  'database',
  'database.url',
  'regions',
  'regions.eu',
  'regions.eu.url',
  'regions.eu.concurrency',
  'regions.eu.empty',
  'regions.eu.endpoint',
  'primary',
  'registry',
  'registry.url',
  'registry.cache',
  'registry.password',
  'sweep',
  'sweep.minAge',
  'sweep.holdFor',
  'sweep.quarantine',
]

/** A YAML text with one value set at a dotted key (a well-formed region around it, so the value is reached). */
function yamlWith(path: string, value: string): string {
  const base: Record<string, unknown> = {regions: {eu: {url: 'file:///tmp/x'}}, primary: 'eu'}
  const parts = path.split('.')
  let at = base
  for (const part of parts.slice(0, -1)) {
    if (!at[part] || typeof at[part] !== 'object') at[part] = {}
    at = at[part] as Record<string, unknown>
  }
  at[parts.at(-1)!] = '__VALUE__'
  return JSON.stringify(base).replace('"__VALUE__"', value)
}

function hostileYaml(opts: {maxDepth: number; maxString: number}): fc.Arbitrary<{what: string; text: string}> {
  return fc.oneof(
    fc
      .tuple(fc.integer({min: 3, max: 12}), fc.integer({min: 2, max: 12}))
      .map(([depth, width]) => ({what: `alias bomb ${width}^${depth}`, text: aliasBomb(depth, width)})),
    fc
      .tuple(fc.constantFrom(...CONFIG_KEYS), fc.jsonValue({maxDepth: 3}))
      .map(([key, v]) => ({what: `${key}: a ${typeof v}`, text: yamlWith(key, JSON.stringify(v) ?? 'null')})),
    fc
      .tuple(
        fc.constantFrom(...CONFIG_KEYS),
        fc.oneof(
          fc.integer({min: 10_000, max: opts.maxString}).map((n) => JSON.stringify('x'.repeat(n))),
          fc.integer({min: 20, max: 400}).map((n) => '9'.repeat(n)),
          fc.integer({min: 20, max: 400}).map((n) => JSON.stringify(`${'9'.repeat(n)}h`)),
          fc.constantFrom('1e400', '-1e400', '.nan', '.inf', JSON.stringify('1e400h'), JSON.stringify('${NOPE}')),
        ),
      )
      .map(([key, v]) => ({what: `${key}: a huge value (${v.length} characters)`, text: yamlWith(key, v)})),
    fc
      .tuple(fc.constantFrom(...CONFIG_KEYS), fc.string({minLength: 1, maxLength: 30}))
      .map(([key, name]) => ({what: `unknown key under ${key}`, text: yamlWith(key, JSON.stringify({[name]: 1}))})),
    fc
      .tuple(fc.integer({min: 50, max: opts.maxDepth}), fc.constantFrom<[string, string]>(['[', ']'], ['{a: ', '}']))
      .map(([depth, [open, close]]) => ({
        what: `nested ${depth} deep`,
        text: `regions:\n  eu: ${nested(depth, open, close)}\n`,
      })),
    fc.string({unit: 'binary', maxLength: 400}).map((text) => ({what: 'random text', text})),
  )
}

/** Message of a config error: names a field (`config regions.eu.url (...)`) or a line of the file. */
function expectConfigError(e: unknown, file: string, what: string): void {
  if (!(e instanceof ConfigError)) fail(`${what}: threw ${errorText(e)}, not a config error`)
  if (e.exitCode !== 2) fail(`${what}: exit code ${e.exitCode}`)
  if (!e.message.includes(`${file}:line `) && !e.field) fail(`${what}: names neither a field nor a line: ${e.message}`)
  if (e.message.length > MAX_MESSAGE) fail(`${what}: a ${e.message.length}-character message`)
}

async function configParserRow(seed: number, runs: number, maxString: number): Promise<ReliabilityRow> {
  const file = 'hostile.yaml'
  const figures = {slowest: 0, rssGrowth: 0}
  const rss0 = process.memoryUsage().rss
  const row = await propertyRow(
    {
      case: `config YAML: alias bombs, values of the wrong type, huge values (strings up to ${maxString / 1e6} MB, 400-digit numbers), unknown keys, nesting up to 10,000 deep, random text`,
      command: 'config loading (every command)',
      criterion:
        'a valid configuration or a config error (exit 2) naming the field or line, within 2 s of CPU each and with the process growing by less than 512 MB',
    },
    seed,
    runs,
    hostileYaml({maxDepth: 10_000, maxString}),
    ({what, text}) => {
      const t0 = cpuMs()
      try {
        loadConfigFromText(text, file, {})
      } catch (e) {
        expectConfigError(e, file, what)
      }
      const ms = cpuMs() - t0
      figures.slowest = Math.max(figures.slowest, ms)
      figures.rssGrowth = Math.max(figures.rssGrowth, process.memoryUsage().rss - rss0)
      if (ms > 2000) fail(`${what}: took ${Math.round(ms)} ms`)
      if (process.memoryUsage().rss - rss0 > 512 * 2 ** 20)
        fail(`${what}: the process grew by ${Math.round((process.memoryUsage().rss - rss0) / 2 ** 20)} MB`)
    },
  )
  return {
    ...row,
    figures: {
      'slowest (CPU ms)': Math.round(figures.slowest),
      'largest RSS growth (MB)': Math.round(figures.rssGrowth / 2 ** 20),
    },
  }
}

// ---------------------------------------------------------------------------------------------------------
// End to end: the CLI on a filesystem store with hostile objects planted
// ---------------------------------------------------------------------------------------------------------

interface Plant {
  kind: 'revision link' | 'layer link' | 'tag link' | 'manifest'
  /** 'good' overwrites an object of a sample image; 'own' adds it to a repository of its own */
  target: 'good' | 'own'
  bytes: Buffer
  what: string
}

function plantArbitrary(opts: {huge: boolean}): fc.Arbitrary<Plant[]> {
  const link = fc.tuple(
    fc.constantFrom<Plant['kind']>('revision link', 'layer link', 'tag link'),
    fc.constantFrom<Plant['target']>('good', 'own'),
    linkContent(),
  )
  const plant = fc.oneof(
    link.map(([kind, target, bytes]): Plant => ({kind, target, bytes, what: `${kind} (${bytes.length} bytes)`})),
    manifestPayload(opts).map(({what, bytes}): Plant => ({kind: 'manifest', target: 'own', bytes, what})),
  )
  return fc.array(plant, {minLength: 1, maxLength: 4})
}

interface Store {
  dir: string
  config: string
  sample: SampleRegistry
  /** every blob a sample image uses: never a sweep candidate */
  good: Set<string>
  /** the pristine copy the trials start from (and the audit's second region) */
  pristine: string
  templateDb: string
  pg: PgServer
}

async function listBlobs(root: string): Promise<string[]> {
  const out: string[] = []
  const base = join(root, 'blobs', 'sha256')
  for (const fan of await readdir(base)) for (const h of await readdir(join(base, fan))) out.push(`sha256:${h}`)
  return out
}

async function prepareStore(dir: string): Promise<Store> {
  const pristine = join(dir, 'pristine')
  const sample = await writeSampleRegistry(new FilesystemDriver('pristine', pristine), pristine)
  const notGood = new Set([...sample.orphans.map((o) => o.digest), sample.inFlight])
  const good = new Set((await listBlobs(pristine)).filter((d) => !notGood.has(d)))
  const server = await startPostgres()
  const templateDb = await server.createDatabase()
  const migrated = await runCli(['db', 'migrate', 'up', '--database-url', templateDb, '--json'])
  if (migrated.code !== 0) {
    await server.stop()
    throw new Error(`db migrate up: ${migrated.code} ${migrated.stderr.slice(-500)}`)
  }
  return {dir, config: '', sample, good, pristine, templateDb, pg: server}
}

/** A fresh database for one trial, from the migrated template (a copy is much cheaper than migrating). */
async function trialDatabase(store: Store, name: string): Promise<string> {
  const admin = new pg.Client({connectionString: store.pg.adminUrl})
  await admin.connect()
  try {
    const template = new URL(store.templateDb).pathname.slice(1)
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`)
  } finally {
    await admin.end()
  }
  const url = new URL(store.templateDb)
  url.pathname = `/${name}`
  return url.toString()
}

/** Writes the plants into `root`; returns the keys that regops must name (those it cannot read). */
async function plantAll(root: string, store: Store, plants: Plant[]): Promise<{keys: string[]; mustName: string[]}> {
  const driver = new FilesystemDriver('eu', root)
  const nginx = store.sample.tags.find((t) => t.repository === 'library/nginx')!
  const keys: string[] = []
  const mustName: string[] = []
  for (const [i, p] of plants.entries()) {
    const repository = p.target === 'good' ? 'library/nginx' : `hostile/plant${i}`
    const someDigest = `sha256:${sha256(`plant ${i}`)}`
    let key: string
    if (p.kind === 'manifest') {
      const digest = `sha256:${sha256(p.bytes)}`
      await driver.write(pathFor({kind: 'blob-data', digest}), p.bytes)
      await driver.write(pathFor({kind: 'manifest-revision-link', repository, digest}), Buffer.from(digest))
      await driver.write(pathFor({kind: 'tag-current-link', repository, tag: 'v1'}), Buffer.from(digest))
      key = pathFor({kind: 'blob-data', digest})
      let unreadable = p.bytes.length > MAX_MANIFEST_SIZE
      try {
        parseManifest(p.bytes, digest, key)
      } catch {
        unreadable = true
      }
      if (unreadable) mustName.push(key)
    } else {
      key =
        p.kind === 'revision link'
          ? pathFor({
              kind: 'manifest-revision-link',
              repository,
              digest: p.target === 'good' ? nginx.digest : someDigest,
            })
          : p.kind === 'layer link'
            ? pathFor({kind: 'layer-link', repository, digest: someDigest})
            : pathFor({kind: 'tag-current-link', repository, tag: 'v1'})
      await driver.write(key, p.bytes)
      let unreadable = p.bytes.length > 1024
      try {
        parseLink(p.bytes, key)
      } catch {
        unreadable = true
      }
      // A layer link's content is read by nothing that lists (its path names the digest), so only the
      // revision and tag links regops reads must be named when unreadable.
      if (unreadable && p.kind !== 'layer link') mustName.push(key)
    }
    keys.push(key)
  }
  return {keys, mustName}
}

const STACK_LINE = /^\s+at .+:\d+:\d+\)?$/m

function expectNoCrash(run: CliRun, what: string, allowed: number[]): void {
  if (run.code === null) fail(`${what}: killed by ${run.signal}`)
  if (run.code === 70) fail(`${what}: internal error (exit 70): ${show(run.json?.error?.message ?? run.stderr)}`)
  if (STACK_LINE.test(run.stderr)) fail(`${what}: a stack trace on stderr: ${show(run.stderr.slice(0, 300))}`)
  if (!allowed.includes(run.code))
    fail(`${what}: exit ${run.code}, expected ${allowed.join(' or ')}: ${show(run.json?.error?.message ?? run.stderr)}`)
}

async function storeTrial(store: Store, seed: number, full: boolean): Promise<{planted: number; named: number}> {
  const [plants] = fc.sample(plantArbitrary({huge: full}), {seed, numRuns: 1})
  const dir = join(store.dir, `trial-${seed}`)
  const eu = join(dir, 'eu')
  await cp(store.pristine, eu, {recursive: true, preserveTimestamps: true})
  try {
    const {mustName} = await plantAll(eu, store, plants!)
    const config = join(dir, 'regops.yaml')
    await writeFile(
      config,
      `regions:\n  eu: {url: "file://${eu}"}\n  us: {url: "file://${store.pristine}"}\nprimary: eu\n`,
    )
    const db = await trialDatabase(store, `hostile_${seed}`)
    const report = join(dir, 'sweep.jsonl')
    const findings = join(dir, 'audit.jsonl')
    const common = ['--config', config, '--json', '--log-format', 'json']
    // The subset inspects two repositories (each CLI run costs a second of npm test); full scale all of them.
    const repositories = [...new Set(['library/nginx', ...plants!.map((_, i) => `hostile/plant${i}`)])].slice(
      0,
      full ? undefined : 2,
    )
    const [sweep, imported, audit, ...inspected] = await Promise.all([
      runCli(['sweep', 'blobs', ...common, '--dry-run', '--min-age', '1h', '--report', report]),
      runCli(['import', ...common, '--database-url', db]),
      runCli(['audit', 'regions', ...common, '--regions', 'eu,us', '--findings', findings]),
      ...repositories.map((r) => runCli(['inspect', 'repo', ...common, '--', r])),
    ])
    const what = `plants ${show(plants!.map((p) => `${p.target} ${p.what}`))}`
    expectNoCrash(sweep!, `sweep blobs (${what})`, [1, 3])
    expectNoCrash(imported!, `import (${what})`, [0, 1, 3])
    expectNoCrash(audit!, `audit regions (${what})`, [0, 1, 3])
    for (const [i, run] of inspected.entries()) expectNoCrash(run, `inspect repo ${repositories[i]} (${what})`, [0, 1])

    // Never a blob of a good image among the candidates; the planted orphans are still found.
    const candidates = (await readFile(report, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as {kind?: string; digest?: string})
      .filter((c) => c.kind === 'blob')
      .map((c) => c.digest!)
    const wrongly = candidates.filter((d) => store.good.has(d))
    if (wrongly.length > 0) fail(`sweep: blobs of good images are candidates: ${wrongly.join(', ')} (${what})`)
    const lost = store.sample.orphans.filter((o) => !candidates.includes(o.digest))
    if (lost.length > 0 && sweep!.json?.problemCount === 0)
      fail(`sweep: planted orphans not found and no problem reported (${what})`)

    // The rest of the import goes on: every sample tag is in the database.
    const client = new pg.Client({connectionString: db})
    await client.connect()
    try {
      const rows = await client.query<{n: number}>(
        `SELECT count(*)::int AS n FROM tags t JOIN repositories r ON r.id = t.repository_id WHERE r.path = ANY($1)`,
        [store.sample.repositories],
      )
      if (rows.rows[0]!.n < store.sample.tags.length)
        fail(`import: ${rows.rows[0]!.n} of the ${store.sample.tags.length} sample tags imported (${what})`)
    } finally {
      await client.end()
    }

    // Every object regops cannot read is named by its key somewhere an operator looks.
    const said = [sweep, imported, audit, ...inspected].map((r) => r!.stdout + r!.stderr).join('\n')
    const files = await Promise.all([report, findings].map((f) => readFile(f, 'utf8').catch(() => '')))
    const everything = said + files.join('\n')
    const unnamed = mustName.filter((k) => !everything.includes(k))
    if (unnamed.length > 0) fail(`no output names ${unnamed.join(', ')} (${what})`)
    return {planted: plants!.length, named: mustName.length}
  } finally {
    await rm(dir, {recursive: true, force: true})
    await dropDatabase(store, `hostile_${seed}`).catch(() => {})
  }
}

async function dropDatabase(store: Store, name: string): Promise<void> {
  const admin = new pg.Client({connectionString: store.pg.adminUrl})
  await admin.connect()
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  } finally {
    await admin.end()
  }
}

async function storeRow(store: Store, seed: number, trials: number, full: boolean): Promise<ReliabilityRow> {
  let planted = 0
  let named = 0
  const outcome = await runTrials(seed, trials, async (trialSeed) => {
    const r = await storeTrial(store, trialSeed, full)
    planted += r.planted
    named += r.named
  })
  return {
    case: `1 to 4 hostile link files and manifests planted in a sample store (random bytes, empty, huge, other algorithms, whitespace, garbage, wrong shape, 10,000 deep${full ? ', up to 100 MB' : ''}), over good images' links or in repositories of their own`,
    command: 'sweep blobs --dry-run; import; audit regions; inspect repo',
    criterion:
      'no crash (exit 70, stack trace) and the documented exit code; no blob of a good image is a sweep candidate; the planted orphans are still found; every sample tag is imported; every object regops cannot read is named by its key',
    ...outcome,
    figures: {'objects planted': planted, 'unreadable objects named': named},
  }
}

// ---------------------------------------------------------------------------------------------------------
// End to end: hostile names and digests on the command line
// ---------------------------------------------------------------------------------------------------------

async function snapshot(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, {withFileTypes: true})) {
      const p = join(d, entry.name)
      if (entry.isDirectory()) await walk(p)
      else out.set(p, (await stat(p)).mtimeMs)
    }
  }
  await walk(dir)
  return out
}

async function argumentsRow(store: Store, seed: number, runs: number): Promise<ReliabilityRow> {
  // A sandbox holding the store, the config and the working directory: a path that escaped the store
  // one level lands here, and any file written or touched in it is a failure.
  const sandbox = join(store.dir, 'arguments')
  const root = join(sandbox, 'store', 'docker', 'registry', 'v2')
  await cp(store.pristine, root, {recursive: true, preserveTimestamps: true})
  const config = join(sandbox, 'regops.yaml')
  await writeFile(config, `regions:\n  eu: {url: "file://${root}"}\nprimary: eu\n`)
  const digest = store.sample.tags[0]!.digest
  const common = ['--config', config, '--json']
  const invalidName = (s: string) =>
    !/^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/.test(s) || s.length > 255
  const invalidTag = (s: string) => !/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(s)
  const invalidDigest = (s: string) => !/^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/.test(s)
  // argv cannot carry NUL; the pure row covers it.
  const cases = fc.oneof(
    hostileName({nul: false, invalidFor: invalidName}).map((v) => ({
      what: 'inspect repo NAME',
      value: v,
      args: ['inspect', 'repo', ...common, '--', v],
    })),
    hostileName({nul: false, invalidFor: invalidName})
      .filter((v) => !v.includes('@') && !v.includes(':'))
      .map((v) => ({
        what: 'inspect manifest NAME:TAG',
        value: v,
        args: ['inspect', 'manifest', ...common, '--', `${v}:v1`],
      })),
    hostileName({nul: false, invalidFor: (s) => invalidTag(s) && !s.includes(':') && !s.includes('@')}).map((v) => ({
      what: 'repair tag REPO:TAG',
      value: v,
      args: ['repair', 'tag', ...common, `--to=${digest}`, '--', `library/nginx:${v}`],
    })),
    hostileName({nul: false, invalidFor: invalidDigest}).map((v) => ({
      what: 'inspect blob DIGEST',
      value: v,
      args: ['inspect', 'blob', ...common, '--', v],
    })),
    hostileName({nul: false, invalidFor: invalidDigest}).map((v) => ({
      what: 'repair tag --to DIGEST',
      value: v,
      args: ['repair', 'tag', ...common, `--to=${v}`, '--', 'library/nginx:latest'],
    })),
    hostileName({nul: false, invalidFor: invalidDigest}).map((v) => ({
      what: 'sweep restore --digest',
      value: v,
      args: ['sweep', 'restore', ...common, `--digest=${v}`],
    })),
    hostileName({nul: false, invalidFor: invalidName}).map((v) => ({
      what: 'inspect blob --repository',
      value: v,
      args: ['inspect', 'blob', ...common, `--repository=${v}`, '--', digest],
    })),
    // Durations past a century and sizes past exact integers: a cutoff that is no date stopped the sweep (exit 70).
    fc
      .oneof(
        fc
          .tuple(fc.integer({min: 13, max: 400}), fc.constantFrom('ms', 's', 'm', 'h', 'd', 'w'))
          .map(([n, unit]) => '9'.repeat(n) + unit),
        fc.constantFrom(
          '1e400h',
          '-5h',
          'Infinityh',
          'NaNh',
          '5',
          '99999999999999999999999d',
          '0x10h',
          '5h ; rm -rf /',
        ),
      )
      .map((v) => ({what: 'sweep blobs --min-age', value: v, args: ['sweep', 'blobs', ...common, `--min-age=${v}`]})),
    fc
      .oneof(
        fc
          .tuple(fc.integer({min: 17, max: 400}), fc.constantFrom('', 'b', 'kb', 'gib', 'pb'))
          .map(([n, unit]) => '9'.repeat(n) + unit),
        fc.constantFrom('1e400', '-1', 'lots', '5 zb'),
      )
      .map((v) => ({
        what: 'sweep blobs --max-bytes',
        value: v,
        args: ['sweep', 'blobs', ...common, `--max-bytes=${v}`],
      })),
  )
  const before = await snapshot(sandbox)
  const commands = new Set<string>()
  const row = await propertyRow(
    {
      case: "hostile repository names, tags and digests ('../', '%2e%2e', unicode, control characters, overlong, trailing and leading slashes, random strings), durations past a century and sizes past 2^53 as arguments and flags",
      command:
        'inspect repo|manifest|blob, inspect blob --repository, repair tag (REPO:TAG and --to), sweep restore --digest, sweep blobs --min-age|--max-bytes',
      criterion:
        'exit 2 with a message that shows the value (non-ASCII as ?), and no file written or changed in the sandbox that holds the store (where a path escaping the store would land)',
    },
    seed,
    runs,
    cases,
    async ({what, value, args}) => {
      commands.add(what)
      const run = await runCli(args, {cwd: sandbox, timeoutMs: 60_000})
      const message: string = run.json?.error?.message ?? ''
      if (run.code !== 2) fail(`${what} '${show(value)}': exit ${run.code}: ${show(message || run.stderr)}`)
      const shown = printable(value).slice(0, 40)
      if (!message.includes(shown))
        fail(`${what} '${show(value)}': the message does not show the value: ${show(message)}`)
      if (message.length > MAX_MESSAGE) fail(`${what}: a ${message.length}-character message`)
      const after = await snapshot(sandbox)
      const changed = [...after].filter(([p, m]) => before.get(p) !== m).map(([p]) => p)
      if (changed.length > 0) fail(`${what} '${show(value)}': wrote ${changed.join(', ')}`)
    },
    {shrink: false},
  )
  return {...row, figures: {'commands tried': commands.size}}
}

// ---------------------------------------------------------------------------------------------------------
// End to end: config validate on hostile files
// ---------------------------------------------------------------------------------------------------------

async function configCliRow(dir: string, seed: number, runs: number): Promise<ReliabilityRow> {
  let slowest = 0
  const row = await propertyRow(
    {
      case: 'config validate on hostile YAML files (alias bombs, wrong types, huge values, unknown keys, nesting up to 10,000 deep)',
      command: 'config validate',
      criterion:
        'exit 0 or exit 2 naming the field or the line, in under 30 s on a busy host (about 1 s quiet), in a process capped at a 256 MB heap',
    },
    seed,
    runs,
    hostileYaml({maxDepth: 10_000, maxString: 2_000_000}).filter(({text}) => !text.includes('\0')),
    async ({what, text}) => {
      const file = join(dir, 'hostile.yaml')
      await writeFile(file, text)
      const t0 = Date.now()
      const run = await runCli(['config', 'validate', '--config', file, '--json'], {
        env: {NODE_OPTIONS: '--max-old-space-size=256'},
        timeoutMs: 60_000,
      })
      const ms = Date.now() - t0
      slowest = Math.max(slowest, ms)
      if (run.code === 0) return
      const message: string = run.json?.error?.message ?? ''
      if (run.code !== 2) fail(`${what}: exit ${run.code}: ${show(message || run.stderr)}`)
      if (!/:line \d+\)/.test(message) && !/^config [^ ]+ \(/.test(message))
        fail(`${what}: names neither a field nor a line: ${show(message)}`)
      if (ms > 30_000) fail(`${what}: took ${ms} ms`)
    },
    {shrink: false},
  )
  return {...row, figures: {'slowest run (ms)': slowest}}
}

// ---------------------------------------------------------------------------------------------------------
// End to end: a registry that answers badly, for loadtest pull
// ---------------------------------------------------------------------------------------------------------

type Misbehaviour = 'bad-json' | 'short-body' | 'endless-redirect' | 'silent-token' | 'huge-length'

/** The error kinds each misbehaviour may be counted as (cut_off ends a pull the run stopped waiting for). */
const KINDS: Record<Misbehaviour, string[]> = {
  'bad-json': ['bad_manifest'],
  'short-body': ['length_mismatch', 'truncated_body'],
  'endless-redirect': ['too_many_redirects'],
  'silent-token': ['timeout', 'auth'],
  'huge-length': ['manifest_too_large', 'timeout', 'truncated_body', 'length_mismatch'],
}

interface HostileRegistry {
  url: string
  close(): Promise<void>
}

async function startHostileRegistry(garbage: Buffer): Promise<HostileRegistry> {
  const layer = Buffer.alloc(2048, 7)
  const layerDigest = `sha256:${sha256(layer)}`
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}')
  const configDigest = `sha256:${sha256(config)}`
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA.image,
    config: {mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: configDigest},
    layers: [{mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: layerDigest}],
  })
  const sockets = new Set<Socket>()
  let base = ''
  const server = http.createServer((req, res) => {
    const path = req.url ?? ''
    const raw = (head: string, body: Buffer | string) => {
      res.socket?.write(`HTTP/1.1 ${head}\r\n\r\n`)
      res.socket?.end(body)
    }
    if (path === '/v2/') return res.writeHead(200).end('{}')
    if (path === '/token') return // a token endpoint that never answers
    if (path === '/v2/good/manifests/v1')
      return res.writeHead(200, {'content-type': MEDIA.image, 'content-length': manifest.length}).end(manifest)
    if (path === '/v2/bad-json/manifests/v1')
      return res.writeHead(200, {'content-type': MEDIA.image, 'content-length': garbage.length}).end(garbage)
    if (path === '/v2/short-body/manifests/v1')
      return raw(
        `200 OK\r\nContent-Type: ${MEDIA.image}\r\nContent-Length: ${manifest.length + 500}`,
        manifest.slice(0, 40),
      )
    if (path.startsWith('/v2/endless-redirect/'))
      return res.writeHead(302, {location: `/v2/endless-redirect/manifests/v1?hop=${Math.random()}`}).end()
    if (path === '/v2/silent-token/manifests/v1')
      return res
        .writeHead(401, {
          'www-authenticate': `Bearer realm="${base}/token",service="hostile",scope="repository:silent-token:pull"`,
          'content-type': 'application/json',
        })
        .end('{"errors":[{"code":"UNAUTHORIZED"}]}')
    if (path === '/v2/huge-length/manifests/v1') {
      res.socket?.write(`HTTP/1.1 200 OK\r\nContent-Type: ${MEDIA.image}\r\nContent-Length: ${10 * 2 ** 30}\r\n\r\n`)
      res.socket?.write('{"schemaVersion":2,')
      return // and nothing more: 10 GB promised, 19 bytes sent
    }
    if (path.endsWith(`/blobs/${configDigest}`))
      return res.writeHead(200, {'content-length': config.length}).end(config)
    if (path.endsWith(`/blobs/${layerDigest}`)) return res.writeHead(200, {'content-length': layer.length}).end(layer)
    res.writeHead(404, {'content-type': 'application/json'}).end('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url: base,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

async function loadtestRow(seed: number, trials: number): Promise<ReliabilityRow> {
  const others: Misbehaviour[] = ['bad-json', 'short-body', 'endless-redirect', 'huge-length']
  let pulls = 0
  let slowestOverrun = 0
  let trapTrials = 0
  const outcome = await runTrials(seed, trials, async (trialSeed, index) => {
    // Every other trial adds the token trap. Once a repository answers with a Bearer challenge the client
    // authenticates every pull (a registry's auth is registry-wide), so in those trials nothing else need
    // pull: what counts is that the hang is counted and the run still ends on time.
    const trap = index % 2 === 1
    const [choice] = fc.sample(
      fc.record({
        misbehaviours: fc.subarray(others, {minLength: trap ? 0 : 1}),
        garbage: fc.oneof(
          fc.uint8Array({minLength: 1, maxLength: 500}).map((b) => Buffer.from(b)),
          fc.jsonValue({maxDepth: 3}).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
        ),
      }),
      {seed: trialSeed, numRuns: 1},
    )
    const misbehaviours: Misbehaviour[] = [...choice!.misbehaviours, ...(trap ? (['silent-token'] as const) : [])]
    if (trap) trapTrials++
    const registry = await startHostileRegistry(choice!.garbage)
    const durationMs = 1500
    const timeoutMs = 800
    const graceMs = 500
    try {
      const started = Date.now()
      const report = await runPullLoadtest({
        registry: {url: registry.url},
        images: ['good', ...misbehaviours].map((repository) => ({repository, reference: 'v1', weight: 1})),
        model: {kind: 'open', schedule: ArrivalSchedule.constant(30, durationMs), maxInFlight: 1000, rate: 30},
        zipf: 0,
        manifestsOnly: false,
        verify: true,
        parallelism: 3,
        platform: {os: 'linux', architecture: 'amd64'},
        pingEveryPull: true,
        thresholds: [],
        abortOnFail: false,
        timeoutMs,
        maxRedirects: 10,
        graceMs,
        loopbackOnly: true,
      })
      const took = Date.now() - started
      pulls += report.pulls.started
      const bound = durationMs + timeoutMs + graceMs
      slowestOverrun = Math.max(slowestOverrun, took - durationMs)
      const what = `misbehaviours ${misbehaviours.join(', ')}`
      // 3 s of slack for a loaded 2-core host; a run that waited on a silent peer would not end at all.
      if (took > bound + 3000) fail(`${what}: took ${took} ms, bound ${bound} ms`)
      const allowed = new Set(misbehaviours.flatMap((m) => KINDS[m]))
      const counted = Object.entries(report.errors).filter(([, n]) => n > 0)
      const stray = counted.filter(([kind]) => !allowed.has(kind))
      if (stray.length > 0) fail(`${what}: errors of an unexpected kind ${show(Object.fromEntries(stray))}`)
      const mustCount = trap ? (['silent-token'] as Misbehaviour[]) : misbehaviours
      for (const m of mustCount)
        if (!KINDS[m].some((k) => (report.errors[k] ?? 0) > 0))
          fail(`${what}: ${m} was never counted as ${KINDS[m].join(' or ')}: ${show(report.errors)}`)
      if (!trap && report.pulls.succeeded === 0) fail(`${what}: the good image never pulled`)
      const failed = Object.values(report.errors).reduce((a, b) => a + b, 0)
      if (report.pulls.failed !== failed) fail(`${what}: ${report.pulls.failed} failed pulls, ${failed} errors counted`)
    } finally {
      await registry.close()
    }
  })
  return {
    case: 'a registry answering with bad JSON, a body shorter than its Content-Length, endless redirects, a 10 GB Content-Length (a seeded subset per trial, next to a good image), and in every other trial a token endpoint that never answers',
    command: 'loadtest pull (1.5 s at 30 pulls/s, --timeout 800ms, --grace 500ms)',
    criterion:
      'every misbehaviour is counted as an error of its kind and nothing else, failed pulls equal the errors counted, the good image pulls (when no token hangs), and the run ends within its duration + timeout + grace (+3 s slack)',
    ...outcome,
    figures: {
      'pulls started': pulls,
      'trials with a token endpoint that never answers': trapTrials,
      'longest run past its duration (ms)': slowestOverrun,
    },
  }
}

// ---------------------------------------------------------------------------------------------------------

export const runHostile: Suite = async ({seed, scale, log}) => {
  const started = Date.now()
  const runs = RUNS[scale]
  const rows: ReliabilityRow[] = []
  let last = started
  const push = (row: ReliabilityRow) => {
    rows.push(row)
    log(`${row.command}: ${row.survived}/${row.trials} in ${((Date.now() - last) / 1000).toFixed(1)} s`)
    last = Date.now()
  }
  const dir = makeTempDir('hostile')
  // PostgreSQL boots and migrates in other processes while the parsers' properties run here.
  const preparing = prepareStore(dir)
  try {
    push(await linkParserRow(seed, runs.pure))
    push(await manifestParserRow(seed, runs.pure))
    push(await namesParserRow(seed, runs.pure))
    push(await configParserRow(seed, Math.ceil(runs.pure / 3), scale === 'full' ? 2_000_000 : 200_000))
    push(await loadtestRow(seed, runs.loadtest))
    const store = await preparing
    // Three CLI rows at once: a CLI run spends most of its second starting up, not on a core.
    const cliRows = await Promise.all([
      storeRow(store, seed, runs.store, scale === 'full'),
      argumentsRow(store, seed, runs.cli),
      configCliRow(dir, seed, Math.ceil(runs.cli / 2)),
    ])
    for (const row of cliRows) push(row)
  } finally {
    await (await preparing.catch(() => undefined))?.pg.stop()
    await removeTempDir(dir)
  }
  return {
    suite: 'hostile',
    title: 'Hostile input',
    description:
      'Random and adversarial input wherever regops reads what it does not control, generated by fast-check from the seed (a failure names the shrunk counterexample). The parsers (link files, manifests, names, tags, digests, config YAML) are called directly, hundreds of times; the end-to-end rows run the built CLI on a filesystem copy of the quickstart sample with hostile objects planted, with hostile arguments in a sandbox whose every file is checked afterwards, and on hostile config files; the load test pulls from a loopback registry that misbehaves.',
    seed,
    scale,
    seconds: (Date.now() - started) / 1000,
    rows,
  }
}
