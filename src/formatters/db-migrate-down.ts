import type {MigrateDownResult} from '../lib/metadata/migrations.js'

export function render(result: MigrateDownResult): string {
  if (result.dryRun) {
    return [
      ...(result.sql ?? []),
      `-- dry-run: would revert ${result.planned.length} migration(s), v${result.from} → v${result.to}`,
    ].join('\n')
  }
  return `reverted ${result.reverted.length} migration(s): v${result.from} → v${result.to}`
}

export function exitCode(): number {
  return 0
}
