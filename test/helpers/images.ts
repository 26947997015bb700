// Synthetic images pushed through a registry's HTTP v2 API (no auth).
// Content is deterministic for a given seed.
import { createCipheriv, createHash } from 'node:crypto';

export const MT = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

/** Accept header listing every manifest type distribution 2.8 serves. */
export const MANIFEST_ACCEPT = [
  MT.dockerManifest,
  MT.dockerList,
  MT.ociManifest,
  MT.ociIndex,
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
  'application/vnd.docker.distribution.manifest.v1+json',
].join(', ');

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface BlobRef {
  digest: string;
  size: number;
}

export interface PushedImage {
  repo: string;
  tag?: string;
  manifestDigest: string;
  manifestMediaType: string;
  manifestBytes: Buffer;
  /** manifest size in bytes */
  size: number;
  configDigest: string;
  configBytes: Buffer;
  layerDigests: string[];
  /** config + layers, in manifest order */
  blobs: BlobRef[];
  /** sum of config and layer sizes */
  blobBytes: number;
  platform: Platform;
}

export interface PushedIndex {
  repo: string;
  tag?: string;
  manifestDigest: string;
  manifestMediaType: string;
  manifestBytes: Buffer;
  size: number;
  children: PushedImage[];
}

export interface ImageSpec {
  /** explicit layer contents, or a count of random layers */
  layers: Buffer[] | number;
  /** size of each random layer (default 1024) */
  layerSize?: number;
  seed: string;
  platform?: Platform;
  mediaType?: 'docker' | 'oci';
}

// ---------------------------------------------------------------- content

/** Deterministic pseudo-random bytes (AES-256-CTR keystream keyed by sha256(seed)). */
export function randomBlob(size: number, seed: string): Buffer {
  const key = createHash('sha256').update(seed).digest();
  const c = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(size)), c.final()]);
}

export function sha256Hex(buf: Uint8Array | string): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** 'sha256:' + hex */
export function digestOf(buf: Uint8Array | string): string {
  return 'sha256:' + sha256Hex(buf);
}

// ---------------------------------------------------------------- http

function base(url: string): string {
  return url.replace(/\/+$/, '');
}

async function req(
  method: string,
  url: string,
  init: { headers?: Record<string, string>; body?: Buffer } = {},
): Promise<Response> {
  return fetch(url, {
    method,
    headers: init.headers,
    body: init.body,
    redirect: 'follow',
    signal: AbortSignal.timeout(60_000),
  });
}

async function expectStatus(r: Response, ok: number[], what: string): Promise<void> {
  if (!ok.includes(r.status)) {
    const text = await r.text().catch(() => '');
    throw new Error(`${what}: HTTP ${r.status} ${text.slice(0, 500)}`);
  }
}

function absolute(registryUrl: string, location: string): string {
  return new URL(location, base(registryUrl) + '/').toString();
}

// ---------------------------------------------------------------- blobs

export async function blobExists(registryUrl: string, repo: string, digest: string): Promise<boolean> {
  const r = await req('HEAD', `${base(registryUrl)}/v2/${repo}/blobs/${digest}`);
  return r.status === 200;
}

/**
 * Upload a blob: POST /v2/<repo>/blobs/uploads/ then a monolithic PUT ?digest=.
 * With mountFrom, first try a cross-repo mount (POST ?mount=&from=); falls back to uploading.
 */
export async function pushBlob(
  registryUrl: string,
  repo: string,
  content: Buffer,
  opts: { mountFrom?: string } = {},
): Promise<BlobRef> {
  const digest = digestOf(content);
  const u = base(registryUrl);
  const q = opts.mountFrom ? `?mount=${digest}&from=${encodeURIComponent(opts.mountFrom)}` : '';
  const start = await req('POST', `${u}/v2/${repo}/blobs/uploads/${q}`, { headers: { 'Content-Length': '0' } });
  await expectStatus(start, [201, 202], `start upload ${repo}`);
  await start.arrayBuffer();
  if (start.status === 201) return { digest, size: content.length }; // mounted
  const loc = start.headers.get('location');
  if (!loc) throw new Error(`start upload ${repo}: no Location header`);
  const put = absolute(registryUrl, loc);
  const r = await req('PUT', `${put}${put.includes('?') ? '&' : '?'}digest=${digest}`, {
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(content.length) },
    body: content,
  });
  await expectStatus(r, [201], `put blob ${digest} to ${repo}`);
  await r.arrayBuffer();
  return { digest, size: content.length };
}

/** Mount a blob from another repository (POST ?mount=&from=); true when the registry answered 201. */
export async function mountBlob(registryUrl: string, repo: string, digest: string, fromRepo: string): Promise<boolean> {
  const r = await req(
    'POST',
    `${base(registryUrl)}/v2/${repo}/blobs/uploads/?mount=${digest}&from=${encodeURIComponent(fromRepo)}`,
    {
      headers: { 'Content-Length': '0' },
    },
  );
  await r.arrayBuffer();
  if (r.status === 202) {
    // not mounted: an upload session was opened; cancel it
    const loc = r.headers.get('location');
    if (loc) await (await req('DELETE', absolute(registryUrl, loc))).arrayBuffer();
    return false;
  }
  await expectStatus(r, [201], `mount ${digest} into ${repo}`);
  return true;
}

/** Push a blob that no manifest references (an orphan for garbage collection). */
export async function uploadOrphanBlob(
  registryUrl: string,
  repo: string,
  size: number,
  seed: string,
): Promise<BlobRef> {
  return pushBlob(registryUrl, repo, randomBlob(size, seed));
}

/**
 * Start an upload (optionally PATCH some bytes) and never finish it: leaves an
 * entry under <repo>/_uploads/<uuid>/ in storage.
 */
export async function startAbandonedUpload(
  registryUrl: string,
  repo: string,
  partial?: Buffer,
): Promise<{ uuid: string; location: string }> {
  const start = await req('POST', `${base(registryUrl)}/v2/${repo}/blobs/uploads/`, {
    headers: { 'Content-Length': '0' },
  });
  await expectStatus(start, [202], `start upload ${repo}`);
  await start.arrayBuffer();
  const location = absolute(registryUrl, start.headers.get('location') ?? '');
  const uuid = start.headers.get('docker-upload-uuid') ?? '';
  if (partial && partial.length) {
    const r = await req('PATCH', location, {
      headers: {
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(partial.length),
        'Content-Range': `0-${partial.length - 1}`,
      },
      body: partial,
    });
    await expectStatus(r, [202], `patch upload ${repo}`);
    await r.arrayBuffer();
  }
  return { uuid, location };
}

// ---------------------------------------------------------------- manifests

export async function putManifest(
  registryUrl: string,
  repo: string,
  ref: string,
  mediaType: string,
  bytes: Buffer,
): Promise<string> {
  const r = await req('PUT', `${base(registryUrl)}/v2/${repo}/manifests/${ref}`, {
    headers: { 'Content-Type': mediaType, 'Content-Length': String(bytes.length) },
    body: bytes,
  });
  await expectStatus(r, [201], `put manifest ${repo}:${ref}`);
  await r.arrayBuffer();
  const digest = digestOf(bytes);
  const got = r.headers.get('docker-content-digest');
  if (got && got !== digest) throw new Error(`put manifest ${repo}:${ref}: registry says ${got}, expected ${digest}`);
  return digest;
}

export async function pushImage(
  registryUrl: string,
  repo: string,
  tag: string | undefined,
  spec: ImageSpec,
): Promise<PushedImage> {
  const oci = spec.mediaType === 'oci';
  const platform: Platform = spec.platform ?? { os: 'linux', architecture: 'amd64' };
  const layers =
    typeof spec.layers === 'number'
      ? Array.from({ length: spec.layers }, (_, i) => randomBlob(spec.layerSize ?? 1024, `${spec.seed}/layer/${i}`))
      : spec.layers;
  const diffIds = layers.map((l) => digestOf(l));
  const config = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    created: '2024-01-01T00:00:00Z',
    config: { Labels: { 'org.regops.test.seed': spec.seed } },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: layers.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `layer ${i}` })),
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configRef = await pushBlob(registryUrl, repo, configBytes);
  const layerRefs: BlobRef[] = [];
  for (const l of layers) layerRefs.push(await pushBlob(registryUrl, repo, l));
  const manifestMediaType = oci ? MT.ociManifest : MT.dockerManifest;
  const manifest = {
    schemaVersion: 2,
    mediaType: manifestMediaType,
    config: { mediaType: oci ? MT.ociConfig : MT.dockerConfig, size: configRef.size, digest: configRef.digest },
    layers: layerRefs.map((l) => ({ mediaType: oci ? MT.ociLayer : MT.dockerLayer, size: l.size, digest: l.digest })),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 3));
  const manifestDigest = digestOf(manifestBytes);
  await putManifest(registryUrl, repo, tag ?? manifestDigest, manifestMediaType, manifestBytes);
  const blobs = [configRef, ...layerRefs];
  return {
    repo,
    tag,
    manifestDigest,
    manifestMediaType,
    manifestBytes,
    size: manifestBytes.length,
    configDigest: configRef.digest,
    configBytes,
    layerDigests: layerRefs.map((l) => l.digest),
    blobs,
    blobBytes: blobs.reduce((a, b) => a + b.size, 0),
    platform,
  };
}

/**
 * Push a manifest list / OCI index referencing `children` (already pushed, normally by
 * digest with tag undefined). Children from another repository are mounted and
 * re-put by digest into `repo` first.
 */
export async function pushIndex(
  registryUrl: string,
  repo: string,
  tag: string | undefined,
  children: PushedImage[],
  mediaType: 'docker' | 'oci' = 'docker',
): Promise<PushedIndex> {
  for (const c of children) {
    if (c.repo === repo) continue;
    for (const b of c.blobs) {
      if (!(await mountBlob(registryUrl, repo, b.digest, c.repo))) {
        throw new Error(`pushIndex: could not mount ${b.digest} from ${c.repo} into ${repo}`);
      }
    }
    await putManifest(registryUrl, repo, c.manifestDigest, c.manifestMediaType, c.manifestBytes);
  }
  const manifestMediaType = mediaType === 'oci' ? MT.ociIndex : MT.dockerList;
  const index = {
    schemaVersion: 2,
    mediaType: manifestMediaType,
    manifests: children.map((c) => ({
      mediaType: c.manifestMediaType,
      size: c.size,
      digest: c.manifestDigest,
      platform: {
        architecture: c.platform.architecture,
        os: c.platform.os,
        ...(c.platform.variant ? { variant: c.platform.variant } : {}),
      },
    })),
  };
  const manifestBytes = Buffer.from(JSON.stringify(index, null, 3));
  const manifestDigest = digestOf(manifestBytes);
  await putManifest(registryUrl, repo, tag ?? manifestDigest, manifestMediaType, manifestBytes);
  return {
    repo,
    tag,
    manifestDigest,
    manifestMediaType,
    manifestBytes,
    size: manifestBytes.length,
    children: children.map((c) => ({ ...c, repo })),
  };
}

/** DELETE /v2/<repo>/manifests/<digest> (distribution also drops the tags pointing at it). */
export async function deleteManifest(registryUrl: string, repo: string, digest: string): Promise<void> {
  const r = await req('DELETE', `${base(registryUrl)}/v2/${repo}/manifests/${digest}`);
  await expectStatus(r, [202], `delete manifest ${repo}@${digest}`);
  await r.arrayBuffer();
}

/** Distribution 2.8 has no tag delete: resolve the tag and delete its manifest (and so every tag on it). */
export async function deleteTagViaManifest(registryUrl: string, repo: string, tag: string): Promise<string> {
  const d = await headManifest(registryUrl, repo, tag);
  if (!d) throw new Error(`deleteTagViaManifest: ${repo}:${tag} not found`);
  await deleteManifest(registryUrl, repo, d);
  return d;
}

/** Digest (Docker-Content-Digest) of a manifest by tag or digest, undefined on 404. */
export async function headManifest(registryUrl: string, repo: string, ref: string): Promise<string | undefined> {
  const r = await req('HEAD', `${base(registryUrl)}/v2/${repo}/manifests/${ref}`, {
    headers: { Accept: MANIFEST_ACCEPT },
  });
  if (r.status === 404) return undefined;
  await expectStatus(r, [200], `head manifest ${repo}:${ref}`);
  return r.headers.get('docker-content-digest') ?? undefined;
}

export interface FetchedManifest {
  digest: string;
  mediaType: string;
  bytes: Buffer;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

/** GET a manifest (full Accept list); undefined on 404. `digest` is computed from the bytes. */
export async function getManifest(
  registryUrl: string,
  repo: string,
  ref: string,
): Promise<FetchedManifest | undefined> {
  const r = await req('GET', `${base(registryUrl)}/v2/${repo}/manifests/${ref}`, {
    headers: { Accept: MANIFEST_ACCEPT },
  });
  if (r.status === 404) {
    await r.arrayBuffer();
    return undefined;
  }
  await expectStatus(r, [200], `get manifest ${repo}:${ref}`);
  const bytes = Buffer.from(await r.arrayBuffer());
  const json = JSON.parse(bytes.toString('utf8'));
  return { digest: digestOf(bytes), mediaType: r.headers.get('content-type') ?? json.mediaType ?? '', bytes, json };
}

export async function listCatalog(registryUrl: string): Promise<string[]> {
  const out: string[] = [];
  let next: string | undefined = `${base(registryUrl)}/v2/_catalog?n=100`;
  while (next) {
    const r: Response = await req('GET', next);
    await expectStatus(r, [200], 'catalog');
    const j = (await r.json()) as { repositories?: string[] | null };
    out.push(...(j.repositories ?? []));
    const link = r.headers.get('link');
    const m = link ? /<([^>]+)>;\s*rel="?next"?/.exec(link) : null;
    next = m ? absolute(registryUrl, m[1]!) : undefined;
  }
  return out.sort();
}

/** Tags of a repository, sorted; [] when the repository is unknown or has none. */
export async function listTags(registryUrl: string, repo: string): Promise<string[]> {
  const r = await req('GET', `${base(registryUrl)}/v2/${repo}/tags/list`);
  if (r.status === 404) {
    await r.arrayBuffer();
    return [];
  }
  await expectStatus(r, [200], `tags ${repo}`);
  const j = (await r.json()) as { tags?: string[] | null };
  return (j.tags ?? []).sort();
}

export interface PullResult {
  ok: boolean;
  /** digests (manifests or blobs) that were missing or did not match their digest; the ref itself if not found */
  missing: string[];
  /** human-readable reasons, one per problem */
  errors: string[];
  manifests: string[];
  blobs: string[];
}

/**
 * Pull an image in full: the manifest (and for an index, each child manifest) and
 * every config/layer blob, verifying each sha256.
 */
export async function pullImage(registryUrl: string, repo: string, ref: string): Promise<PullResult> {
  const res: PullResult = { ok: true, missing: [], errors: [], manifests: [], blobs: [] };
  const fail = (what: string, why: string): void => {
    if (!res.missing.includes(what)) res.missing.push(what);
    res.errors.push(`${what}: ${why}`);
  };
  const pullManifest = async (r: string, expectedDigest?: string): Promise<void> => {
    let m: FetchedManifest | undefined;
    try {
      m = await getManifest(registryUrl, repo, r);
    } catch (e) {
      fail(r, String(e));
      return;
    }
    if (!m) return fail(r, 'manifest not found');
    const want = expectedDigest ?? (r.startsWith('sha256:') ? r : undefined);
    if (want && m.digest !== want) return fail(r, `manifest digest mismatch: got ${m.digest}`);
    res.manifests.push(m.digest);
    const mt: string = m.json.mediaType ?? m.mediaType;
    if (mt === MT.dockerList || mt === MT.ociIndex || Array.isArray(m.json.manifests)) {
      for (const c of m.json.manifests as { digest: string }[]) await pullManifest(c.digest, c.digest);
      return;
    }
    const descs: { digest: string; size?: number }[] = [m.json.config, ...(m.json.layers ?? [])].filter(Boolean);
    for (const d of descs) {
      try {
        const r2 = await req('GET', `${base(registryUrl)}/v2/${repo}/blobs/${d.digest}`);
        if (r2.status !== 200) {
          await r2.arrayBuffer().catch(() => undefined);
          fail(d.digest, `blob GET HTTP ${r2.status}`);
          continue;
        }
        const body = Buffer.from(await r2.arrayBuffer());
        if (digestOf(body) !== d.digest) fail(d.digest, `blob content hashes to ${digestOf(body)}`);
        else if (d.size !== undefined && body.length !== d.size)
          fail(d.digest, `blob size ${body.length} != ${d.size}`);
        else res.blobs.push(d.digest);
      } catch (e) {
        fail(d.digest, String(e));
      }
    }
  };
  await pullManifest(ref);
  res.ok = res.missing.length === 0;
  return res;
}
