import {ExitCode} from '../lib/errors.js'
import type {DoctorResult} from '../lib/doctor/doctor.js'
import {renderTable} from '../lib/output/format.js'

export function render(result: DoctorResult): string {
  const checks = renderTable(
    ['check', 'name', 'target', 'status', 'detail', 'ms'],
    result.checks.map((c) => [c.component, c.name, c.target, c.status, c.detail, c.ms]),
  )
  if (!result.permissions) return checks
  const probes = renderTable(
    ['region', 'probe', 'needs', 'result', 'detail'],
    result.permissions.map((p) => [p.region, p.probe, p.action, p.outcome, p.detail]),
  )
  const sets = Object.entries(result.permissionSets ?? {}).map(
    ([region, held]) =>
      `${region}: ${Object.entries(held)
        .map(([set, yes]) => `${set} ${yes ? 'yes' : 'no'}`)
        .join(', ')} (permission sets of docs/iam.md)`,
  )
  return [checks, '', probes, ...sets].join('\n')
}

export function exitCode(result: DoctorResult): number {
  return result.ok ? ExitCode.Ok : ExitCode.Found
}
