// The admin API on its own uWS app in the main thread. Never on the proxy port.
import uWS from 'uWebSockets.js';
import type { HostPort } from './config/config';
import { jsonError, type BackendAdmin } from './backend-admin';
import { log } from './log';
import { prometheusText, statsJson } from './metrics';
import type { Supervisor } from './supervisor';
import type { TelemetryAggregate } from './telemetry';

export interface AdminServer {
  readonly port: number;
  close(): void;
}

export function startAdmin(address: HostPort, supervisor: Supervisor, agg: TelemetryAggregate, startedAt: number, backends?: BackendAdmin): Promise<AdminServer> {
  const app = uWS.App();
  const send: Send = (res, status, type, body, head = false, extra = {}) => {
    res.cork(() => {
      const r = res.writeStatus(status).writeHeader('content-type', type).writeHeader('cache-control', 'no-store');
      for (const [k, v] of Object.entries(extra)) r.writeHeader(k, v);
      // HEAD: the headers (Content-Length of the GET body included), no body. This uWS build
      // writes the body after a HEAD's headers on end(body) (the next response on the
      // connection then starts inside it), and endWithoutBody(length) aborts the process.
      if (head) r.writeHeader('content-length', String(Buffer.byteLength(body))).endWithoutBody();
      else r.end(body);
    });
  };
  // Each endpoint and its methods, so a known path asked with another method is a 405 naming
  // them (Allow), not a 404 that reads as "no such endpoint". HEAD answers like GET without
  // the body: load balancers and uptime probes often check /health that way.
  const gets: Record<string, (res: uWS.HttpResponse, head: boolean) => void> = {
    '/health': (res, head) => send(res, '200 OK', 'text/plain', 'ok\n', head),
    '/ready': (res, head) => {
      if (supervisor.ready) send(res, '200 OK', 'text/plain', 'ready\n', head);
      else send(res, '503 Service Unavailable', 'text/plain', `not ready: workers ${supervisor.phases.join(',')}\n`, head);
    },
    '/metrics': (res, head) => send(res, '200 OK', 'text/plain; version=0.0.4', prometheusText(agg, supervisor.phases) + (backends?.prometheus() ?? ''), head),
    '/stats': (res, head) => {
      const stats = statsJson(agg, supervisor.phases, startedAt);
      const body = backends ? { ...stats, backends: backends.backends(), retries: backends.retriesTotal() } : stats;
      send(res, '200 OK', 'application/json', JSON.stringify(body, null, 2) + '\n', head);
    },
  };
  for (const [path, handler] of Object.entries(gets)) {
    app.get(path, (res) => handler(res, false));
    app.head(path, (res) => handler(res, true));
    app.any(path, (res, req) => notAllowed(res, req, 'GET, HEAD', send));
  }
  const posts: Record<string, (res: uWS.HttpResponse) => void> = {
    '/cache/purge': (res) => cachePurge(res, supervisor, send),
  };
  if (backends) {
    for (const action of ['drain', 'up'] as const) {
      posts[`/backends/${action}`] = (res) =>
        readBody(res, send, (body) => {
          const [status, text] = backends.act(action, body);
          send(res, status, 'application/json', text);
        });
    }
  }
  for (const [path, handler] of Object.entries(posts)) {
    app.post(path, handler);
    app.any(path, (res, req) => notAllowed(res, req, 'POST', send));
  }
  app.any('/*', (res, req) => send(res, '404 Not Found', 'text/plain', `admin endpoints: ${ENDPOINTS}\n`, req.getMethod() === 'head'));
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

type Send = (res: uWS.HttpResponse, status: string, type: string, body: string, head?: boolean, extra?: Record<string, string>) => void;

const ENDPOINTS = '/health /ready /metrics /stats, POST /backends/drain /backends/up /cache/purge';

function notAllowed(res: uWS.HttpResponse, req: uWS.HttpRequest, allow: string, send: Send): void {
  const method = req.getCaseSensitiveMethod();
  send(res, '405 Method Not Allowed', 'application/json', jsonError(`${method} not allowed (allow: ${allow})`), req.getMethod() === 'head', { allow });
}


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
      // Closing with the answer: once uWS has answered before the body ended and then read the
      // rest, it no longer times the connection out, so an idle client kept it forever.
      const text = jsonError('body larger than 64 KiB');
      res.cork(() => res.writeStatus('413 Payload Too Large').writeHeader('content-type', 'application/json').writeHeader('cache-control', 'no-store').end(text, true));
      return;
    }
    parts.push(Buffer.from(chunk.slice(0)));
    if (!isLast) return;
    try {
      done(Buffer.concat(parts).toString('utf8'), () => !closed);
    } catch (err) {
      // The admin API runs on the main thread: a bug in a handler must cost this request a 500,
      // not the whole gateway (a JSON body of null once did).
      log('error', `admin: ${(err as Error).stack ?? err}`);
      if (closed) return;
      closed = true;
      try {
        send(res, '500 Internal Server Error', 'application/json', jsonError('internal error (see the log)'));
      } catch {
        // Answered already, before the throw.
      }
    }
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
      send(res, '400 Bad Request', 'application/json', jsonError('expected {"prefix":"/path"} or {"url":"/path?query"}'));
      return;
    }
    void supervisor.purgeCache(match).then((result) => {
      if (open()) send(res, '200 OK', 'application/json', JSON.stringify({ ...match, ...result }) + '\n');
    });
  });
}
