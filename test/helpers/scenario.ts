// A registry state generated from a seed, built through the real docker-registry HTTP API (pushes,
// mounts, deletes) plus blobs written straight into the layout for volume. The oracle tests compare
// regops' sweep candidates with `docker-registry garbage-collect --dry-run` on such states; a failure
// names its seed, and the same seed builds the same operations again.
import { createHash } from 'node:crypto';
import { MT, deleteManifest, mountBlob, pushBlob, putManifest, randomBlob } from './images.js';

/**
 * The seeds `npm test` runs (the script runs any). Seed 1 deletes a child of a still-tagged index (issue
 * 16: the metadata strategy named the child's manifest blob once the manifests were older than the
 * import; 18 of seeds 1-50 build that case); seed 6 deletes a referrer's subject (the case the oracle
 * found: the metadata strategy ignored `subject`); seed 3 is neither.
 */
export const NPM_TEST_SEEDS = [1, 3, 6];

/** Small, fast, seedable PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Writes and deletes objects straight in the layout; keys are relative to docker/registry/v2/. */
export interface RawLayout {
  write(key: string, bytes: Buffer): Promise<void>;
  remove(key: string): Promise<void>;
}

export interface ScenarioOptions {
  seed: number;
  registryUrl: string;
  raw: RawLayout;
  /** blobs written straight into the layout, all in three digest prefixes (default 300) */
  bulkBlobs?: number;
}

export interface Scenario {
  seed: number;
  /** one line per operation, for a failure message */
  ops: string[];
  /** tags whose images must still pull in full after a real sweep */
  pullable: Array<{ repo: string; tag: string }>;
  /**
   * Manifests deleted while a kept OCI referrer names them as its `subject`. distribution 2.8's GC does
   * not follow `subject`, regops does (a referrer's subject is a reference): the one deliberate difference.
   */
  subjectsKept: string[];
  /** children of a still-tagged index deleted by digest: the case of issue 16 */
  deletedChildrenOfTaggedIndexes: string[];
  /** the three digest prefixes holding the bulk blobs and some referenced layers */
  hotPrefixes: string[];
}

interface Pushed {
  repo: string;
  tag?: string;
  digest: string;
  mediaType: string;
  bytes: Buffer;
  size: number;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Bytes of about `size` whose sha256 starts with `prefix` (the first label-derived candidate that does). */
export function bytesInPrefix(prefix: string, label: string, size: number): Buffer {
  const body = randomBlob(size, label);
  for (let i = 0; ; i++) {
    const tail = Buffer.from(`:${i}`);
    const candidate = Buffer.concat([body, tail]);
    if (sha(candidate).startsWith(prefix)) return candidate;
  }
}

function blobKey(hex: string): string {
  return `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
}

/** Phase one: everything before `regops import`. Returns the scenario and a phase two for after it. */
export async function buildScenario(
  opts: ScenarioOptions,
): Promise<{ scenario: Scenario; afterImport(): Promise<void> }> {
  const rnd = prng(opts.seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const chance = (p: number): boolean => rnd() < p;
  const url = opts.registryUrl;
  const s = opts.seed;
  const scenario: Scenario = {
    seed: s,
    ops: [],
    pullable: [],
    subjectsKept: [],
    deletedChildrenOfTaggedIndexes: [],
    hotPrefixes: [],
  };
  const op = (line: string): void => {
    scenario.ops.push(line);
  };
  const hot = new Set<string>();
  while (hot.size < 3) hot.add(int(0, 255).toString(16).padStart(2, '0'));
  scenario.hotPrefixes = [...hot].sort();
  const repos = Array.from({ length: int(3, 5) }, (_, i) => `ns${i % 2}/app${i}`);
  let counter = 0;
  const uniq = (what: string): string => `seed${s}/${what}/${counter++}`;
  // Layer contents: a small shared pool, half of it in the hot prefixes.
  const pool = Array.from({ length: 4 }, (_, i) =>
    i % 2 === 0
      ? bytesInPrefix(scenario.hotPrefixes[i % 3]!, `seed${s}/pool/${i}`, 400)
      : randomBlob(500, `seed${s}/pool/${i}`),
  );
  const newLayer = (): Buffer =>
    chance(0.4)
      ? bytesInPrefix(pick(scenario.hotPrefixes), uniq('hot-layer'), 300)
      : randomBlob(int(200, 900), uniq('layer'));
  const layersFor = (): Buffer[] => Array.from({ length: int(1, 3) }, () => (chance(0.35) ? pick(pool) : newLayer()));
  const configFor = (label: string): Buffer =>
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        created: '2024-01-01T00:00:00Z',
        config: { Labels: { seed: label } },
        rootfs: { type: 'layers', diff_ids: [] },
      }),
    );

  async function pushManifest(
    repo: string,
    tag: string | undefined,
    spec: { config: Buffer; layers: Buffer[]; oci?: boolean; subject?: Pushed },
  ): Promise<Pushed> {
    const oci = spec.oci || spec.subject !== undefined;
    const config = await pushBlob(url, repo, spec.config);
    const layers = [];
    for (const l of spec.layers) layers.push(await pushBlob(url, repo, l));
    const mediaType = oci ? MT.ociManifest : MT.dockerManifest;
    const body: Record<string, unknown> = {
      schemaVersion: 2,
      mediaType,
      config: { mediaType: oci ? MT.ociConfig : MT.dockerConfig, size: config.size, digest: config.digest },
      layers: layers.map((l) => ({ mediaType: oci ? MT.ociLayer : MT.dockerLayer, size: l.size, digest: l.digest })),
    };
    if (spec.subject)
      body.subject = { mediaType: spec.subject.mediaType, size: spec.subject.size, digest: spec.subject.digest };
    const bytes = Buffer.from(JSON.stringify(body));
    const digest = await putManifest(url, repo, tag ?? `sha256:${sha(bytes)}`, mediaType, bytes);
    return { repo, tag, digest, mediaType, bytes, size: bytes.length };
  }
  const pushImage = async (repo: string, tag?: string): Promise<Pushed> => {
    const p = await pushManifest(repo, tag, {
      config: configFor(uniq('config')),
      layers: layersFor(),
      oci: chance(0.5),
    });
    op(`push ${repo}${tag ? ':' + tag : ''} ${p.digest}`);
    return p;
  };
  const tagged = new Map<string, Pushed>(); // repo:tag -> image
  const setTag = (p: Pushed) => p.tag && tagged.set(`${p.repo}:${p.tag}`, p);

  // Plain images, some tagged, some untagged.
  for (let i = int(3, 6); i > 0; i--) {
    const repo = pick(repos);
    setTag(await pushImage(repo, chance(0.7) ? `t${counter}` : undefined));
  }
  // A tag moved to a new image; sometimes the old one is then deleted by digest.
  for (let i = int(1, 2); i > 0; i--) {
    const repo = pick(repos);
    const tag = `moving${counter}`;
    const old = await pushImage(repo, tag);
    setTag(await pushImage(repo, tag));
    op(`moved ${repo}:${tag} from ${old.digest}`);
    if (chance(0.5)) {
      await deleteManifest(url, repo, old.digest);
      op(`delete ${repo}@${old.digest} (the moved tag's old image)`);
    }
  }
  // A config shared by two manifests; one of them is deleted.
  {
    const repo = pick(repos);
    const config = configFor(uniq('shared-config'));
    const a = await pushManifest(repo, `cfg-a${counter}`, { config, layers: layersFor() });
    const b = await pushManifest(pick(repos), `cfg-b${counter}`, { config, layers: layersFor(), oci: true });
    op(`shared config: ${a.repo}@${a.digest} and ${b.repo}@${b.digest}`);
    const gone = chance(0.5) ? a : b;
    await deleteManifest(url, gone.repo, gone.digest);
    op(`delete ${gone.repo}@${gone.digest} (one of two sharing a config)`);
    setTag(gone === a ? b : a);
  }
  // Indexes: children untagged, the index tagged; then the index deleted, or a child of it, or neither.
  for (let i = int(1, 3); i > 0; i--) {
    const repo = pick(repos);
    const children: Pushed[] = [];
    for (let c = int(2, 3); c > 0; c--) children.push(await pushImage(repo));
    const oci = chance(0.5);
    const mediaType = oci ? MT.ociIndex : MT.dockerList;
    const bytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType,
        manifests: children.map((c, n) => ({
          mediaType: c.mediaType,
          size: c.size,
          digest: c.digest,
          platform: { os: 'linux', architecture: `arch${n}` },
        })),
      }),
    );
    const tag = `multi${counter++}`;
    const index: Pushed = {
      repo,
      tag,
      digest: await putManifest(url, repo, tag, mediaType, bytes),
      mediaType,
      bytes,
      size: bytes.length,
    };
    op(`index ${repo}:${tag} ${index.digest} children ${children.map((c) => c.digest).join(' ')}`);
    const fate = rnd();
    if (fate < 0.3) {
      await deleteManifest(url, repo, index.digest);
      op(`delete index ${repo}@${index.digest} (its children stay, untagged)`);
    } else if (fate < 0.5) {
      const child = pick(children);
      await deleteManifest(url, repo, child.digest);
      scenario.deletedChildrenOfTaggedIndexes.push(child.digest);
      op(`delete child ${repo}@${child.digest} of the tagged index (issue 16)`);
    } else {
      setTag(index);
    }
  }
  // Cross-repository mounts whose source is then deleted.
  for (let i = int(1, 2); i > 0; i--) {
    const [from, to] = [pick(repos), pick(repos)];
    if (from === to) continue;
    const layers = layersFor();
    const source = await pushManifest(from, undefined, { config: configFor(uniq('mount-src')), layers });
    for (const l of layers) {
      if (!(await mountBlob(url, to, `sha256:${sha(l)}`, from))) throw new Error(`seed ${s}: mount into ${to} refused`);
    }
    const target = await pushManifest(to, `mounted${counter}`, { config: configFor(uniq('mount-dst')), layers });
    await deleteManifest(url, from, source.digest);
    op(
      `mount ${layers.length} layer(s) ${from} -> ${to}, ${to}@${target.digest} kept, ${from}@${source.digest} deleted`,
    );
    setTag(target);
  }
  // Referrers (OCI subject); sometimes the subject is deleted while the referrer stays.
  for (let i = int(0, 2); i > 0; i--) {
    const repo = pick(repos);
    const subject = await pushImage(repo);
    const referrer = await pushManifest(repo, chance(0.5) ? `sig${counter}` : undefined, {
      config: configFor(uniq('sig')),
      layers: [randomBlob(120, uniq('signature'))],
      subject,
    });
    op(`referrer ${repo}@${referrer.digest} -> subject ${subject.digest}`);
    if (chance(0.4)) {
      await deleteManifest(url, repo, subject.digest);
      scenario.subjectsKept.push(subject.digest);
      op(`delete subject ${repo}@${subject.digest} (the referrer stays)`);
    }
  }
  // Deleted images, tagged or not.
  for (let i = int(1, 3); i > 0; i--) {
    const repo = pick(repos);
    const doomed = await pushImage(repo, chance(0.5) ? `doomed${counter}` : undefined);
    await deleteManifest(url, repo, doomed.digest);
    op(`delete ${repo}@${doomed.digest}`);
  }
  // Blobs uploaded with no manifest, some in the hot prefixes.
  const orphans: Buffer[] = [];
  for (let i = int(2, 5); i > 0; i--) {
    const bytes = chance(0.5)
      ? bytesInPrefix(pick(scenario.hotPrefixes), uniq('orphan'), 250)
      : randomBlob(350, uniq('orphan'));
    const repo = pick(repos);
    await pushBlob(url, repo, bytes);
    orphans.push(bytes);
    op(`orphan upload to ${repo} sha256:${sha(bytes)}`);
  }
  // Dangling references: a kept image whose layer data is gone, and a _layers link to a blob never stored.
  if (chance(0.5)) {
    const repo = pick(repos);
    const layer = randomBlob(333, uniq('dangling'));
    const img = await pushManifest(repo, `dangling${counter}`, {
      config: configFor(uniq('dangling')),
      layers: [layer],
    });
    await opts.raw.remove(blobKey(sha(layer)));
    op(`dangling: ${repo}@${img.digest} references sha256:${sha(layer)}, whose data was removed`);
  }
  if (chance(0.5)) {
    const hex = sha(Buffer.from(uniq('never-stored')));
    await opts.raw.write(`repositories/${pick(repos)}/_layers/sha256/${hex}/link`, Buffer.from(`sha256:${hex}`));
    op(`dangling: a _layers link to sha256:${hex}, never stored`);
  }
  // Volume: many blobs in the three hot prefixes, written straight into the layout; a few are linked.
  const bulk = opts.bulkBlobs ?? 300;
  const writes: Array<() => Promise<void>> = [];
  for (let i = 0; i < bulk; i++) {
    const bytes = bytesInPrefix(scenario.hotPrefixes[i % 3]!, `seed${s}/bulk/${i}`, 64);
    const hex = sha(bytes);
    writes.push(() => opts.raw.write(blobKey(hex), bytes));
    if (i % 97 === 0)
      writes.push(() =>
        opts.raw.write(`repositories/${pick(repos)}/_layers/sha256/${hex}/link`, Buffer.from(`sha256:${hex}`)),
      );
  }
  for (let i = 0; i < writes.length; i += 32) await Promise.all(writes.slice(i, i + 32).map((w) => w()));
  op(`bulk: ${bulk} blobs in prefixes ${scenario.hotPrefixes.join(' ')}`);
  scenario.pullable = [...tagged.values()]
    .filter((p) => !scenario.ops.some((o) => o.startsWith('dangling:') && o.includes(p.digest)))
    .map((p) => ({ repo: p.repo, tag: p.tag! }));

  const afterImport = async (): Promise<void> => {
    // Pushes after the import (the metadata strategy's catch-up walk must see them): a new image, one
    // that references an orphan uploaded before the import, and a tag moved to a new image.
    const repo = pick(repos);
    setTag(await pushImage(repo, `late${counter}`));
    if (orphans.length > 0) {
      const revived = pick(orphans);
      const p = await pushManifest(repo, `revived${counter}`, {
        config: configFor(uniq('revived')),
        layers: [revived],
      });
      op(`after import: ${repo}@${p.digest} references the old orphan sha256:${sha(revived)}`);
      setTag(p);
    }
    const moving = [...tagged.values()].find((p) => p.repo === repo && p.tag?.startsWith('t'));
    if (moving) setTag(await pushImage(repo, moving.tag));
    scenario.pullable = [...tagged.values()]
      .filter((p) => !scenario.ops.some((o) => o.startsWith('dangling:') && o.includes(p.digest)))
      .map((p) => ({ repo: p.repo, tag: p.tag! }));
  };
  return { scenario, afterImport };
}
