import {ExitCode} from '../lib/errors.js'
import type {DoctorResult} from '../lib/doctor/doctor.js'
import {renderTable} from '../lib/output/format.js'

export function render(result: DoctorResult): string {
  return renderTable(
    ['check', 'name', 'target', 'status', 'detail', 'ms'],
    result.checks.map((c) => [c.component, c.name, c.target, c.status, c.detail, c.ms]),
  )
}

export function exitCode(result: DoctorResult): number {
  return result.ok ? ExitCode.Ok : ExitCode.Found
}
