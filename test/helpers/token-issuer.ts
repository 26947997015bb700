// A bearer-token issuer for docker-registry's `auth.token` mode, on 127.0.0.1.
//
// The registry trusts tokens whose JWT header carries an x5c chain ending in a
// certificate of its `rootcertbundle`; here the chain is one self-signed
// certificate (made with the openssl CLI) that is also the bundle. Tokens are
// RS256 JWTs with the distribution claim set (iss, sub, aud, exp, nbf, iat,
// jti, access). Every token request is counted and its scope remembered.
import { createSign, randomUUID, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { freePort } from './ports.js';
import { makeTempDir, removeTempDir, runCommand } from './tmp.js';

export interface TokenIssuer {
  /** http://127.0.0.1:PORT/token */
  realm: string;
  service: string;
  issuer: string;
  /** PEM file for the registry's auth.token.rootcertbundle */
  rootCertBundle: string;
  /** token requests received, with their scope and whether they carried Basic credentials */
  requests: Array<{ scope: string | null; at: number; basic: boolean }>;
  /** `auth` section for registryConfig() */
  registryAuth(): { realm: string; service: string; issuer: string; rootcertbundle: string };
  stop(): Promise<void>;
}

const b64url = (buf: Buffer | string): string => Buffer.from(buf).toString('base64url');

export async function startTokenIssuer(opts: { lifetimeSeconds?: number } = {}): Promise<TokenIssuer> {
  const dir = makeTempDir('token');
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  await runCommand('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-days',
    '2',
    '-subj',
    '/CN=regops-test-token-issuer',
  ]);
  const key = readFileSync(keyFile, 'utf8');
  const certDer = new X509Certificate(readFileSync(certFile)).raw;
  const lifetime = opts.lifetimeSeconds ?? 60;
  const service = 'regops-test-registry';
  const issuer = 'regops-test-issuer';
  const requests: TokenIssuer['requests'] = [];

  const sign = (scope: string | null): string => {
    const now = Math.floor(Date.now() / 1000);
    const access = [];
    const m = scope ? /^(repository|registry):([^:]+):(.+)$/.exec(scope) : null;
    if (m) access.push({ type: m[1], name: m[2], actions: m[3]!.split(',') });
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
    const claims = {
      iss: issuer,
      sub: 'loadtest',
      aud: service,
      exp: now + lifetime,
      nbf: now - 5,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(input).sign(key);
    return `${input}.${b64url(signature)}`;
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/token') {
      res.writeHead(404).end();
      return;
    }
    const scope = url.searchParams.get('scope');
    requests.push({ scope, at: Date.now(), basic: (req.headers.authorization ?? '').startsWith('Basic ') });
    const token = sign(scope);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: lifetime, issued_at: new Date().toISOString() }));
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const realm = `http://127.0.0.1:${port}/token`;
  return {
    realm,
    service,
    issuer,
    rootCertBundle: certFile,
    requests,
    registryAuth: () => ({ realm, service, issuer, rootcertbundle: certFile }),
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await removeTempDir(dir);
    },
  };
}
