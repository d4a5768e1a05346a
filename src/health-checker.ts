// Active health checks, from the main thread: GET health-path on every backend of every route
// that sets one, every health-interval, failing after health-timeout. health-fall failures in a
// row take a backend down, health-rise passes bring it back; the state is published to the
// workers through the backend table's healthy slot, which the balance stage reads on every
// request, so a backend marked down gets no new request from the next request on.
// A reload builds a new checker from the old one (see the constructor): state carries over.
import { Client } from 'undici';
import type { BalancingConfig, GatewayConfig } from './config/config';
import { log } from './log';
import { BackendTable, type BackendRows } from './shared/backend-table';
import { BK_EJECTED_UNTIL, BK_HEALTHY } from './shared/layout';

/** Body bytes a check reads at most: a health answer is a few bytes; more is a wrong path or
 * a hostile backend. */
const HEALTH_BODY_LIMIT = 1024 * 1024;

interface Target {
  readonly route: string;
  readonly url: string;
  readonly origin: string;
  readonly row: number;
  readonly path: string;
  readonly lb: BalancingConfig;
  /** The client of the check in flight, destroyed when it ends (or by stop()). */
  client: Client | null;
  up: boolean;
  passes: number;
  fails: number;
  timer: NodeJS.Timeout | null;
}

export class HealthChecker {
  private readonly targets: Target[] = [];
  private stopped = false;

  /** `previous`: the checker of the config being replaced by a reload (already stopped). */
  constructor(config: GatewayConfig, private readonly table: BackendTable, rows: BackendRows, previous: HealthChecker | null = null) {
    const before = new Map(previous?.targets.map((t) => [t.row, t]));
    config.routes.forEach((r, ri) => {
      const path = r.lb.healthPath;
      if (path === null) return;
      r.backends.forEach((b, bi) => {
        const row = table.row(rows[ri][bi]);
        // A URL the route lists twice is one row (src/backend-rows.ts): one verdict, one check.
        if (this.targets.some((t) => t.row === row)) return;
        const t: Target = { route: r.name, url: b.url, origin: b.origin, row, path, lb: r.lb, client: null, up: true, passes: 0, fails: 0, timer: null };
        const old = before.get(t.row);
        before.delete(t.row);
        // Same backend, same question: keep the verdict and the counts. Starting "up" again would
        // let a down backend take traffic until health-fall checks failed anew. The row alone is
        // not enough: a removed backend's row may go to a new backend in the same reload.
        if (old && old.route === t.route && old.url === t.url && old.lb.healthPath === t.lb.healthPath) {
          t.up = old.up;
          t.passes = old.passes;
          t.fails = old.fails;
        }
        Atomics.store(table.i32, t.row + BK_HEALTHY, t.up ? 1 : 0);
        this.targets.push(t);
      });
    });
    // Rows checked before and not now (health-path turned off, or the backend removed): nothing
    // would ever mark them up again, so they are up; passive ejection still applies. A removed
    // backend's row is reset anyway when it is handed out again.
    for (const row of before.keys()) Atomics.store(table.i32, row + BK_HEALTHY, 1);
  }

  start(): void {
    for (const t of this.targets) this.schedule(t, 0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.targets) if (t.timer) clearTimeout(t.timer);
    await Promise.all(this.targets.map((t) => t.client?.destroy().catch(() => {})));
  }

  private schedule(t: Target, delay: number): void {
    if (this.stopped) return;
    t.timer = setTimeout(() => void this.check(t), delay);
    t.timer.unref();
  }

  private async check(t: Target): Promise<void> {
    const ok = await this.probe(t);
    if (this.stopped) return;
    if (ok) {
      t.fails = 0;
      t.passes++;
      if (!t.up && t.passes >= t.lb.healthRise) this.setUp(t, true);
    } else {
      t.passes = 0;
      t.fails++;
      if (t.up && t.fails >= t.lb.healthFall) this.setUp(t, false);
    }
    // Re-asserted on every check so the admin "up" action cannot outlive a failing check.
    Atomics.store(this.table.i32, t.row + BK_HEALTHY, t.up ? 1 : 0);
    this.schedule(t, t.lb.healthIntervalMs);
  }

  private setUp(t: Target, up: boolean): void {
    t.up = up;
    // Back up by active checks: a passive ejection from the outage is over too.
    if (up) Atomics.store(this.table.i32, t.row + BK_EJECTED_UNTIL, 0);
    log(up ? 'info' : 'warn', `health: route ${t.route} backend ${t.url} is ${up ? 'up' : 'down'}`);
  }

  private async probe(t: Target): Promise<boolean> {
    // A fresh connection per check (a client of its own, reset: true): a check must see a backend
    // that stopped accepting, not a keep-alive socket that happens to survive. Timed out by
    // destroying that client, not by an abort signal: an aborted request made undici's pool open
    // a second, empty connection to the backend at once, an extra socket per failed check to a
    // backend already too slow to answer (and left idle there up to its keep-alive timeout).
    const client = new Client(t.origin, { pipelining: 1 });
    t.client = client;
    const timer = setTimeout(() => void client.destroy().catch(() => {}), t.lb.healthTimeoutMs);
    try {
      const res = await client.request({ path: t.path, method: 'GET', reset: true, headers: { 'user-agent': 'ugate-health-check' } });
      // The whole answer, not just its head: a backend that sends 200 and then stalls, trickles or
      // is cut off mid-body is not healthy (dump() would have passed it at the timeout, or after
      // 128 KiB of an endless body). Read and dropped, so the body costs no memory; past
      // HEALTH_BODY_LIMIT the check fails at once rather than read a flood until the timeout.
      let bytes = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        if (bytes > HEALTH_BODY_LIMIT) return false;
      }
      return res.statusCode >= 200 && res.statusCode < 400;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
      t.client = null;
      void client.destroy().catch(() => {});
    }
  }
}
