// A fault-injecting HTTP proxy on 127.0.0.1 for tests: it forwards to a real server (radosgw, the
// registry) and, for the requests a rule matches, answers 503 SlowDown or another status, resets the
// connection, stalls, truncates the body or lies in Content-Length. Seeded, so a failing trial replays.
//
// SigV4 signs the Host header: the proxy forwards the client's Host unchanged, so a request signed for
// the proxy's address verifies at radosgw (which checks the signature, not that the host is its own).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { prng } from './scenario.js';

export type FaultAction =
  | { kind: 'pass' }
  /** an S3-style XML error (503 SlowDown, 500 InternalError, 403 AccessDenied, ...) */
  | { kind: 'status'; status: number; code?: string; retryAfterSeconds?: number }
  /** answer with this body instead of forwarding (e.g. a DeleteResult naming per-key errors) */
  | { kind: 'reply'; status: number; body: string; contentType?: string }
  /** destroy the client's socket before any response */
  | { kind: 'reset' }
  /** hold the request this long, then forward it */
  | { kind: 'stall'; ms: number }
  /** forward, but cut the body after this many bytes and destroy the socket */
  | { kind: 'truncate'; bytes: number }
  /** forward, announcing a Content-Length larger than the body */
  | { kind: 'wrong-length' }
  /**
   * forward, with the server's clock shifted by this many ms: Date and Last-Modified headers, and the
   * <LastModified> of a ListObjectsV2 body (so a listing can show objects as days old: S3's ageTree)
   */
  | { kind: 'shift-clock'; ms: number };

export interface ProxiedRequest {
  method: string;
  /** path without the query */
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
}

/** A stat: a HEAD, or the GET of the first byte the S3 driver sends instead (radosgw closes after a HEAD). */
export const isStat = (r: ProxiedRequest): boolean =>
  r.method === 'HEAD' || (r.method === 'GET' && r.headers.range === 'bytes=0-0');

export interface FaultRule {
  name: string;
  match: (req: ProxiedRequest) => boolean;
  action: FaultAction;
  /** apply to at most this many matching requests (default: all) */
  times?: number;
  /** apply to this fraction of matching requests, drawn from the seeded generator (default 1) */
  fraction?: number;
}

export interface FaultLogEntry {
  method: string;
  url: string;
  rule?: string;
  action: FaultAction['kind'];
}

/**
 * A server that slows down as it fills, as an S3 endpoint under load does: each request waits
 * `baseLatencyMs + latencyPerInFlightMs` × (requests in flight), and one that would make more than
 * `maxInFlight` in flight, or start more than `maxPerSecond` in a second, is answered 503 SlowDown at once.
 * Applied before the rules; requests the rules answer themselves are not throttled.
 */
export interface ThrottleMode {
  maxInFlight?: number;
  maxPerSecond?: number;
  baseLatencyMs?: number;
  latencyPerInFlightMs?: number;
}

export interface ThrottleStats {
  /** requests answered 503 SlowDown by the throttle */
  throttled: number;
  /** requests forwarded */
  passed: number;
  /** most requests in flight at once (forwarded or waiting) */
  peakInFlight: number;
}

export interface FaultProxy {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  port: number;
  seed: number;
  /** every request seen, in order, with the rule that fired (if any) */
  log: FaultLogEntry[];
  /** how many times each rule fired */
  fired(rule: string): number;
  setRules(rules: FaultRule[]): void;
  /** turn the throttling mode on (or off with undefined); its counters start again from zero */
  setThrottle(mode: ThrottleMode | undefined): void;
  throttleStats(): ThrottleStats;
  close(): Promise<void>;
}

function s3ErrorBody(code: string, status: number): string {
  return `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected ${status} by the test proxy</Message><RequestId>fault-proxy</RequestId></Error>`;
}

const DEFAULT_CODES: Record<number, string> = {
  403: 'AccessDenied',
  404: 'NoSuchKey',
  500: 'InternalError',
  503: 'SlowDown',
};

export async function startFaultProxy(opts: {
  target: string;
  rules?: FaultRule[];
  seed?: number;
  throttle?: ThrottleMode;
}): Promise<FaultProxy> {
  const target = new URL(opts.target);
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
  const random = prng(seed);
  let rules = opts.rules ?? [];
  const counts = new Map<string, number>();
  const log: FaultLogEntry[] = [];
  let throttle = opts.throttle;
  let inFlight = 0;
  let stats: ThrottleStats = { throttled: 0, passed: 0, peakInFlight: 0 };
  let windowStart = Date.now();
  let startedInWindow = 0;
  /** Admits a request (and counts it in flight until its response ends) or says it is throttled. */
  const admit = (res: http.ServerResponse): number | undefined => {
    if (!throttle) return 0;
    const now = Date.now();
    if (now - windowStart >= 1000) {
      windowStart = now;
      startedInWindow = 0;
    }
    if (
      (throttle.maxInFlight !== undefined && inFlight >= throttle.maxInFlight) ||
      (throttle.maxPerSecond !== undefined && startedInWindow >= throttle.maxPerSecond)
    ) {
      stats.throttled++;
      return undefined;
    }
    startedInWindow++;
    inFlight++;
    stats.passed++;
    stats.peakInFlight = Math.max(stats.peakInFlight, inFlight);
    res.on('close', () => inFlight--);
    return (throttle.baseLatencyMs ?? 0) + (throttle.latencyPerInFlightMs ?? 0) * inFlight;
  };

  const choose = (req: ProxiedRequest): FaultRule | undefined => {
    for (const rule of rules) {
      if (!rule.match(req)) continue;
      if (rule.times !== undefined && (counts.get(rule.name) ?? 0) >= rule.times) continue;
      if (rule.fraction !== undefined && random() >= rule.fraction) continue;
      counts.set(rule.name, (counts.get(rule.name) ?? 0) + 1);
      return rule;
    }
    return undefined;
  };

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, action: FaultAction): void => {
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        const headers = { ...up.headers };
        if (action.kind === 'shift-clock') {
          for (const name of ['date', 'last-modified'] as const) {
            const value = up.headers[name];
            if (value) headers[name] = new Date(Date.parse(value) + action.ms).toUTCString();
          }
        }
        if (action.kind === 'wrong-length') {
          // The body is collected first: a chunked answer (a listing) has no length to lie about until it
          // is all in, and announcing one next to Transfer-Encoding would not parse as HTTP at all.
          const chunks: Buffer[] = [];
          up.on('data', (chunk: Buffer) => chunks.push(chunk));
          up.on('end', () => {
            const length =
              req.method === 'HEAD' ? Number(up.headers['content-length'] ?? 0) : Buffer.concat(chunks).length;
            delete headers['transfer-encoding'];
            headers['content-length'] = String(length + 100);
            res.writeHead(up.statusCode ?? 502, headers);
            res.write(Buffer.concat(chunks), () => res.socket?.destroy());
          });
          return;
        }
        if (action.kind === 'shift-clock' && String(up.headers['content-type'] ?? '').includes('xml')) {
          const chunks: Buffer[] = [];
          up.on('data', (chunk: Buffer) => chunks.push(chunk));
          up.on('end', () => {
            const body = Buffer.from(
              Buffer.concat(chunks)
                .toString('utf8')
                .replace(
                  /<LastModified>([^<]+)<\/LastModified>/g,
                  (_, when: string) =>
                    `<LastModified>${new Date(Date.parse(when) + action.ms).toISOString()}</LastModified>`,
                ),
            );
            delete headers['transfer-encoding'];
            headers['content-length'] = String(body.length);
            res.writeHead(up.statusCode ?? 502, headers);
            res.end(body);
          });
          return;
        }
        res.writeHead(up.statusCode ?? 502, headers);
        if (action.kind === 'truncate') {
          let sent = 0;
          up.on('data', (chunk: Buffer) => {
            const room = action.bytes - sent;
            sent += chunk.length;
            if (room <= 0) return;
            // Cut once the head and the first bytes are on the wire: destroyed at once, the socket could
            // drop them too, and the client would see a refused answer instead of a body cut short.
            const last = sent >= action.bytes;
            res.write(chunk.subarray(0, room), () => void (last && res.socket?.destroy()));
            if (last) up.destroy();
          });
          up.on('end', () => res.socket?.destroy());
          return;
        }
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.socket?.destroy());
    // A client that hangs up (an aborted upload) ends the upstream request too, instead of leaving it
    // waiting for the server's timeout and this process alive.
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const seen: ProxiedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
    };
    const rule = choose(seen);
    let action: FaultAction = rule?.action ?? { kind: 'pass' };
    if (action.kind === 'pass' && throttle) {
      const delay = admit(res);
      action =
        delay === undefined ? { kind: 'status', status: 503 } : delay > 0 ? { kind: 'stall', ms: delay } : action;
    }
    log.push({ method: seen.method, url: req.url ?? '/', rule: rule?.name, action: action.kind });
    switch (action.kind) {
      case 'status': {
        req.resume();
        const body = s3ErrorBody(action.code ?? DEFAULT_CODES[action.status] ?? 'InjectedError', action.status);
        const headers: http.OutgoingHttpHeaders = {
          'content-type': 'application/xml',
          'content-length': Buffer.byteLength(body),
        };
        if (action.retryAfterSeconds !== undefined) headers['retry-after'] = String(action.retryAfterSeconds);
        res.writeHead(action.status, headers);
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      case 'reply':
        req.resume();
        res.writeHead(action.status, {
          'content-type': action.contentType ?? 'application/xml',
          'content-length': Buffer.byteLength(action.body),
        });
        res.end(req.method === 'HEAD' ? undefined : action.body);
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'stall':
        setTimeout(() => forward(req, res, { kind: 'pass' }), action.ms);
        return;
      default:
        forward(req, res, action);
    }
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    seed,
    log,
    fired: (name) => counts.get(name) ?? 0,
    setRules(next) {
      rules = next;
    },
    setThrottle(mode) {
      throttle = mode;
      stats = { throttled: 0, passed: 0, peakInFlight: 0 };
    },
    throttleStats: () => ({ ...stats }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
