import type {MigrateUpResult} from '../lib/metadata/migrations.js'

export function render(result: MigrateUpResult): string {
  if (result.dryRun) {
    return [
      ...(result.sql ?? []),
      `-- dry-run: would apply ${result.planned.length} migration(s), v${result.from} → v${result.to}`,
    ].join('\n')
  }
  return result.applied.length === 0
    ? `schema is current at v${result.to}`
    : `applied ${result.applied.length} migration(s): v${result.from} → v${result.to}`
}

export function exitCode(): number {
  return 0
}
