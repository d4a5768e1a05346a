// What one proxy worker owns: its routes with their undici pools, its telemetry, its flags.
// Nothing here is shared with another thread except through src/shared (rings, tables).
import { Pool } from 'undici';
import type { Backend, GatewayConfig, RouteConfig } from '../src/config/config';
import type { WorkerTelemetry } from './telemetry';
import type { WorkerCache } from './cache/cache';

export interface RuntimeBackend {
  readonly config: Backend;
  readonly pool: Pool;
}

export interface RuntimeRoute {
  readonly index: number;
  readonly config: RouteConfig;
  readonly backends: readonly RuntimeBackend[];
  /** Round-robin cursor (per worker; balancing strategies come with the balancing issue). */
  next: number;
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
  /** L1 response cache; null when caching is off. */
  readonly cache?: WorkerCache | null;
}

export function createRoutes(config: GatewayConfig): RuntimeRoute[] {
  return config.routes.map((route, index) => ({
    index,
    config: route,
    backends: route.backends.map((backend) => ({ config: backend, pool: createPool(route, backend) })),
    next: 0,
  }));
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
