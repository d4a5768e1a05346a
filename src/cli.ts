#!/usr/bin/env node
// ugate entry point: flags and config → checks → demo origin → workers → admin API → signals.
import { createServer as createNetServer } from 'node:net';
import type { Server } from 'node:http';
import { startAdmin, type AdminServer } from './admin';
import { BackendAdmin } from './backend-admin';
import { BackendRowAllocator, tableCapacity } from './backend-rows';
import { HealthChecker } from './health-checker';
import { Reloader } from './reload';
import { BackendTable, type BackendRows } from './shared/backend-table';
import { formatHelp, formatHostPort, loadConfig, type GatewayConfig, type HostPort } from './config/config';
import { startDemoOrigin } from './demo-origin';
import { log } from './log';
import { checkUwsNative } from './native-check';
import { ConfigError } from './shared/errors';
import { Supervisor } from './supervisor';
import { TelemetryAggregate } from './telemetry';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION: string = require('../../package.json').version;

const EXIT_RUNTIME = 1;
const EXIT_USAGE = 2;

async function main(argv: string[]): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(argv);
  } catch (err) {
    if (err instanceof ConfigError) fail(EXIT_USAGE, `${err.message}`);
    throw err;
  }
  if (config.help) {
    process.stdout.write(formatHelp(VERSION) + '\n');
    return;
  }
  if (config.version) {
    process.stdout.write(`ugate ${VERSION}\n`);
    return;
  }

  const uws = checkUwsNative();
  if (!uws.native) {
    if (!config.allowJsFallback) {
      fail(EXIT_RUNTIME, `refusing to start: uWebSockets.js is running its slow pure-JS fallback because ${uws.reason}. ` +
        'Use Node 20 on Linux x64/arm64 with glibc >= 2.36, or pass --allow-js-fallback to run anyway.');
    }
    log('warn', `running on the uWebSockets.js pure-JS fallback (${uws.reason}); expect a fraction of native throughput`);
  }
  if (config.check) {
    // Like `nginx -t`: what the settings resolve to, nothing bound or started. Whether the
    // ports are free is only known when binding them.
    const lines = [`configuration OK: would listen on ${formatHostPort(config.listen)} with ${workersText(config)}`];
    lines.push(config.admin ? `admin API on ${formatHostPort(config.admin)}` : 'admin API off');
    if (config.demoOrigin) lines.push(`demo origin on ${formatHostPort(config.demoOrigin)}`);
    process.stdout.write([...lines, ...routeLines(config)].join('\n') + '\n');
    return;
  }

  const port = await reservePort(config.listen, 'listen');
  let demo: Server | null = null;
  if (config.demoOrigin) demo = await startDemoOrigin(config.demoOrigin);

  const startedAt = Date.now();
  const aggregate = new TelemetryAggregate(config.routes.map((r) => r.name), config.workers);
  // The backend table has room for backends added by later reloads (src/backend-rows.ts).
  const backendTable = new BackendTable(BackendTable.create(tableCapacity(config), config.workers));
  const allocator = new BackendRowAllocator(backendTable);
  const rows = allocator.assign(config) as BackendRows;
  const supervisor = new Supervisor(config, aggregate, backendTable, rows);
  const health = new HealthChecker(config, backendTable, rows);
  const backendAdmin = new BackendAdmin(config, backendTable, rows);
  let admin: AdminServer | null = null;
  try {
    await supervisor.start(port);
    health.start();
    if (config.admin) admin = await startAdmin(config.admin, supervisor, aggregate, startedAt, backendAdmin);
  } catch (err) {
    // Workers that did start hold uWS sockets: exiting before they close would abort the process.
    await supervisor.drain(1000);
    demo?.close();
    fail(EXIT_RUNTIME, (err as Error).message);
  }

  announce(config, port, admin, demo !== null, supervisor.heapLimitBytes);
  installSignals(config, supervisor, admin, demo);
  const reloader = new Reloader(argv, config, supervisor, aggregate, allocator, health, backendTable, backendAdmin);
  process.on('SIGHUP', () => {
    log('info', 'SIGHUP: reloading the configuration');
    void reloader.reload();
  });
}

function announce(config: GatewayConfig, port: number, admin: AdminServer | null, demo: boolean, heapLimitBytes: number): void {
  const host = config.listen.host === '0.0.0.0' || config.listen.host === '::' ? '127.0.0.1' : config.listen.host;
  const proxy = `http://${formatHostPort({ host, port })}`;
  const lines = [`ugate ${VERSION} listening on ${proxy} with ${workersText(config)}`];
  if (admin) lines.push(`admin API on http://${formatHostPort({ host: config.admin!.host, port: admin.port })} (/health /ready /metrics /stats)`);
  if (config.cache) lines.push(`L1 cache: ${Math.round(config.cache.size / 2 ** 20)} MiB per worker, worker heap limit ${Math.round(heapLimitBytes / 2 ** 20)} MiB`);
  lines.push(...routeLines(config));
  if (demo) {
    lines.push('try:', `  curl ${proxy}/`, `  curl -o /dev/null -w '%{size_download} bytes\\n' ${proxy}/bytes/1048576`, `  curl -d 'hello' ${proxy}/echo`);
    if (admin) lines.push(`  curl http://${formatHostPort({ host: config.admin!.host, port: admin.port })}/stats`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

function workersText(config: GatewayConfig): string {
  return `${config.workers} worker${config.workers === 1 ? '' : 's'}`;
}

function routeLines(config: GatewayConfig): string[] {
  return config.routes.map((r) => `route ${r.name}: ${r.host ?? '*'}${r.path} -> ${r.backends.map((b) => b.url).join(', ')}`);
}

function installSignals(config: GatewayConfig, supervisor: Supervisor, admin: AdminServer | null, demo: Server | null): void {
  let shuttingDown = false;
  const shutdown = async (signal: string) => {
    if (shuttingDown) {
      log('warn', `${signal} again during shutdown: still waiting for in-flight requests`);
      return;
    }
    shuttingDown = true;
    log('info', `${signal}: draining (up to ${config.drainTimeoutMs} ms)`);
    const clean = await supervisor.drain(config.drainTimeoutMs);
    admin?.close();
    demo?.closeAllConnections();
    demo?.close();
    log('info', clean ? 'drained; exiting' : 'workers did not exit cleanly');
    // Every worker thread has exited (or failed to): nothing left that a hard exit could crash.
    process.exit(clean ? 0 : EXIT_RUNTIME);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/** uWS binds with SO_REUSEPORT, so a second ugate on the same port would silently share it:
 * an exclusive test bind first turns that into a clear error. For port 0 it also picks the
 * free port that every worker will then bind. */
function reservePort(address: HostPort, field: string): Promise<number> {
  return new Promise((resolve) => {
    const probe = createNetServer();
    probe.once('error', (err: NodeJS.ErrnoException) =>
      fail(EXIT_RUNTIME, `${field}: cannot listen on ${formatHostPort(address)}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`),
    );
    probe.listen({ host: address.host, port: address.port, exclusive: true }, () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

function fail(code: number, message: string): never {
  process.stderr.write(`ugate: ${message}\n`);
  process.exit(code);
}

main(process.argv.slice(2)).catch((err: Error) => fail(EXIT_RUNTIME, err.message));
