// The admin API on its own uWS app in the main thread. Never on the proxy port.
import uWS from 'uWebSockets.js';
import type { HostPort } from './config/config';
import { prometheusText, statsJson } from './metrics';
import type { Supervisor } from './supervisor';
import type { TelemetryAggregate } from './telemetry';

export interface AdminServer {
  readonly port: number;
  close(): void;
}

export function startAdmin(address: HostPort, supervisor: Supervisor, agg: TelemetryAggregate, startedAt: number): Promise<AdminServer> {
  const app = uWS.App();
  const send = (res: uWS.HttpResponse, status: string, type: string, body: string): void => {
    res.cork(() => res.writeStatus(status).writeHeader('content-type', type).writeHeader('cache-control', 'no-store').end(body));
  };
  app.get('/health', (res) => send(res, '200 OK', 'text/plain', 'ok\n'));
  app.get('/ready', (res) => {
    if (supervisor.ready) send(res, '200 OK', 'text/plain', 'ready\n');
    else send(res, '503 Service Unavailable', 'text/plain', `not ready: workers ${supervisor.phases.join(',')}\n`);
  });
  app.get('/metrics', (res) => send(res, '200 OK', 'text/plain; version=0.0.4', prometheusText(agg, supervisor.phases)));
  app.get('/stats', (res) => send(res, '200 OK', 'application/json', JSON.stringify(statsJson(agg, supervisor.phases, startedAt), null, 2) + '\n'));
  app.post('/cache/purge', (res) => cachePurge(res, supervisor, send));
  app.any('/*', (res) => send(res, '404 Not Found', 'text/plain', 'admin endpoints: /health /ready /metrics /stats, POST /cache/purge\n'));
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

/** POST /cache/purge {"prefix":"/path"} or {"url":"/path?q"}: every worker drops the matching
 * entries; the answer says how many workers acknowledged. */
function cachePurge(res: uWS.HttpResponse, supervisor: Supervisor, send: Send): void {
  let aborted = false;
  res.onAborted(() => (aborted = true));
  const parts: Buffer[] = [];
  let size = 0;
  res.onData((chunk, isLast) => {
    size += chunk.byteLength;
    if (size > 64 * 1024) {
      if (!aborted) {
        aborted = true;
        send(res, '413 Payload Too Large', 'text/plain', 'body too large\n');
      }
      return;
    }
    parts.push(Buffer.from(chunk.slice(0)));
    if (!isLast || aborted) return;
    let match: { url?: string; prefix?: string };
    try {
      const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as unknown;
      const b = (body ?? {}) as Record<string, unknown>;
      if (typeof b.url === 'string' && b.url.startsWith('/')) match = { url: b.url };
      else if (typeof b.prefix === 'string' && b.prefix.startsWith('/')) match = { prefix: b.prefix };
      else throw new Error('x');
    } catch {
      send(res, '400 Bad Request', 'application/json', JSON.stringify({ error: 'expected {"prefix":"/path"} or {"url":"/path?query"}' }) + '\n');
      return;
    }
    void supervisor.purgeCache(match).then((result) => {
      if (!aborted) send(res, '200 OK', 'application/json', JSON.stringify({ ...match, ...result }) + '\n');
    });
  });
}
