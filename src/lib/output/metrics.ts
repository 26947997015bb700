import {mkdir, rename, writeFile} from 'node:fs/promises'
import {dirname} from 'node:path'

/**
 * Writes metrics in the Prometheus text format for node_exporter's textfile collector: written to a
 * temporary file and renamed, so the collector never reads half a file.
 */
export async function writeMetrics(
  file: string,
  job: string,
  labels: Record<string, string>,
  values: Record<string, number>,
): Promise<void> {
  const labelText = Object.entries(labels)
    .map(([k, v]) => `${k}="${String(v).replace(/["\\\n]/g, '_')}"`)
    .join(',')
  const lines: string[] = []
  for (const [name, value] of Object.entries(values)) {
    const metric = `regops_${job}_${name}`
    lines.push(`# TYPE ${metric} gauge`, `${metric}{${labelText}} ${value}`)
  }
  lines.push(
    `# TYPE regops_${job}_last_run_timestamp_seconds gauge`,
    `regops_${job}_last_run_timestamp_seconds{${labelText}} ${Math.floor(Date.now() / 1000)}`,
  )
  await mkdir(dirname(file), {recursive: true})
  await writeFile(`${file}.tmp`, lines.join('\n') + '\n')
  await rename(`${file}.tmp`, file)
}
