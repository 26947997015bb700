// A loopback HTTP proxy in front of one origin, for load tests:
//  - it records every request's method, URL and headers (to prove what a client sent where);
//  - stall(windowMs, holdMs): for windowMs from now, each request is held holdMs before it is forwarded,
//    which is what a stalled registry looks like to its clients.
// Host headers are forwarded unchanged, so presigned S3 URLs made for the proxy's address still verify.
import http from 'node:http';
import { freePort } from './ports.js';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  at: number;
}

export interface HttpProxy {
  /** http://127.0.0.1:PORT */
  url: string;
  requests: RecordedRequest[];
  /** hold each request that arrives during the next windowMs for holdMs */
  stall(windowMs: number, holdMs: number): void;
  stop(): Promise<void>;
}

export async function startHttpProxy(target: string, opts: { record?: boolean } = {}): Promise<HttpProxy> {
  const to = new URL(target);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const requests: RecordedRequest[] = [];
  let stallUntil = 0;
  let holdMs = 0;
  const server = http.createServer((req, res) => {
    if (opts.record !== false)
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers }, at: Date.now() });
    const forward = (): void => {
      const upstream = http.request(
        { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers, agent },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    if (Date.now() < stallUntil) setTimeout(forward, holdMs);
    else forward();
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    stall(windowMs, hold) {
      stallUntil = Date.now() + windowMs;
      holdMs = hold;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
