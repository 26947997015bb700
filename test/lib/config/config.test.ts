import {test} from 'node:test'
import assert from 'node:assert/strict'
import {loadConfigFromText, redactedConfig} from '../../../src/lib/config/config.js'
import {ConfigError} from '../../../src/lib/errors.js'
import {redact} from '../../../src/lib/output/redact.js'
import {formatDurationSpec, parseDuration, parseSize} from '../../../src/lib/config/duration.js'

const GOOD = `
database:
  url: postgres://regops:db-Pa55word@127.0.0.1:5432/registry
regions:
  eu: { url: s3://registry-eu/docker/registry/v2, region: eu-west-1, endpoint: http://127.0.0.1:9000, accessKeyId: AKIAEXAMPLEKEY1, secretAccessKey: "\${EU_SECRET}", checksums: when_required }
  lab: { url: file:///var/lib/registry/docker/registry/v2 }
primary: eu
registry:
  url: http://127.0.0.1:5000/
  username: ci-bot
  password: \${REGISTRY_PASSWORD}
sweep: { minAge: 2h, quarantine: _regops/q, holdFor: 3d }
`

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${error}`)
    return error
  }
  assert.fail('expected a ConfigError')
}

test('a full config parses, expands ${VAR}, and parses regions', () => {
  const env = {EU_SECRET: 'eu-SECRET-value-123', REGISTRY_PASSWORD: 'reg-PASSWORD-456'}
  const config = loadConfigFromText(GOOD, 'regops.yaml', env)
  assert.equal(config.primary, 'eu')
  const eu = config.regions.eu
  assert.equal(eu.kind, 's3')
  if (eu.kind === 's3') {
    assert.equal(eu.bucket, 'registry-eu')
    assert.equal(eu.prefix, 'docker/registry/v2')
    assert.equal(eu.forcePathStyle, true)
    assert.equal(eu.checksums, 'when_required')
    assert.equal(eu.secretAccessKey, 'eu-SECRET-value-123')
  }
  const lab = config.regions.lab
  assert.equal(lab.kind === 'file' && lab.root, '/var/lib/registry/docker/registry/v2')
  assert.equal(config.registry?.url, 'http://127.0.0.1:5000')
  assert.equal(config.registry?.password, 'reg-PASSWORD-456')
  assert.equal(config.sweep.minAgeMs, 2 * 3600_000)
  assert.equal(config.sweep.holdForMs, 3 * 86400_000)
})

test('the redacted config and redact() never show a secret', () => {
  const env = {EU_SECRET: 'eu-SECRET-value-123', REGISTRY_PASSWORD: 'reg-PASSWORD-456'}
  const config = loadConfigFromText(GOOD, 'regops.yaml', env)
  const shown = JSON.stringify(redactedConfig(config))
  for (const secret of ['eu-SECRET-value-123', 'reg-PASSWORD-456', 'db-Pa55word', 'AKIAEXAMPLEKEY1']) {
    assert.ok(!shown.includes(secret), `${secret} leaked: ${shown}`)
    assert.equal(redact(`error talking to x with ${secret}!`), 'error talking to x with ***!')
  }
  assert.match(shown, /postgres:\/\/regops:\*\*\*@127\.0\.0\.1/)
})

test('environment overrides the file, flags override the environment', () => {
  const env = {EU_SECRET: 's3cr3t-x', REGISTRY_PASSWORD: 'p4ss-x', DATABASE_URL: 'postgres://env@h/db'}
  assert.equal(loadConfigFromText(GOOD, 'f', env).database?.url, 'postgres://env@h/db')
  assert.equal(
    loadConfigFromText(GOOD, 'f', env, {databaseUrl: 'postgres://flag@h/db'}).database?.url,
    'postgres://flag@h/db',
  )
  assert.equal(loadConfigFromText(GOOD, 'f', {...env, REGOPS_PRIMARY: 'lab'}).primary, 'lab')
})

test('bad YAML names the file and line', () => {
  const e = errorOf(() => loadConfigFromText('regions:\n  eu: {url: s3://b\n  lab: [\n', 'bad.yaml', {}))
  assert.equal(e.file, 'bad.yaml')
  assert.ok(e.line && e.line >= 2, `line ${e.line}`)
  assert.match(e.message, /bad\.yaml:line \d+/)
  assert.equal(e.exitCode, 2)
})

test('an unknown primary region names the field and its line', () => {
  const text = 'regions:\n  eu: {url: "s3://b/p"}\nprimary: us\n'
  const e = errorOf(() => loadConfigFromText(text, 'p.yaml', {}))
  assert.equal(e.field, 'primary')
  assert.equal(e.line, 3)
  assert.match(e.message, /unknown region 'us'.*regions: eu/)
})

test('a bad URL names the region field and line', () => {
  const text = 'regions:\n  eu:\n    region: eu-west-1\n    url: "ftp://nope/x"\n'
  const e = errorOf(() => loadConfigFromText(text, 'u.yaml', {}))
  assert.equal(e.field, 'regions.eu.url')
  assert.equal(e.line, 4)
  assert.match(e.message, /unsupported scheme 'ftp:'/)
  const e2 = errorOf(() => loadConfigFromText('registry:\n  url: "not a url"\n', 'u.yaml', {}))
  assert.equal(e2.field, 'registry.url')
  assert.equal(e2.line, 2)
  const e3 = errorOf(() => loadConfigFromText('database:\n  url: mysql://x\n', 'u.yaml', {}))
  assert.equal(e3.field, 'database.url')
  assert.equal(e3.line, 2)
})

test('unknown keys, unset variables and bad durations are named', () => {
  assert.equal(errorOf(() => loadConfigFromText('regoins: {}\n', 'k.yaml', {})).field, 'regoins')
  const unset = errorOf(() =>
    loadConfigFromText('registry:\n  url: http://x\n  password: ${NOPE_NOT_SET}\n', 'k.yaml', {}),
  )
  assert.equal(unset.field, 'registry.password')
  assert.equal(unset.line, 3)
  assert.match(unset.message, /NOPE_NOT_SET is not set/)
  const dur = errorOf(() => loadConfigFromText('sweep:\n  minAge: soon\n', 'k.yaml', {}))
  assert.equal(dur.field, 'sweep.minAge')
  assert.equal(dur.line, 2)
})

test('durations and sizes', () => {
  assert.equal(parseDuration('1h30m'), 5_400_000)
  assert.equal(parseDuration('0'), 0)
  assert.equal(parseDuration('7d'), 604_800_000)
  assert.throws(() => parseDuration('3 days'))
  assert.equal(parseSize('2GiB'), 2 * 1024 ** 3)
  assert.equal(parseSize('10'), 10)
  assert.throws(() => parseSize('lots'))
})

test('a duration needs a unit; the spelling echoed back is exact', () => {
  assert.throws(() => parseDuration('48', '--min-age'), /--min-age '48': a duration needs a unit: say 48h or 48s/)
  assert.throws(() => parseDuration('1.5'), /say 1.5h or 1.5s/)
  assert.equal(parseDuration('48s'), 48_000)
  assert.equal(formatDurationSpec(48 * 3_600_000), '2d')
  assert.equal(formatDurationSpec(5_400_000), '1h30m')
  assert.equal(formatDurationSpec(1_500), '1s500ms')
  assert.equal(formatDurationSpec(0), '0s')
  for (const text of ['90s', '36h', '7d', '1h30m'])
    assert.equal(parseDuration(formatDurationSpec(parseDuration(text))), parseDuration(text))
})
