export interface ConfigValidateResult {
  kind: 'config-validate'
  valid: true
  file: string
  regions: string[]
  primary: string | null
}

export function render(result: ConfigValidateResult): string {
  return `valid: ${result.file}; regions: ${result.regions.join(', ') || 'none'}`
}

export function exitCode(): number {
  return 0
}
