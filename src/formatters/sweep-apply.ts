import {ExitCode} from '../lib/errors.js'
import {formatBytes, formatDuration, renderTable} from '../lib/output/format.js'
import type {SweepApplyResult} from '../lib/sweep/plan-apply.js'

export function exitCode(result: SweepApplyResult): number {
  if (result.acted.failed > 0 || result.postCheck.broken.length > 0) return ExitCode.Partial
  if (result.mode === 'dry-run')
    return result.candidates.count + result.candidates.manifests > 0 ? ExitCode.Found : ExitCode.Ok
  return result.problemCount > 0 ? ExitCode.Found : ExitCode.Ok
}

export function render(r: SweepApplyResult): string {
  const lines = [
    renderTable(
      ['sweep apply', r.jobId ? `job ${r.jobId}` : ''],
      [
        ['plan', `${r.plan.file} (${r.plan.hash})`],
        [
          'made',
          `${r.plan.createdAt}, ${formatDuration(r.plan.ageMs)} ago (--max-age ${formatDuration(r.plan.maxAgeMs)})`,
        ],
        ['verified', 'sealed hash matches; store unchanged since the plan (repositories/ and every candidate)'],
        ['region / strategy / mode', `${r.region} / ${r.strategy} / ${r.mode}`],
        [
          'candidates',
          `${r.candidates.count} (${formatBytes(r.candidates.bytes)})${r.candidates.manifests ? `, and ${r.candidates.manifests} untagged manifests` : ''}`,
        ],
        ...(r.mode === 'dry-run'
          ? r.wouldRefuse.length > 0
            ? [['acting would be refused (exit 4)', r.wouldRefuse.join('; ')]]
            : []
          : [
              [
                'acted',
                `${r.acted.deleted} deleted, ${r.acted.quarantined} quarantined, ${r.acted.manifestsDeleted} manifests deleted (${formatBytes(r.acted.bytes)})`,
              ],
              [
                'skipped at re-check',
                `${r.skipped.referencedAgain} referenced again, ${r.skipped.changed} changed, ${r.skipped.gone} gone`,
              ],
              ['failed', r.acted.failed],
            ]),
        ['time', formatDuration(r.durationMs)],
      ],
    ),
  ]
  if (r.mode === 'dry-run') {
    const verb = 'would act on'
    for (const c of r.first)
      lines.push(`${verb} ${c.kind} ${c.digest} (${formatBytes(c.size)})${c.repository ? ` in ${c.repository}` : ''}`)
    const more = r.candidates.count + r.candidates.manifests - r.first.length
    if (more > 0) lines.push(`... and ${more} more (every candidate is in ${r.plan.file})`)
    lines.push(`dry-run: nothing was touched; act with regops sweep apply ${r.plan.file} --quarantine (or --delete)`)
    return lines.join('\n')
  }
  for (const s of r.skippedCandidates) lines.push(`skipped ${s.kind} ${s.digest}: ${s.reason}`)
  for (const p of r.problems.slice(0, 20)) lines.push(`problem: ${p.kind} at ${p.key}: ${p.message}`)
  for (const b of r.postCheck.broken)
    lines.push(
      `broken: ${b.repository}${b.manifest ? `@${b.manifest}` : ' (a push in progress)'} needs blob ${b.digest}, deleted after its re-check`,
    )
  if (r.restartRegistry)
    lines.push(
      'the registry caches blob descriptors in memory: restart every registry process before it takes writes again',
    )
  lines.push(`job ${r.jobId} journaled every action (regops journal --job ${r.jobId})`)
  return lines.join('\n')
}
