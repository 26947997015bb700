import {renderPairs} from '../lib/output/format.js'

export interface ConfigShowResult {
  kind: 'config-show'
  config: Record<string, unknown>
}

type RegionView = {kind: string; url: string; endpoint?: string; credentials?: string}

export function render({config}: ConfigShowResult): string {
  const regions = config.regions as Record<string, RegionView>
  return renderPairs([
    ['file', config.file as string],
    ['database', (config.database as {url: string} | null)?.url],
    ['primary', config.primary as string],
    ['registry', (config.registry as {url: string} | null)?.url],
    ...Object.entries(regions).map(([name, r]): [string, string] => [
      `region ${name}`,
      `${r.url}${r.endpoint ? ` (endpoint ${r.endpoint})` : ''}${r.credentials ? ` [credentials: ${r.credentials}]` : ''}`,
    ]),
  ])
}

export function exitCode(): number {
  return 0
}
