import {ExitCode} from '../lib/errors.js'
import type {MigrationStatus} from '../lib/metadata/migrations.js'
import {renderTable} from '../lib/output/format.js'

export function render(status: MigrationStatus): string {
  const table = renderTable(
    ['version', 'name', 'state', 'applied at', 'ms'],
    status.migrations.map((m) => [m.version, m.name, m.state, m.appliedAt ?? '', m.executionMs ?? '']),
  )
  return `${table}\ncurrent v${status.current}, latest v${status.latest}`
}

/** Pending or drifted migrations are a finding: a preflight script can gate on it. */
export function exitCode(status: MigrationStatus): number {
  return status.migrations.some((m) => m.state !== 'applied') ? ExitCode.Found : ExitCode.Ok
}
