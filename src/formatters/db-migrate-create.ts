export interface MigrateCreateResult {
  kind: 'db-migrate-create'
  version: number
  name: string
  upPath: string
  downPath: string
}

export function render(result: MigrateCreateResult): string {
  return `created ${result.upPath}\ncreated ${result.downPath}`
}

export function exitCode(): number {
  return 0
}
