// `npm run reliability`: every reliability suite at full scale, then docs/reliability.md from their reports.
//   --suite NAME   run only this suite (repeatable); the others' last reports (bench/out) stay in the table
//   --seed N       base seed (default 1); a failed trial's seed replays it
//   --scale subset run the npm test sizes instead (quick check of the script itself)
//   --render       run nothing: rebuild docs/reliability.md from the reports in bench/out
// Each suite's report is kept as bench/out/reliability-<suite>.json; the table is rebuilt from all of them.
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {cpus, totalmem} from 'node:os'
import {parseArgs} from 'node:util'
import {execFileSync} from 'node:child_process'
import {renderReliabilityMarkdown, type Scale, type Suite, type SuiteReport} from '../test/reliability/suite.js'

// Each suite module registers here under its report's name (the order is the table's order).
const SUITES: Record<string, () => Promise<Suite>> = {
  crash: async () => (await import('../test/reliability/crash.js')).runCrash,
  'crash-repair': async () => (await import('../test/reliability/crash-repair.js')).runCrashRepair,
  faults: async () => (await import('../test/reliability/faults.js')).runFaults,
  hostile: async () => (await import('../test/reliability/hostile.js')).runHostile,
  soak: async () => (await import('../test/reliability/soak.js')).runSoak,
}

const {values} = parseArgs({
  options: {
    suite: {type: 'string', multiple: true},
    seed: {type: 'string', default: '1'},
    scale: {type: 'string', default: 'full'},
    render: {type: 'boolean', default: false},
  },
})
const chosen = values.render ? [] : (values.suite ?? Object.keys(SUITES))
for (const name of chosen) {
  if (!SUITES[name]) {
    process.stderr.write(`no reliability suite named ${name}; there are: ${Object.keys(SUITES).join(', ')}\n`)
    process.exit(2)
  }
}
const scale = values.scale as Scale
const seed = Number(values.seed)
await mkdir('bench/out', {recursive: true})
let failedTrials = 0
for (const name of chosen) {
  const suite = await SUITES[name]!()
  const log = (line: string): void => void process.stderr.write(`[${name}] ${line}\n`)
  const started = Date.now()
  log(`start: seed ${seed}, ${scale} scale`)
  const report = await suite({seed, scale, log})
  for (const row of report.rows) failedTrials += row.trials - row.survived
  report.provenance = `ran ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC at commit ${commitOfWorkTree()}`
  await writeFile(`bench/out/reliability-${name}.json`, JSON.stringify(report, null, 2) + '\n')
  log(`done in ${Math.round((Date.now() - started) / 1000)} s`)
}
const reports: SuiteReport[] = []
for (const name of Object.keys(SUITES)) {
  try {
    reports.push(JSON.parse(await readFile(`bench/out/reliability-${name}.json`, 'utf8')) as SuiteReport)
  } catch {
    // a suite never run on this machine has no row yet
  }
}
if (scale === 'full') {
  const markdown = renderReliabilityMarkdown(reports, {
    date: new Date().toISOString().slice(0, 10),
    command: 'npm run reliability',
    machine: `${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.versions.node}`,
  })
  await writeFile('docs/reliability.md', markdown)
  process.stderr.write('wrote docs/reliability.md\n')
}
process.exit(failedTrials > 0 ? 1 : 0)

/** The commit the suites ran at, marked when the work tree differs from it. */
function commitOfWorkTree(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {encoding: 'utf8'}).trim()
    // what the suites run: an edited README does not make a run's figures doubtful
    const dirty = execFileSync(
      'git',
      [
        'status',
        '--porcelain',
        '--untracked-files=no',
        '--',
        'src',
        'test',
        'scripts',
        'migrations',
        'bin',
        'package.json',
      ],
      {encoding: 'utf8'},
    ).trim()
    return dirty ? `${commit} (with uncommitted changes)` : commit
  } catch {
    return 'unknown (not a git work tree)'
  }
}
