import {createRequire} from 'node:module'
import type Table from 'cli-table3'
import {redact} from './redact.js'

/** True when a person is reading stdout: tables and spinners only then. */
export function stdoutIsTTY(): boolean {
  return Boolean(process.stdout.isTTY)
}

export type Cell = string | number | bigint | boolean | null | undefined

/**
 * A table for a person. On a TTY, a cli-table3 box that fits the terminal's width (long cells wrap at
 * spaces, and words longer than their column are broken); elsewhere (pipes, files, CI without --json),
 * tab-separated lines with a header, which grep and awk read without fuss.
 */
/** Prose for a person: on a terminal of known width each paragraph wraps to it; elsewhere unchanged. */
export function fitText(text: string, tty = stdoutIsTTY(), width = process.stdout.columns): string {
  if (!tty || !width || width < 20) return text
  return text
    .split('\n')
    .map((line) => (line.length <= width ? line : wrapCell(line, width)))
    .join('\n')
}

export function renderTable(
  head: string[],
  rows: Cell[][],
  tty = stdoutIsTTY(),
  width = process.stdout.columns,
): string {
  const text = rows.map((row) => row.map((cell) => (cell === null || cell === undefined ? '' : String(cell))))
  if (!tty) return [head, ...text].map((row) => row.join('\t')).join('\n')
  const colWidths = fitColumns([head, ...text], width)
  const wrap = (row: string[]) => row.map((cell, i) => (colWidths ? wrapCell(cell, colWidths[i] - CELL_PADDING) : cell))
  // Loaded here, for a terminal only: cli-table3 and its colours add 7 MiB of RSS to every command.
  const CliTable = createRequire(import.meta.url)('cli-table3') as typeof Table
  // No rule between body rows: compact enough for an 80-column terminal.
  const table = new CliTable({
    head: wrap(head),
    style: {head: ['bold'], border: []},
    chars: {mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': ''},
    ...(colWidths ? {colWidths} : {}),
  })
  for (const row of text) table.push(wrap(row))
  return redact(table.toString())
}

/** cli-table3 pads each cell with one space either side. */
const CELL_PADDING = 2
/** Narrowest a shrunk column gets (content characters): narrower, nothing in it reads. */
const MIN_CONTENT = 6

/**
 * Column widths (padding included) that fit `width` terminal columns, or undefined when the table fits
 * as it is or the width is unknown. Only the widest columns give way: every column keeps its natural
 * width up to a common cap, the largest cap for which the table fits.
 */
export function fitColumns(rows: string[][], width: number | undefined): number[] | undefined {
  if (!width || width <= 0 || rows.length === 0) return undefined
  const count = Math.max(...rows.map((r) => r.length))
  const natural = Array.from(
    {length: count},
    (_, i) => CELL_PADDING + Math.max(0, ...rows.map((r) => longestLine(r[i] ?? ''))),
  )
  const budget = width - (count + 1) // the vertical borders
  const total = (cap: number) => natural.reduce((sum, w) => sum + Math.min(w, cap), 0)
  if (total(Infinity) <= budget) return undefined
  let cap = CELL_PADDING + MIN_CONTENT
  while (total(cap + 1) <= budget) cap++
  return natural.map((w) => Math.min(w, cap))
}

function longestLine(text: string): number {
  return Math.max(...text.split('\n').map((line) => [...line].length))
}

/** Wraps at spaces to `width` characters; a word longer than that is broken across lines. */
export function wrapCell(text: string, width: number): string {
  const out: string[] = []
  for (const paragraph of text.split('\n')) {
    let line = ''
    for (const word of paragraph.split(' ')) {
      let rest = [...word]
      const candidate = line === '' ? word : `${line} ${word}`
      if ([...candidate].length <= width) {
        line = candidate
        continue
      }
      if (line !== '') out.push(line)
      line = ''
      while (rest.length > width) {
        out.push(rest.slice(0, width).join(''))
        rest = rest.slice(width)
      }
      line = rest.join('')
    }
    out.push(line)
  }
  return out.join('\n')
}

/** Key/value pairs, one a line, aligned. */
export function renderPairs(pairs: Array<[string, Cell]>): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length))
  return pairs.map(([k, v]) => `${k.padEnd(width)}  ${v === null || v === undefined ? '-' : String(v)}`).join('\n')
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
export function formatBytes(bytes: number): string {
  let value = bytes
  let unit = 0
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${UNITS[unit]}`
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`
  const s = ms / 1000
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${Math.round(s % 60)}s`
  return `${Math.floor(m / 60)}h${m % 60}m`
}
