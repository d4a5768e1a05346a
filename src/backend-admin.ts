// The admin view of the backend table: /stats "backends", per-backend Prometheus series, and
// the drain / up actions (POST /backends/drain, POST /backends/up).
import { normalizeBackendUrl, type GatewayConfig } from './config/config';
import { BackendTable, CIRCUIT_NAMES, markUp, type BackendRows } from './shared/backend-table';
import {
  BK_CIRCUIT,
  BK_DRAINED,
  BK_EJECTED_UNTIL,
  BK_EJECTIONS,
  BK_EWMA_US,
  BK_FAILURES,
  BK_HEALTHY,
  BK_IN_FLIGHT,
  BK_REQUESTS,
  BT_RETRIES_TOTAL,
} from './shared/layout';

export interface BackendRow {
  route: string;
  url: string;
  backup: boolean;
  weight: number;
  /** How many times the route lists this URL (all of them share this row). */
  entries: number;
  healthy: boolean;
  drained: boolean;
  ejected: boolean;
  inFlight: number;
  ewmaMs: number;
  failures: number;
  ejections: number;
  circuit: string;
  requests: number;
}

/** The body of every admin error answer: {"error": "..."}. */
export function jsonError(error: string): string {
  return JSON.stringify({ error }) + '\n';
}

interface AdminRow {
  route: string;
  url: string;
  origin: string;
  backup: boolean;
  weight: number;
  entries: number;
  row: number;
}

export class BackendAdmin {
  private readonly rows: AdminRow[] = [];

  constructor(config: GatewayConfig, readonly table: BackendTable, rows: BackendRows) {
    this.update(config, rows);
  }

  /** After a reload: the new routes and their rows. A URL that a route lists more than once
   * has one table row (src/backend-rows.ts): its health, ejection, circuit and counts are
   * those of one backend, so it is one admin row, whose weight is the sum of its entries'
   * (the share of the route it gets). Shown once per entry, each would repeat the same counts,
   * and a sum over /stats would count its requests twice. */
  update(config: GatewayConfig, idx: BackendRows): void {
    const table = this.table;
    this.rows.length = 0;
    config.routes.forEach((r, ri) => {
      const byRow = new Map<number, AdminRow>();
      r.backends.forEach((b, bi) => {
        const row = table.row(idx[ri][bi]);
        const seen = byRow.get(row);
        if (seen === undefined) {
          const entry = { route: r.name, url: b.url, origin: b.origin, backup: b.backup, weight: b.weight, entries: 1, row };
          byRow.set(row, entry);
          this.rows.push(entry);
          return;
        }
        seen.entries++;
        // A URL both primary and backup in one route is refused at load (src/config/config.ts).
        seen.weight += b.weight;
      });
    });
  }

  backends(): BackendRow[] {
    const t = this.table.i32;
    const now = this.table.now();
    return this.rows.map((r) => {
      const until = Atomics.load(t, r.row + BK_EJECTED_UNTIL);
      return {
        route: r.route,
        url: r.url,
        backup: r.backup,
        weight: r.weight,
        entries: r.entries,
        healthy: Atomics.load(t, r.row + BK_HEALTHY) === 1,
        drained: Atomics.load(t, r.row + BK_DRAINED) === 1,
        ejected: until !== 0 && until > now,
        inFlight: Atomics.load(t, r.row + BK_IN_FLIGHT),
        ewmaMs: Math.round(Atomics.load(t, r.row + BK_EWMA_US) / 10) / 100,
        failures: Atomics.load(t, r.row + BK_FAILURES) >>> 0,
        ejections: Atomics.load(t, r.row + BK_EJECTIONS) >>> 0,
        circuit: CIRCUIT_NAMES[Atomics.load(t, r.row + BK_CIRCUIT)] ?? 'unknown',
        requests: Atomics.load(t, r.row + BK_REQUESTS) >>> 0,
      };
    });
  }

  retriesTotal(): number {
    return Atomics.load(this.table.i32, BT_RETRIES_TOTAL) >>> 0;
  }

  prometheus(): string {
    const label = (b: BackendRow) => `{route="${b.route}",backend="${b.url}"}`;
    // One row per route and URL (update()), so each series appears once in the exposition.
    const rows = this.backends();
    const out: string[] = [];
    const series = (name: string, type: string, help: string, value: (b: BackendRow) => number) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const b of rows) out.push(`${name}${label(b)} ${value(b)}`);
    };
    series('ugate_backend_up', 'gauge', 'Backend may take new requests (healthy, not drained, not ejected, circuit not open).', (b) =>
      b.healthy && !b.drained && !b.ejected && b.circuit !== 'open' ? 1 : 0,
    );
    series('ugate_backend_in_flight', 'gauge', 'Requests in flight to the backend, all workers.', (b) => b.inFlight);
    series('ugate_backend_requests_total', 'counter', 'Requests (attempts, retries included) sent to the backend.', (b) => b.requests);
    series('ugate_backend_failures_total', 'counter', 'Connection failures, resets, timeouts and 5xx answers from the backend.', (b) => b.failures);
    series('ugate_backend_ejections_total', 'counter', 'Times passive health checks ejected the backend.', (b) => b.ejections);
    series('ugate_backend_response_ewma_seconds', 'gauge', 'EWMA of time to response headers.', (b) => b.ewmaMs / 1000);
    out.push('# HELP ugate_retries_total Requests re-sent to another backend.', '# TYPE ugate_retries_total counter', `ugate_retries_total ${this.retriesTotal()}`);
    return out.join('\n') + '\n';
  }

  /** POST /backends/drain and /backends/up. Returns [status line, body]. */
  act(action: 'drain' | 'up', body: string): [string, string] {
    const bad = (status: string, error: string): [string, string] => [status, jsonError(error)];
    const usage = 'body must be JSON {"route":"default","backend":"http://host:port"} ("route" optional)';
    let req: { route?: unknown; backend?: unknown };
    try {
      req = JSON.parse(body) as typeof req;
    } catch {
      return bad('400 Bad Request', usage);
    }
    // JSON.parse accepts null, numbers, strings and arrays too: reading a field of null threw
    // in the uWS callback and took the whole process down.
    if (typeof req !== 'object' || req === null || Array.isArray(req)) return bad('400 Bad Request', `${usage}, not ${JSON.stringify(req)}`);
    if (typeof req.backend !== 'string') return bad('400 Bad Request', `backend: ${JSON.stringify(req.backend ?? null)} is not a string; ${usage}`);
    if (req.route !== undefined && typeof req.route !== 'string') return bad('400 Bad Request', `route: ${JSON.stringify(req.route)} is not a string; ${usage}`);
    // Any spelling of the origin names it: "http://A:80/" finds the row shown as "http://a:80".
    const name = normalizeBackendUrl(req.backend);
    const matches = this.rows.filter(
      (r) => (req.route === undefined || r.route === req.route) && (r.url === req.backend || r.url === name),
    );
    if (matches.length === 0) return bad('404 Not Found', `no backend ${JSON.stringify(req.backend)} in route ${JSON.stringify(req.route ?? '*')}`);
    for (const m of matches) {
      if (action === 'drain') Atomics.store(this.table.i32, m.row + BK_DRAINED, 1);
      else markUp(this.table.i32, m.row);
    }
    return ['200 OK', JSON.stringify({ action, backends: matches.map((m) => ({ route: m.route, backend: m.url })) }) + '\n'];
  }
}
