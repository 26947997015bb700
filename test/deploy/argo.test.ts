// Every regops invocation in deploy/ (Argo WorkflowTemplates and CronWorkflows, the Kubernetes Job) is
// checked against the real command definitions of the built CLI: the command exists, every flag exists and
// every value parses with the flag's own parser (options, integers, durations, shards, windows). Argo
// placeholders take the value the YAML gives them (a workflow parameter, a caller's argument, a cron's
// override). Renaming a flag, or mistyping one in a workflow, fails this test.
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {readdirSync, readFileSync, statSync} from 'node:fs'
import {join, relative} from 'node:path'
import {fileURLToPath} from 'node:url'
import {parseAllDocuments} from 'yaml'
import {Config, Flags, Parser, type Command} from '@oclif/core'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const DEPLOY = join(ROOT, 'deploy')

/** Argo variables that are not parameters, with a value of their type. */
const ARGO_VARIABLES: Record<string, string> = {
  'workflow.name': 'regops-sweep-blobs-x7k2p',
  'workflow.uid': '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0',
  item: '0',
}

type Node = Record<string, unknown>
interface Invocation {
  file: string
  where: string
  argv: string[]
  /** the parameters its placeholders resolve from */
  params: Map<string, string>
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return yamlFiles(path)
    return /\.ya?ml$/.test(name) ? [path] : []
  })
}

function walk(node: unknown, visit: (node: Node, path: string) => void, path = ''): void {
  if (Array.isArray(node)) node.forEach((child, i) => walk(child, visit, `${path}[${i}]`))
  else if (node && typeof node === 'object') {
    visit(node as Node, path)
    for (const [key, child] of Object.entries(node)) walk(child, visit, path ? `${path}.${key}` : key)
  }
}

/**
 * The commands of a script as sh splits them here: quotes, backslash-newline, and ; | & and newline between
 * commands. A redirection (> file, 2> file) is not an argument: it is dropped with its target.
 */
export function shellCommands(source: string): string[][] {
  const commands: string[][] = []
  let words: string[] = []
  let word: string | undefined
  const endWord = () => {
    if (word !== undefined) words.push(word)
    word = undefined
  }
  for (let i = 0; i < source.length; i++) {
    const c = source[i]
    if (c === '\\' && source[i + 1] === '\n') i++
    else if (c === "'" || c === '"') {
      const end = source.indexOf(c, i + 1)
      word = (word ?? '') + source.slice(i + 1, end)
      i = end
    } else if (c === ' ' || c === '\t') endWord()
    else if (c === '\n' || c === ';' || c === '|' || c === '&') {
      endWord()
      if (words.length > 0) commands.push(words)
      words = []
    } else if (c === '>' || c === '<') {
      if (word !== undefined && /^\d$/.test(word)) word = undefined
      endWord()
      while (source[i + 1] === '>' || source[i + 1] === ' ') i++
      while (i + 1 < source.length && !/[\s;|&]/.test(source[i + 1])) i++
    } else word = (word ?? '') + c
  }
  endWord()
  if (words.length > 0) commands.push(words)
  return commands
}

function parametersOf(list: unknown): Array<[string, string]> {
  if (!Array.isArray(list)) return []
  return list
    .filter((p): p is Node => Boolean(p) && typeof p === 'object' && typeof (p as Node).name === 'string')
    .filter((p) => p.value !== undefined || p.default !== undefined)
    .map((p) => [p.name as string, String(p.value ?? p.default)])
}

/** Every regops invocation in one YAML document, with the parameters its placeholders may take. */
function invocationsOf(file: string, doc: Node): Invocation[] {
  const found: Invocation[] = []
  const params = new Map<string, string>()
  // workflow parameters; then any caller's argument for a template input (the same name in this file)
  walk(doc, (node, path) => {
    if (path.endsWith('spec.arguments') || path.endsWith('workflowSpec.arguments'))
      for (const [name, value] of parametersOf(node.parameters)) params.set(`workflow.parameters.${name}`, value)
  })
  walk(doc, (node) => {
    if (node.arguments && typeof node.arguments === 'object')
      for (const [name, value] of parametersOf((node.arguments as Node).parameters))
        if (!params.has(`inputs.parameters.${name}`)) params.set(`inputs.parameters.${name}`, value)
    if (node.inputs && typeof node.inputs === 'object')
      for (const [name, value] of parametersOf((node.inputs as Node).parameters))
        params.set(`inputs.parameters.${name}`, value)
  })
  walk(doc, (node, path) => {
    const command = Array.isArray(node.command) ? node.command.map(String) : undefined
    const args = Array.isArray(node.args) ? node.args.map(String) : undefined
    const shell = command?.[0] && /(^|\/)(ba)?sh$/.test(command[0])
    let scripts: string[] = []
    if (typeof node.source === 'string' && shell) scripts = [node.source]
    else if (shell && command!.includes('-c'))
      scripts = [...command!.slice(command!.indexOf('-c') + 1), ...(args ?? [])].slice(0, 1)
    for (const script of scripts)
      for (const words of shellCommands(script)) {
        const start = words[0] === 'exec' ? 1 : 0
        if (words[start] === 'regops') found.push({file, where: path, argv: words.slice(start + 1), params})
      }
    // the image's entrypoint is regops: a container without a command runs its args as regops'
    if (typeof node.image === 'string' && /regops/.test(node.image) && !command && args)
      found.push({file, where: path, argv: args, params})
    if (command?.[0] === 'regops') found.push({file, where: path, argv: [...command.slice(1), ...(args ?? [])], params})
  })
  return found
}

/** Replaces each {{…}} with the value the YAML gives it; one it gives none is an error in the YAML. */
function substitute(word: string, params: Map<string, string>, depth = 0): string {
  return word.replace(/\{\{\s*([^}\s]+)\s*\}\}/g, (_, name: string) => {
    const value = params.get(name) ?? ARGO_VARIABLES[name]
    if (value === undefined) throw new Error(`no value for {{${name}}}: give the parameter a value or a default`)
    return depth < 5 ? substitute(value, params, depth + 1) : value
  })
}

interface Checked {
  ok: boolean
  message: string
}

async function checkInvocation(config: Config, argv: string[]): Promise<Checked> {
  // the command: the longest run of leading words that names one (topics are separated by spaces)
  const leading = argv.findIndex((w) => w.startsWith('-'))
  const words = leading === -1 ? argv : argv.slice(0, leading)
  let length = words.length
  while (length > 0 && !config.findCommand(words.slice(0, length).join(':'))) length--
  const id = words.slice(0, length).join(':')
  let rest = argv.slice(length)
  if (!id) {
    return {ok: false, message: `no regops command '${words.slice(0, 2).join(' ')}'`}
  }
  const command = (await config.findCommand(id)!.load()) as typeof Command & {baseFlags?: object}
  const notes: string[] = []
  try {
    await Parser.parse(rest, {
      flags: {...command.baseFlags, ...command.flags, json: Flags.boolean()},
      args: command.args ?? {},
      strict: command.strict ?? true,
      context: undefined,
    } as Parameters<typeof Parser.parse>[1])
    return {ok: true, message: notes.join('; ')}
  } catch (error) {
    return {ok: false, message: `regops ${id.replaceAll(':', ' ')}: ${(error as Error).message.split('\n').join(' ')}`}
  }
}

async function loadConfig(): Promise<Config> {
  return Config.load(ROOT)
}

test('every regops invocation under deploy/ names a real command, real flags and values that parse', async (t) => {
  const config = await loadConfig()
  const files = yamlFiles(DEPLOY)
  assert.ok(files.length >= 7, `YAML files under deploy/: ${files.length}`)
  const templates = new Map<string, Node>()
  const docs: Array<{file: string; doc: Node}> = []
  for (const file of files) {
    for (const parsed of parseAllDocuments(readFileSync(file, 'utf8'))) {
      assert.deepEqual(parsed.errors, [], `${relative(ROOT, file)} parses as YAML`)
      const doc = parsed.toJS({maxAliasCount: 100}) as Node
      if (!doc) continue
      docs.push({file, doc})
      if (doc.kind === 'WorkflowTemplate') templates.set((doc.metadata as Node).name as string, doc)
    }
  }
  const invocations: Invocation[] = []
  for (const {file, doc} of docs) {
    invocations.push(...invocationsOf(relative(ROOT, file), doc))
    // a CronWorkflow runs a template with its own parameter values: check the template's invocations with them
    const ref = ((doc.spec as Node)?.workflowSpec as Node)?.workflowTemplateRef as Node | undefined
    if (doc.kind === 'CronWorkflow' && ref) {
      const template = templates.get(ref.name as string)
      assert.ok(template, `${relative(ROOT, file)}: no WorkflowTemplate ${String(ref.name)} under deploy/`)
      const overrides = parametersOf((((doc.spec as Node).workflowSpec as Node).arguments as Node)?.parameters)
      for (const [name] of overrides) {
        const declared = parametersOf(((template!.spec as Node).arguments as Node)?.parameters).map(([n]) => n)
        assert.ok(declared.includes(name), `${relative(ROOT, file)}: the template has no parameter '${name}'`)
      }
      for (const invocation of invocationsOf(relative(ROOT, file), template!)) {
        const params = new Map(invocation.params)
        for (const [name, value] of overrides) params.set(`workflow.parameters.${name}`, value)
        invocations.push({...invocation, where: `${ref.name as string} ${invocation.where}`, params})
      }
    }
  }
  assert.ok(invocations.length >= 14, `regops invocations found: ${invocations.length}`)
  const failures: string[] = []
  for (const invocation of invocations) {
    const label = `${invocation.file} ${invocation.where}`
    let argv: string[]
    try {
      argv = invocation.argv.map((word) => substitute(word, invocation.params))
    } catch (error) {
      failures.push(`${label}: ${(error as Error).message}`)
      continue
    }
    const checked = await checkInvocation(config, argv)
    if (!checked.ok) failures.push(`${label}: ${checked.message}\n    regops ${argv.join(' ')}`)
    else if (checked.message) t.diagnostic(`${label}: ${checked.message}`)
  }
  assert.deepEqual(failures, [], failures.join('\n'))
})

test('the checker refuses a renamed flag, a bad value, an unknown command and an unresolved placeholder', async () => {
  const config = await loadConfig()
  const check = (line: string) => checkInvocation(config, shellCommands(line)[0].slice(1))
  assert.equal((await check('regops sweep blobs --shard 1/4 --job-key k --max-duration 4h')).ok, true)
  assert.match((await check('regops sweep blobs --max-duraton 4h')).message, /Nonexistent flag: --max-duraton/)
  assert.match((await check('regops sweep blobs --max-duration 4')).message, /needs a unit/)
  assert.match((await check('regops audit regions --window 25:00-01:00')).message, /invalid --window/)
  assert.match((await check('regops audit regions --level deep')).message, /Expected --level=deep to be one of/)
  assert.match((await check('regops import --shard 4/4')).message, /invalid --shard/)
  assert.match((await check("regops audit integrity --fail-on 'sometimes'")).message, /fail-on/)
  assert.equal((await check('regops sweep remove --delete')).ok, false)
  assert.throws(() => substitute('{{inputs.parameters.nowhere}}', new Map()), /no value for/)
  assert.deepEqual(
    shellCommands("exec regops report merge /tmp/r/*.json \\\n  --fail-on 'never' --json > /tmp/out.json"),
    [['exec', 'regops', 'report', 'merge', '/tmp/r/*.json', '--fail-on', 'never', '--json']],
  )
})
