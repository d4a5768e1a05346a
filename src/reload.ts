// SIGHUP: re-read the config (same flags, the file read again), validate it, and hand it to
// the workers without dropping a request. Routes, backends, per-route settings, trusted
// proxies and the header limit change; settings bound at start (listen, admin, workers,
// demo-origin, allow-js-fallback, drain-timeout, and the cache, which each worker builds once
// with its size, policy and Redis connection) keep their old value, with a warning.
// A config that does not validate is refused with its error and the old one stays.
import type { BackendAdmin } from './backend-admin';
import { BackendRowAllocator } from './backend-rows';
import { loadConfig, type GatewayConfig } from './config/config';
import { HealthChecker } from './health-checker';
import { log } from './log';
import type { BackendTable } from './shared/backend-table';
import { ConfigError } from './shared/errors';
import type { Supervisor } from './supervisor';
import type { TelemetryAggregate } from './telemetry';

const FIXED: readonly (keyof GatewayConfig)[] = ['listen', 'admin', 'workers', 'demoOrigin', 'allowJsFallback', 'drainTimeoutMs', 'cache'];

export class Reloader {
  private gen = 0;

  constructor(
    private readonly argv: readonly string[],
    private config: GatewayConfig,
    private readonly supervisor: Supervisor,
    private readonly aggregate: TelemetryAggregate,
    private readonly allocator: BackendRowAllocator,
    private health: HealthChecker,
    private readonly table: BackendTable,
    private readonly admin: BackendAdmin | null,
  ) {}

  /** Returns false (and logs why) when the new config was refused. */
  async reload(): Promise<boolean> {
    let next: GatewayConfig;
    try {
      next = loadConfig(this.argv);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      log('error', `reload refused, keeping the running config: ${err.message}`);
      return false;
    }
    const fixed: Record<string, unknown> = {};
    for (const key of FIXED) {
      if (JSON.stringify(next[key]) !== JSON.stringify(this.config[key])) log('warn', `reload: ${key} changes only on restart; keeping ${JSON.stringify(this.config[key])}`);
      fixed[key] = this.config[key];
    }
    next = Object.freeze({ ...next, ...fixed }) as GatewayConfig;
    const rows = this.allocator.assign(next);
    if (typeof rows === 'string') {
      log('error', `reload refused, keeping the running config: ${rows}`);
      return false;
    }
    const gen = ++this.gen;
    this.aggregate.setRoutes(gen, next.routes.map((r) => r.name));
    this.supervisor.reload(next, rows, gen);
    // stop() ends the old checks at once (only its agent closes later), so the new checker takes
    // over final state; nothing is awaited before the swap, so a second SIGHUP cannot interleave.
    const old = this.health;
    const closing = old.stop();
    this.health = new HealthChecker(next, this.table, rows, old);
    this.health.start();
    this.admin?.update(next, rows);
    this.config = next;
    log('info', `reloaded config (generation ${gen}): ${next.routes.map((r) => `${r.name} -> ${r.backends.map((b) => b.url).join(', ')}`).join('; ')}`);
    await closing;
    return true;
  }
}
