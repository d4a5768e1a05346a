// The admin API on its own uWS app in the main thread. Never on the proxy port.
import uWS from 'uWebSockets.js';
import type { HostPort } from './config/config';
import type { BackendAdmin } from './backend-admin';
import { prometheusText, statsJson } from './metrics';
import type { Supervisor } from './supervisor';
import type { TelemetryAggregate } from './telemetry';

export interface AdminServer {
  readonly port: number;
  close(): void;
}

export function startAdmin(address: HostPort, supervisor: Supervisor, agg: TelemetryAggregate, startedAt: number, backends?: BackendAdmin): Promise<AdminServer> {
  const app = uWS.App();
  const send = (res: uWS.HttpResponse, status: string, type: string, body: string): void => {
    res.cork(() => res.writeStatus(status).writeHeader('content-type', type).writeHeader('cache-control', 'no-store').end(body));
  };
  app.get('/health', (res) => send(res, '200 OK', 'text/plain', 'ok\n'));
  app.get('/ready', (res) => {
    if (supervisor.ready) send(res, '200 OK', 'text/plain', 'ready\n');
    else send(res, '503 Service Unavailable', 'text/plain', `not ready: workers ${supervisor.phases.join(',')}\n`);
  });
  app.get('/metrics', (res) => send(res, '200 OK', 'text/plain; version=0.0.4', prometheusText(agg, supervisor.phases) + (backends?.prometheus() ?? '')));
  app.get('/stats', (res) => {
    const stats = statsJson(agg, supervisor.phases, startedAt);
    const body = backends ? { ...stats, backends: backends.backends(), retries: backends.retriesTotal() } : stats;
    send(res, '200 OK', 'application/json', JSON.stringify(body, null, 2) + '\n');
  });
  if (backends) {
    for (const action of ['drain', 'up'] as const) {
      app.post(`/backends/${action}`, (res) =>
        readBody(res, send, (body) => {
          const [status, text] = backends.act(action, body);
          send(res, status, 'application/json', text);
        }),
      );
    }
  }
  app.post('/cache/purge', (res) => cachePurge(res, supervisor, send));
  app.any('/*', (res) => send(res, '404 Not Found', 'text/plain', 'admin endpoints: /health /ready /metrics /stats, POST /backends/drain /backends/up /cache/purge\n'));
  return new Promise((resolve, reject) => {
    app.listen(address.host, address.port, (socket) => {
      if (!socket) return reject(new Error(`admin: cannot listen on ${address.host}:${address.port}`));
      resolve({
        port: uWS.us_socket_local_port(socket),
        close: () => (app as unknown as { close(): void }).close(),
      });
    });
  });
}

type Send = (res: uWS.HttpResponse, status: string, type: string, body: string) => void;

/** Collect a small request body (admin only): 413 above 64 KiB. `done` gets the text and a
 * check telling whether the response may still be written (the client may leave meanwhile). */
function readBody(res: uWS.HttpResponse, send: Send, done: (body: string, open: () => boolean) => void): void {
  const parts: Buffer[] = [];
  let size = 0;
  let closed = false;
  res.onAborted(() => (closed = true));
  res.onData((chunk, isLast) => {
    if (closed) return;
    size += chunk.byteLength;
    if (size > 64 * 1024) {
      closed = true;
      send(res, '413 Payload Too Large', 'text/plain', 'body too large\n');
      return;
    }
    parts.push(Buffer.from(chunk.slice(0)));
    if (isLast) done(Buffer.concat(parts).toString('utf8'), () => !closed);
  });
}

/** POST /cache/purge {"prefix":"/path"} or {"url":"/path?q"}: every worker drops the matching
 * entries; the answer says how many workers acknowledged. */
function cachePurge(res: uWS.HttpResponse, supervisor: Supervisor, send: Send): void {
  readBody(res, send, (text, open) => {
    let match: { url?: string; prefix?: string };
    try {
      const b = ((JSON.parse(text) as unknown) ?? {}) as Record<string, unknown>;
      if (typeof b.url === 'string' && b.url.startsWith('/')) match = { url: b.url };
      else if (typeof b.prefix === 'string' && b.prefix.startsWith('/')) match = { prefix: b.prefix };
      else throw new Error('no url or prefix');
    } catch {
      send(res, '400 Bad Request', 'application/json', JSON.stringify({ error: 'expected {"prefix":"/path"} or {"url":"/path?query"}' }) + '\n');
      return;
    }
    void supervisor.purgeCache(match).then((result) => {
      if (open()) send(res, '200 OK', 'application/json', JSON.stringify({ ...match, ...result }) + '\n');
    });
  });
}
