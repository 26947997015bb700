// Every command of docs/runbooks/ runs against a test bed, as the runbooks write it: each runbook's `sh`
// blocks go through bash with `regops` being the built CLI, the variables of its first block set to the
// test bed's values, and each command's exit code checked against the `# exit` comment at the end of its
// line. A renamed flag, a changed exit code or a JSON field a runbook reads with jq breaks this test.
import {after, before, describe, test} from 'node:test'
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {sharedPostgres} from '../helpers/postgres.js'
import {startRegistry, type RegistryServer} from '../helpers/registry.js'
import {BIN} from '../helpers/cli.js'
import {FilesystemDriver} from '../../src/lib/storage/filesystem.js'
import {writeSampleRegistry, ageTree} from '../../src/lib/quickstart/sample.js'

const RUNBOOKS = fileURLToPath(new URL('../../docs/runbooks/', import.meta.url))
const V2 = join('docker', 'registry', 'v2')
const DAY = 86_400_000

interface Command {
  line: number
  text: string
  /** the exit codes the runbook promises; undefined for a line without `# exit` (a jq, an assignment) */
  exits?: number[]
}

interface Runbook {
  file: string
  variables: Map<string, string>
  commands: Command[]
}

/** The `sh` blocks of a runbook: the first one sets its variables, the others are its commands. */
function parseRunbook(file: string, text: string): Runbook {
  const blocks: Array<{start: number; lines: string[]}> = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== '```sh') continue
    const start = i + 2
    const body: string[] = []
    for (i++; i < lines.length && lines[i].trim() !== '```'; i++) body.push(lines[i])
    blocks.push({start, lines: body})
  }
  assert.ok(blocks.length >= 2, `${file}: a block of variables and at least one block of commands`)
  const variables = new Map<string, string>()
  for (const line of blocks[0].lines) {
    const m = /^([A-Z_]+)=(\S+)$/.exec(line.trim())
    assert.ok(m, `${file}: the first sh block only sets variables (NAME=value), not '${line}'`)
    variables.set(m[1], m[2])
  }
  const commands: Command[] = []
  for (const block of blocks.slice(1))
    block.lines.forEach((raw, k) => {
      if (!raw.trim()) return
      const m = /^(.*?)\s+# exit ([\d,]+)\s*$/.exec(raw)
      commands.push({
        line: block.start + k,
        text: m ? m[1] : raw,
        exits: m ? m[2].split(',').map(Number) : undefined,
      })
    })
  assert.ok(
    commands.some((c) => c.exits && /^\s*regops /.test(c.text)),
    `${file}: at least one regops command with its exit code`,
  )
  for (const c of commands)
    if (/^\s*regops /.test(c.text)) assert.ok(c.exits, `${file}:${c.line}: a regops command states its exit code`)
  return {file, variables, commands}
}

/**
 * The runbook as one bash script: stop at the first command whose exit code is not one the runbook
 * promises, and say which line and what it printed.
 */
function scriptOf(runbook: Runbook, values: Record<string, string>): string {
  const out = ['set -u -o pipefail', `regops() { "${process.execPath}" "${BIN}" "$@"; }`]
  for (const name of runbook.variables.keys()) {
    assert.ok(name in values, `${runbook.file}: the test bed has no value for ${name}`)
    out.push(`${name}=${JSON.stringify(values[name])}`)
  }
  for (const c of runbook.commands) {
    const where = JSON.stringify(`${runbook.file}:${c.line}: ${c.text.trim()}`)
    out.push(`echo "+ " ${where} >&2`)
    if (!c.exits) {
      out.push(`${c.text} || { echo "FAILED (exit $?) ${where.slice(1, -1)}" >&2; exit 90; }`)
      continue
    }
    out.push(
      `${c.text}`,
      `rc=$?; case ",${c.exits.join(',')}," in *",$rc,"*) ;; *) echo "EXIT $rc, the runbook says ${c.exits.join(' or ')}: ${where.slice(1, -1)}" >&2; exit 91;; esac`,
    )
  }
  return out.join('\n') + '\n'
}

function bash(script: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{code: number | null; output: string}> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', script], {cwd, env, stdio: ['ignore', 'pipe', 'pipe']})
    let output = ''
    child.stdout.on('data', (d) => (output += d))
    child.stderr.on('data', (d) => (output += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, output})
    })
  })
}

describe('docs/runbooks: every command, as written, against a test bed', () => {
  let dir: string
  let work: string
  let registry: RegistryServer
  let env: NodeJS.ProcessEnv
  const values: Record<string, string> = {}

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'regops-runbooks-'))
    work = join(dir, 'work')
    await mkdir(work)
    // eu: the sample registry (orphans older than a day, an upload in flight), served by docker-registry
    const euRoot = join(dir, 'eu', V2)
    const sample = await writeSampleRegistry(new FilesystemDriver('eu', euRoot), euRoot)
    registry = await startRegistry({storage: {kind: 'filesystem', root: join(dir, 'eu')}})
    // us: a replica that lost a layer of library/nginx:1.25 (its own layer, not the shared base)
    const nginx = sample.tags.find((t) => t.repository === 'library/nginx' && t.tag === '1.25')!
    const blobPath = (root: string, digest: string) => {
      const hex = digest.slice('sha256:'.length)
      return join(root, 'blobs', 'sha256', hex.slice(0, 2), hex)
    }
    const manifest = JSON.parse(await readFile(join(blobPath(euRoot, nginx.digest), 'data'), 'utf8'))
    const lost: string = manifest.layers.at(-1).digest
    await cp(join(dir, 'eu'), join(dir, 'us'), {recursive: true, preserveTimestamps: true})
    await rm(blobPath(join(dir, 'us', V2), lost), {recursive: true})
    await ageTree(join(dir, 'us', V2, 'blobs'), new Date(Date.now() - 3 * DAY))

    const databaseUrl = await (await sharedPostgres()).createDatabase()
    const config = join(dir, 'regops.yaml')
    await writeFile(
      config,
      [
        `database: {url: "${databaseUrl}"}`,
        'regions:',
        `  eu: {url: "file://${euRoot}"}`,
        `  us: {url: "file://${join(dir, 'us', V2)}"}`,
        'primary: eu',
        `registry: {url: "${registry.url}", cache: none}`,
        '',
      ].join('\n'),
    )
    env = {...process.env, REGOPS_CONFIG: config, REGOPS_LOG_LEVEL: 'warn'}
    for (const name of ['DATABASE_URL', 'REGOPS_DATABASE_URL', 'REGOPS_PRIMARY', 'REGOPS_REGISTRY_URL'])
      delete env[name]
    const prepare = await bash(
      `set -e; node "${BIN}" db migrate up --json >/dev/null; node "${BIN}" import --region eu --json >/dev/null`,
      work,
      env,
    )
    assert.equal(prepare.code, 0, prepare.output)
    Object.assign(values, {
      REGION: 'eu',
      REPO: 'library/nginx',
      DIGEST: lost,
      HEALTHY: 'eu',
      REGISTRY: registry.url,
      IMAGE: 'library/nginx:1.25',
    })
  })

  after(async () => {
    await registry?.stop()
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  async function run(file: string, overrides: Record<string, string> = {}): Promise<void> {
    const runbook = parseRunbook(file, await readFile(join(RUNBOOKS, file), 'utf8'))
    const result = await bash(scriptOf(runbook, {...values, ...overrides}), work, env)
    assert.equal(result.code, 0, result.output.slice(-6000))
  }

  test('every runbook is listed in the index, and every listed one exists', async () => {
    const files = (await readdir(RUNBOOKS)).filter((f) => f.endsWith('.md') && f !== 'README.md').sort()
    const index = await readFile(join(RUNBOOKS, 'README.md'), 'utf8')
    const listed = [...index.matchAll(/\]\(([\w-]+\.md)\)/g)].map((m) => m[1]).sort()
    assert.deepEqual(listed, files)
  })

  test('disk usage is climbing: doctor, usage, dry-run, quarantine, uploads, purge', async () => {
    await run('disk-usage.md')
    const quarantine = JSON.parse(await readFile(join(work, 'quarantine.json'), 'utf8'))
    assert.ok(quarantine.acted.quarantined > 0, 'the runbook quarantined the orphans')
    values.QUARANTINE_JOB = String(quarantine.jobId)
  })

  test('undo a sweep: the quarantine of the sweep above is restored', async () => {
    assert.ok(values.QUARANTINE_JOB, 'runs after the disk-usage runbook')
    await run('undo-sweep.md', {JOB: values.QUARANTINE_JOB})
  })

  test('a region serves 404: the lost layer is found, repaired from eu, and the re-audit is clean', async () => {
    await run('region-404.md', {REGION: 'us'})
    const blob = join(dir, 'us', V2, 'blobs', 'sha256', values.DIGEST.slice(7, 9), values.DIGEST.slice(7), 'data')
    assert.ok((await readFile(blob)).length > 0, 'the repair copied the layer back into us')
  })

  test('plan, approve, apply: a plan made, reviewed and applied with quarantine', async () => {
    // us keeps its own orphans (the quarantine above was eu's): plan and apply them there.
    await run('plan-apply.md', {REGION: 'us'})
    const applied = JSON.parse(await readFile(join(work, 'apply.json'), 'utf8'))
    assert.ok(applied.acted.quarantined > 0, JSON.stringify(applied.acted))
  })
  test('a job was killed: an interrupted quarantine sweep resumes to its end', async () => {
    // An acting sweep on us stopped by its time box at once: a real interrupted job, resumable.
    const stopped = await bash(
      `node "${BIN}" sweep blobs --region us --quarantine --max-deletes 100 --max-duration 1ms --json`,
      work,
      env,
    )
    assert.equal(stopped.code, 3, stopped.output)
    const jobId = JSON.parse(stopped.output.slice(stopped.output.indexOf('{'))).error?.details?.jobId
    assert.ok(jobId, stopped.output)
    await run('resume-job.md', {JOB: String(jobId), REGION: 'us'})
  })

  test('before a launch: a smoke run, two shards and their merge, against docker-registry', async () => {
    await run('before-launch.md')
  })
})
