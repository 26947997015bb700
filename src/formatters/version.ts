export interface VersionResult {
  kind: 'version'
  version: string
  node: string
  platform: string
}

export function render(result: VersionResult): string {
  return `regops/${result.version} ${result.platform} node-${result.node}`
}

export function exitCode(): number {
  return 0
}
