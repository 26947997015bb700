import { createRequire } from 'node:module';

// parse-prometheus-text-format ships CommonJS without types.
const parse = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Array<{
  name: string;
  help: string;
  type: string;
  metrics: Array<{ value: string; labels?: Record<string, string> }>;
}>;

export interface Sample {
  name: string;
  type: string;
  help: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Parses the text format with a maintained parser, and checks on top what it lets pass: every family has
 * HELP and TYPE before its first sample, no family is declared twice, and every line is a comment, a
 * sample of the family declared just above, or empty.
 */
export function parsePrometheus(text: string): Sample[] {
  let current: string | undefined;
  const declared = new Set<string>();
  const helped = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const help = /^# HELP (\w+) \S/.exec(line);
    const type = /^# TYPE (\w+) (counter|gauge)$/.exec(line);
    if (help) {
      if (helped.has(help[1])) throw new Error(`HELP twice for ${help[1]}`);
      helped.add(help[1]);
      continue;
    }
    if (type) {
      if (declared.has(type[1])) throw new Error(`TYPE twice for ${type[1]}`);
      if (!helped.has(type[1])) throw new Error(`TYPE before HELP for ${type[1]}`);
      declared.add(type[1]);
      current = type[1];
      continue;
    }
    const sample = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!sample) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    if (sample[1] !== current) throw new Error(`sample of ${sample[1]} outside its family (${current})`);
  }
  return parse(text).flatMap((family) =>
    family.metrics.map((m) => ({
      name: family.name,
      type: family.type,
      help: family.help,
      labels: m.labels ?? {},
      value: Number(m.value),
    })),
  );
}

/** The value of one series: the sample named `name` whose labels include `labels`; throws unless exactly one. */
export function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length !== 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`);
  return found[0].value;
}
