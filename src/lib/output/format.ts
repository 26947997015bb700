import Table from 'cli-table3'
import {redact} from './redact.js'

/** True when a person is reading stdout: tables and spinners only then. */
export function stdoutIsTTY(): boolean {
  return Boolean(process.stdout.isTTY)
}

export type Cell = string | number | bigint | boolean | null | undefined

/**
 * A table for a person. On a TTY, a cli-table3 box; elsewhere (pipes, files, CI without --json),
 * tab-separated lines with a header, which grep and awk read without fuss.
 */
export function renderTable(head: string[], rows: Cell[][], tty = stdoutIsTTY()): string {
  const text = rows.map((row) => row.map((cell) => (cell === null || cell === undefined ? '' : String(cell))))
  if (!tty) return [head, ...text].map((row) => row.join('\t')).join('\n')
  // No rule between body rows: compact enough for an 80-column terminal.
  const table = new Table({head, style: {head: ['bold'], border: []}, chars: {mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': ''}})
  for (const row of text) table.push(row)
  return redact(table.toString())
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
