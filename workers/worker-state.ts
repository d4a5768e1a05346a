// What one proxy worker owns: its routes with their undici pools, its telemetry, its flags.
// Nothing here is shared with another thread except through src/shared (rings, tables).
import { Pool } from 'undici';
import type { Backend, GatewayConfig, RouteConfig } from '../src/config/config';
import { BackendTable, backendTableIndexes } from '../src/shared/backend-table';
import type { Balancer } from './balancers/balancer';
import { createBalancer } from './balancers/registry';
import type { RetryBudget } from './retry-budget';
import type { WorkerTelemetry } from './telemetry';

export interface RuntimeBackend {
  readonly config: Backend;
  readonly pool: Pool;
  /** Position in its route's backend list. */
  readonly index: number;
  /** The shared backend table (src/shared/backend-table.ts) and this backend's row in it. */
  readonly state: Int32Array;
  readonly row: number;
  /** Stable id for the sticky cookie (derived from the URL, same in every worker). */
  readonly stickyId: string;
  /** The whole Set-Cookie value that pins a client to this backend. */
  readonly stickyCookie: string;
}

export interface RuntimeRoute {
  readonly index: number;
  readonly config: RouteConfig;
  readonly backends: readonly RuntimeBackend[];
  /** Round-robin cursor (per worker). */
  next: number;
  readonly balancer: Balancer;
  /** Reused by the balance stage: the backends usable for the current request. */
  readonly candidates: RuntimeBackend[];
}

export interface WorkerState {
  readonly index: number;
  readonly config: GatewayConfig;
  readonly routes: readonly RuntimeRoute[];
  readonly trustedProxies: ReadonlySet<string>;
  readonly telemetry: WorkerTelemetry;
  /** Set when the main thread asked this worker to drain: new responses carry Connection: close. */
  draining: boolean;
  inFlight: number;
  /** Per-backend state shared with main and the other workers. */
  readonly backendTable: BackendTable;
  readonly retryBudget: RetryBudget;
}

export function createRoutes(config: GatewayConfig, table: BackendTable): RuntimeRoute[] {
  const rows = backendTableIndexes(config);
  return config.routes.map((route, index) => {
    const backends: RuntimeBackend[] = route.backends.map((backend, i) => {
      const stickyId = stickyIdOf(backend.url);
      return {
        config: backend,
        pool: createPool(route, backend),
        index: i,
        state: table.i32,
        row: table.row(rows[index][i]),
        stickyId,
        stickyCookie: `${STICKY_COOKIE}=${stickyId}; Path=/; HttpOnly; SameSite=Lax`,
      };
    });
    return { index, config: route, backends, next: 0, balancer: createBalancer(route.lb, backends), candidates: [] };
  });
}

export const STICKY_COOKIE = 'ugate_sticky';

/** FNV-1a of the URL, base 36: short, stable across workers and restarts, reveals no address. */
export function stickyIdOf(url: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < url.length; i++) h = Math.imul(h ^ url.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(36);
}

function createPool(route: RouteConfig, backend: Backend): Pool {
  return new Pool(backend.origin, {
    connections: route.poolConnections,
    pipelining: route.pipelining,
    connectTimeout: route.connectTimeoutMs,
    headersTimeout: route.headersTimeoutMs,
    bodyTimeout: route.bodyTimeoutMs,
    keepAliveTimeout: route.idleTimeoutMs,
    keepAliveMaxTimeout: route.idleTimeoutMs,
    // Backends' response heads may be larger than undici's 16 KiB default (big cookies, CSP).
    maxHeaderSize: 64 * 1024,
  });
}
