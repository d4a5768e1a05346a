// Balancers without sockets: RuntimeBackends over a real backend table, and fake exchanges.
import type { Pool } from 'undici';
import { buildConfig, type BalancingConfig } from '../../../src/config/config';
import { BackendTable } from '../../../src/shared/backend-table';
import type { Exchange } from '../../../workers/exchange';
import { createBalancer } from '../../../workers/balancers/registry';
import type { Balancer } from '../../../workers/balancers/balancer';
import { collectCandidates } from '../../../workers/balancers/candidates';
import { stickyIdOf, STICKY_COOKIE, type RuntimeBackend } from '../../../workers/worker-state';

export interface Fixture {
  backends: RuntimeBackend[];
  table: BackendTable;
  lb: BalancingConfig;
  balancer: Balancer;
  /** What the balance stage does: usable candidates (backups only when needed), then pick. */
  pick(x?: Exchange): RuntimeBackend | null;
}

export function fixture(algorithm: string, specs: string[], extra: Record<string, unknown> = {}): Fixture {
  const config = buildConfig({ upstream: specs, balance: algorithm, ...extra }, null);
  const route = config.routes[0];
  const table = new BackendTable(BackendTable.create(route.backends.length));
  const backends: RuntimeBackend[] = route.backends.map((b, i) => ({
    config: b,
    pool: null as unknown as Pool,
    index: i,
    state: table.i32,
    row: table.row(i),
    own: table.ownSlot(0, i),
    stickyId: stickyIdOf(b.url),
    stickyCookie: `${STICKY_COOKIE}=${stickyIdOf(b.url)}`,
  }));
  const balancer = createBalancer(route.lb, backends);
  const scratch: RuntimeBackend[] = [];
  return {
    backends,
    table,
    lb: route.lb,
    balancer,
    pick(x = exchange()) {
      const c = collectCandidates(backends, scratch, route.lb, table.epoch, null);
      return c.length === 0 ? null : balancer.pick(x, c);
    },
  };
}

export function exchange(peer = '127.0.0.1', headers: string[] = []): Exchange {
  return { peer, headers, stickyCookie: null } as unknown as Exchange;
}

export function urls(n: number, suffix = ''): string[] {
  return Array.from({ length: n }, (_, i) => `http://10.0.0.${i + 1}:80${suffix}`);
}
