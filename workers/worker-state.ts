// What one proxy worker owns: its routes with their undici pools, its telemetry, its flags.
// Nothing here is shared with another thread except through src/shared (rings, tables).
import type { Dispatcher } from 'undici';
import type { Backend, GatewayConfig, RouteConfig } from '../src/config/config';
import { BackendTable, type BackendRows } from '../src/shared/backend-table';
import { fnv1a, type Balancer } from './balancers/balancer';
import { createBalancer } from './balancers/registry';
import type { RetryBudget } from './retry-budget';
import { WorkerTelemetry } from './telemetry';
import type { WorkerCache } from './cache/cache';
import { Http1Pool, sharedReadBuffer } from './upstream-pool/pool';
import { UndiciPool } from './upstream-pool/undici-pool';

/** What stages need of a backend's connection pool; undici's Pool and Http1Pool both fit. */
export interface UpstreamPool {
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean;
  /** Graceful: running and queued requests finish first. */
  close(): Promise<void>;
}

export interface RuntimeBackend {
  readonly config: Backend;
  readonly pool: UpstreamPool;
  /** Position in its route's backend list. */
  readonly index: number;
  /** The shared backend table (src/shared/backend-table.ts) and this backend's row in it. */
  readonly state: Int32Array;
  readonly row: number;
  /** This worker's in-flight share slot for the backend (reclaimed by main if it crashes). */
  readonly own: number;
  /** Stable id for the sticky cookie (derived from the URL, same in every worker). */
  readonly stickyId: string;
  /** The whole Set-Cookie value that pins a client to this backend. */
  readonly stickyCookie: string;
}

export interface RuntimeRoute {
  readonly index: number;
  readonly config: RouteConfig;
  readonly backends: readonly RuntimeBackend[];
  readonly balancer: Balancer;
  /** Reused by the balance stage: the backends usable for the current request. */
  readonly candidates: RuntimeBackend[];
}

export interface WorkerState {
  readonly index: number;
  /** config, routes, trustedProxies and telemetry are replaced by a reload (workers/reload.ts). */
  config: GatewayConfig;
  routes: readonly RuntimeRoute[];
  trustedProxies: ReadonlySet<string>;
  telemetry: WorkerTelemetry;
  /** Set when the main thread asked this worker to drain: new responses carry Connection: close. */
  draining: boolean;
  inFlight: number;
  /** Per-backend state shared with main and the other workers. */
  readonly backendTable: BackendTable;
  readonly retryBudget: RetryBudget;
  /** L1 response cache; null when caching is off. */
  readonly cache?: WorkerCache | null;
}

/** The part of a worker's state a config decides, at start and on reload alike: its routes
 * (pools from `reuse` where they can be kept), trusted proxies, and telemetry under `gen`. */
export function configState(config: GatewayConfig, table: BackendTable, worker: number, rows: BackendRows, gen: number, reuse?: Map<string, UpstreamPool[]>) {
  const routes = createRoutes(config, table, worker, rows, reuse);
  return { config, routes, trustedProxies: new Set(config.trustedProxies), telemetry: new WorkerTelemetry(routes.length, worker, gen) };
}

/** Every backend entry gets its own pool, even when its route lists the same origin twice
 * (each entry is a separate candidate for the balancer, with its own connection limit).
 * `reuse`: pools of the previous config, by poolKey; a pool taken from it is removed there. */
function createRoutes(config: GatewayConfig, table: BackendTable, worker: number, rows: BackendRows, reuse?: Map<string, UpstreamPool[]>): RuntimeRoute[] {
  return config.routes.map((route, index) => {
    const backends: RuntimeBackend[] = route.backends.map((backend, i) => {
      const stickyId = stickyIdOf(backend.url);
      return {
        config: backend,
        pool: takePool(reuse, route, backend) ?? createPool(route, backend, config.upstreamReadBuffer),
        index: i,
        state: table.i32,
        row: table.row(rows[index][i]),
        own: table.ownSlot(worker, rows[index][i]),
        stickyId,
        stickyCookie: `${STICKY_COOKIE}=${stickyId}; Path=/; HttpOnly; SameSite=Lax`,
      };
    });
    return { index, config: route, backends, balancer: createBalancer(route.lb, backends), candidates: [] };
  });
}

export const STICKY_COOKIE = 'ugate_sticky';

/** FNV-1a of the URL, base 36: short, stable across workers and restarts, reveals no address. */
export function stickyIdOf(url: string): string {
  return (fnv1a(url) >>> 0).toString(36);
}

/** Same route, same origin, same pool settings: the pool can be kept across a reload. */
export function poolKey(route: RouteConfig, backend: Backend): string {
  return [route.name, backend.origin, route.poolConnections, route.pipelining, route.upstreamClient, route.connectTimeoutMs, route.headersTimeoutMs, route.bodyTimeoutMs, route.idleTimeoutMs].join('\u0000');
}

function takePool(reuse: Map<string, UpstreamPool[]> | undefined, route: RouteConfig, backend: Backend): UpstreamPool | undefined {
  if (reuse === undefined) return undefined;
  return reuse.get(poolKey(route, backend))?.shift();
}

// Backends' response heads may be larger than undici's 16 KiB default (big cookies, CSP).
const MAX_RESPONSE_HEAD = 64 * 1024;

/** The lean client serves plain-HTTP backends; TLS is undici's. */
function createPool(route: RouteConfig, backend: Backend, readBufferSize: number): UpstreamPool {
  if (route.upstreamClient === 'lean' && backend.origin.startsWith('http:')) {
    return new Http1Pool(backend.origin, {
      readBuffer: sharedReadBuffer(readBufferSize),
      connections: route.poolConnections,
      connectTimeout: route.connectTimeoutMs,
      headersTimeout: route.headersTimeoutMs,
      bodyTimeout: route.bodyTimeoutMs,
      keepAliveTimeout: route.idleTimeoutMs,
      maxHeaderSize: MAX_RESPONSE_HEAD,
      pipelining: route.pipelining,
    });
  }
  // undici refuses a keep-alive timeout of 0 on every request (ugate answered them all 400):
  // 1 ms gives --idle-timeout 0 the lean client's meaning, connections not kept for reuse.
  return new UndiciPool(backend.origin, {
    connections: route.poolConnections,
    pipelining: route.pipelining,
    connectTimeout: route.connectTimeoutMs,
    headersTimeout: route.headersTimeoutMs,
    bodyTimeout: route.bodyTimeoutMs,
    keepAliveTimeout: Math.max(1, route.idleTimeoutMs),
    maxHeaderSize: MAX_RESPONSE_HEAD,
  });
}
