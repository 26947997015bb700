/**
 * Migration files: reading and validating a migrations directory (NNNN_name.up.sql / .down.sql, no gaps,
 * checksums, no BEGIN/COMMIT of their own), creating the next pair, and splitting a file that runs
 * outside a transaction into its statements. What runs them against the database is in migrations.ts.
 */
import {createHash} from 'node:crypto'
import {mkdir, readdir, readFile, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {UsageError} from '../errors.js'

/** The package's migrations/ directory (same path from src/lib/metadata and dist/lib/metadata). */
export const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL('../../../migrations/', import.meta.url))

/** First line of a migration file that runs outside a transaction. */
export const NO_TRANSACTION_MARKER = '-- regops:no-transaction'
const NO_TRANSACTION_RE = /^--[ \t]*regops:no-transaction[ \t]*(\r?\n|$)/

const FILE_RE = /^(\d{4})_([a-z0-9][a-z0-9_]*)\.(up|down)\.sql$/
const TX_CONTROL_RE = /^[ \t]*(BEGIN|COMMIT|ROLLBACK|START[ \t]+TRANSACTION)[ \t]*(TRANSACTION|WORK)?[ \t]*;/im

export interface Migration {
  version: number
  name: string
  /** up file name, e.g. 0001_registry_metadata.up.sql */
  file: string
  downFile: string
  upPath: string
  downPath: string
  upSql: string
  downSql: string
  /** sha256 (hex) of the up file, CRLF normalised to LF */
  checksum: string
  /** the up / down file starts with NO_TRANSACTION_MARKER: it runs statement by statement, outside a transaction */
  upNoTransaction: boolean
  downNoTransaction: boolean
}

function checksumOf(sql: string): string {
  return createHash('sha256').update(sql.replace(/\r\n/g, '\n'), 'utf8').digest('hex')
}

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
}

/** Reads and validates a migrations directory. A malformed set is a UsageError naming the file. */
export async function loadMigrations(dir: string = DEFAULT_MIGRATIONS_DIR): Promise<Migration[]> {
  let entries: string[]
  try {
    entries = await readdir(dir)
  } catch (error) {
    throw new UsageError(`cannot read the migrations directory ${dir}: ${(error as Error).message}`, {
      code: 'MIGRATIONS_DIR',
    })
  }
  const ups = new Map<number, {name: string; file: string}>()
  const downs = new Map<number, {name: string; file: string}>()
  for (const file of entries.sort()) {
    if (!file.endsWith('.sql') || file.startsWith('.')) continue
    const m = FILE_RE.exec(file)
    if (!m) {
      throw new UsageError(
        `migration file ${file} is misnamed: expected NNNN_name.up.sql or NNNN_name.down.sql (lower-case name)`,
        {
          code: 'MIGRATION_FILES',
          details: {file, dir},
        },
      )
    }
    const version = Number(m[1])
    if (version === 0)
      throw new UsageError(`migration file ${file}: versions start at 0001`, {code: 'MIGRATION_FILES', details: {file}})
    const target = m[3] === 'up' ? ups : downs
    const seen = target.get(version)
    if (seen) {
      throw new UsageError(`duplicate migration version ${m[1]}: ${seen.file} and ${file}`, {
        code: 'MIGRATION_FILES',
        details: {file},
      })
    }
    target.set(version, {name: m[2], file})
  }
  for (const [version, down] of downs) {
    if (!ups.has(version))
      throw new UsageError(`migration file ${down.file} has no matching .up.sql`, {
        code: 'MIGRATION_FILES',
        details: {file: down.file},
      })
  }
  const versions = [...ups.keys()].sort((a, b) => a - b)
  const migrations: Migration[] = []
  for (const [index, version] of versions.entries()) {
    const up = ups.get(version)!
    if (version !== index + 1) {
      throw new UsageError(
        `migration ${up.file}: version ${String(index + 1).padStart(4, '0')} is missing before it (no gaps allowed)`,
        {
          code: 'MIGRATION_FILES',
          details: {file: up.file},
        },
      )
    }
    const down = downs.get(version)
    if (!down)
      throw new UsageError(`migration file ${up.file} has no matching .down.sql`, {
        code: 'MIGRATION_FILES',
        details: {file: up.file},
      })
    if (down.name !== up.name) {
      throw new UsageError(`migration files ${up.file} and ${down.file} disagree on the name`, {
        code: 'MIGRATION_FILES',
        details: {file: down.file},
      })
    }
    const upPath = path.join(dir, up.file)
    const downPath = path.join(dir, down.file)
    const [upSql, downSql] = await Promise.all([readFile(upPath, 'utf8'), readFile(downPath, 'utf8')]).then(
      ([a, b]) => [stripBom(a), stripBom(b)],
    )
    for (const [file, sql] of [
      [up.file, upSql],
      [down.file, downSql],
    ] as const) {
      const tx = TX_CONTROL_RE.exec(sql)
      if (tx) {
        throw new UsageError(
          `migration file ${file} contains "${tx[0].trim()}": each migration already runs in one transaction (or, with ${NO_TRANSACTION_MARKER} as its first line, in none)`,
          {
            code: 'MIGRATION_FILES',
            details: {file},
          },
        )
      }
    }
    migrations.push({
      version,
      name: up.name,
      file: up.file,
      downFile: down.file,
      upPath,
      downPath,
      upSql,
      downSql,
      checksum: checksumOf(upSql),
      upNoTransaction: NO_TRANSACTION_RE.test(upSql),
      downNoTransaction: NO_TRANSACTION_RE.test(downSql),
    })
  }
  return migrations
}

/** Writes the next-numbered empty pair NNNN_<name>.{up,down}.sql into dir. */
export async function createMigration(
  dir: string,
  name: string,
): Promise<{version: number; name: string; upPath: string; downPath: string}> {
  const slug = name
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '')
  if (!slug)
    throw new UsageError(`migration name ${JSON.stringify(name)} has no letters or digits`, {code: 'MIGRATION_NAME'})
  if (slug.length > 80)
    throw new UsageError(`migration name is too long (${slug.length} > 80 characters)`, {code: 'MIGRATION_NAME'})
  await mkdir(dir, {recursive: true})
  const existing = await loadMigrations(dir)
  const version = existing.length + 1
  if (version > 9999) throw new UsageError('no migration versions left (9999 used)', {code: 'MIGRATION_NAME'})
  const base = `${String(version).padStart(4, '0')}_${slug}`
  const upPath = path.join(dir, `${base}.up.sql`)
  const downPath = path.join(dir, `${base}.down.sql`)
  const header = (direction: string): string =>
    `-- ${base} (${direction}). Runs in one transaction with its bookkeeping row: no BEGIN/COMMIT here.\n`
  try {
    await writeFile(upPath, header('up'), {flag: 'wx'})
    await writeFile(downPath, `${header('down')}-- Must drop exactly what ${base}.up.sql creates.\n`, {flag: 'wx'})
  } catch (error) {
    throw new UsageError(`cannot create ${base}: ${(error as Error).message}`, {code: 'MIGRATION_NAME'})
  }
  return {version, name: slug, upPath, downPath}
}

/**
 * The statements of a SQL file, each with its offset in the file: split at semicolons outside quotes
 * ('…', E'…', "…", $tag$…$tag$) and comments (-- to the end of the line, and nested block comments). A file run outside a transaction is
 * sent statement by statement: several statements in one simple query run as one implicit transaction,
 * in which CREATE INDEX CONCURRENTLY refuses to run.
 */
export function splitStatements(sql: string): Array<{text: string; offset: number}> {
  const out: Array<{text: string; offset: number}> = []
  let start = 0
  let i = 0
  const push = (end: number): void => {
    const text = sql.slice(start, end)
    if (text.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, '').trim()) out.push({text, offset: start})
  }
  while (i < sql.length) {
    const c = sql[i]
    const next = sql[i + 1]
    if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i)
      i = end === -1 ? sql.length : end + 1
    } else if (c === '/' && next === '*') {
      let depth = 1
      i += 2
      while (i < sql.length && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') (depth++, (i += 2))
        else if (sql[i] === '*' && sql[i + 1] === '/') (depth--, (i += 2))
        else i++
      }
    } else if (c === "'" || c === '"') {
      const escapes = c === "'" && /[eE]/.test(sql[i - 1] ?? '') && !/[\w$]/.test(sql[i - 2] ?? '')
      i++
      while (i < sql.length) {
        if (escapes && sql[i] === '\\') i += 2
        else if (sql[i] === c && sql[i + 1] === c) i += 2
        else if (sql[i] === c) break
        else i++
      }
      i++
    } else if (c === '$' && !/[\w$]/.test(sql[i - 1] ?? '')) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i))
      if (tag) {
        const end = sql.indexOf(tag[0], i + tag[0].length)
        i = end === -1 ? sql.length : end + tag[0].length
      } else i++
    } else if (c === ';') {
      push(i + 1)
      start = i + 1
      i++
    } else i++
  }
  push(sql.length)
  return out
}
