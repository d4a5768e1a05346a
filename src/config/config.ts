// Config loading: defaults < YAML file < command-line flags, validated once, then frozen.
// Every error names the field (flag or YAML path) and the bad value.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { totalmem } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../shared/errors';
import { parseDuration, parseSize } from '../shared/units';
import { BALANCE_ALGORITHMS, OPTIONS, OPTION_BY_NAME, type OptionSpec } from './options';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface Backend {
  /** The backend's name: scheme://host:port with a lower-case host and the port always written
   * (`http://A:80/` and `http://a` are both `http://a:80`). Backend-table rows, health checks,
   * /stats, /metrics labels and sticky/hash ids go by it, so two spellings of one origin are
   * one backend, not two with split counts. */
  readonly url: string;
  /** scheme://host:port, what undici connects to. */
  readonly origin: string;
  readonly weight: number;
  readonly backup: boolean;
}

export interface RouteConfig {
  readonly name: string;
  /** Lower-case host without port; "*.example.com" matches subdomains; null matches any host. */
  readonly host: string | null;
  /** Path prefix, matched on segment boundaries ("/api" matches "/api" and "/api/x", not "/apix"). */
  readonly path: string;
  readonly backends: readonly Backend[];
  readonly connectTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxBodySize: number;
  readonly poolConnections: number;
  readonly pipelining: number;
  /** "lean" (workers/upstream-pool) or "undici"; see workers/worker-state.ts createPool. */
  readonly upstreamClient: 'lean' | 'undici';
  /** Balancing, health checks, passive ejection, retries, circuit breaker. */
  readonly lb: BalancingConfig;
}

export type BalanceAlgorithm = (typeof BALANCE_ALGORITHMS)[number];

export interface BalancingConfig {
  readonly balance: BalanceAlgorithm;
  /** "ip", "header:<lower-case name>" or "cookie:<name>". */
  readonly hashKey: string;
  /** null: no active health checks. */
  readonly healthPath: string | null;
  readonly healthIntervalMs: number;
  readonly healthTimeoutMs: number;
  readonly healthRise: number;
  readonly healthFall: number;
  /** 0: passive ejection off. */
  readonly maxFails: number;
  readonly failWindowMs: number;
  readonly ejectTimeMs: number;
  readonly retries: number;
  readonly retryBudgetPercent: number;
  /** 0: circuit breaker off. */
  readonly circuitFailures: number;
  readonly circuitCooldownMs: number;
  readonly circuitProbes: number;
}

export interface GatewayConfig {
  readonly configFile: string | null;
  readonly listen: HostPort;
  readonly admin: HostPort | null;
  readonly workers: number;
  readonly drainTimeoutMs: number;
  readonly maxHeaderSize: number;
  readonly trustedProxies: readonly string[];
  /** Add X-Forwarded-For (--forwarded-for on); off spares the per-request address read. */
  readonly forwardedFor: boolean;
  /** Bytes of the per-worker buffer backend sockets are read into (workers/upstream-pool). */
  readonly upstreamReadBuffer: number;
  readonly demoOrigin: HostPort | null;
  readonly allowJsFallback: boolean;
  /** Most specific first: routes with a host before those without, longer paths first. */
  readonly routes: readonly RouteConfig[];
  /** Response cache; null when --cache-size is 0 (off). */
  readonly cache: CacheConfig | null;
}

export interface CacheConfig {
  /** L1 bytes per worker. */
  readonly size: number;
  readonly maxEntry: number;
  /** Freshness for responses without explicit freshness; 0 = not stored. */
  readonly defaultTtlMs: number;
  readonly setCookie: boolean;
  /** Paths (or absolute http URLs) fetched into each worker's cache at start. */
  readonly warm: readonly string[];
  /** redis://host:port of the shared L2, or null. */
  readonly redis: string | null;
  readonly l2TimeoutMs: number;
}

/** A route's host: DNS labels (letters, digits, inner hyphens, 1-63 each) joined by single dots,
 * optionally behind "*." for subdomains. Empty labels ("...", "a..b") could never match a Host. */
const ROUTE_HOST = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;
/** Longest health-path: it goes in every check's request line; longer is a mistake, and backends
 * refuse long request lines anyway (nginx's default is 8 KB for the whole line). */
const MAX_HEALTH_PATH = 2048;

/** Raw settings keyed by option name, before validation. */
export type RawSettings = Record<string, unknown>;

export interface ParsedArgs {
  readonly settings: RawSettings;
  readonly help: boolean;
  readonly version: boolean;
  readonly check: boolean;
}

/** Parse argv (without node and script). Throws ConfigError naming the flag. */
export function parseArgs(argv: readonly string[]): ParsedArgs {
  const settings: RawSettings = {};
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i];
    if (!token.startsWith('--')) throw new ConfigError(token, 'unexpected argument (flags start with --; see --help)');
    const eq = token.indexOf('=');
    const name = eq === -1 ? token.slice(2) : token.slice(2, eq);
    const spec = OPTION_BY_NAME.get(name);
    if (!spec) throw new ConfigError(`--${name}`, 'unknown flag (see --help)');
    let value: string | boolean;
    if (eq !== -1) value = token.slice(eq + 1);
    else if (spec.kind === 'bool') value = true;
    else {
      if (i + 1 >= argv.length || (argv[i + 1].startsWith('--') && OPTION_BY_NAME.has(argv[i + 1].slice(2).split('=')[0]))) {
        throw new ConfigError(`--${name}`, `needs a value ${spec.arg ?? ''}`.trim());
      }
      value = argv[++i];
    }
    if (spec.kind === 'url-list' || spec.kind === 'list') {
      const list = (settings[name] as string[] | undefined) ?? [];
      list.push(String(value));
      settings[name] = list;
    } else {
      settings[name] = value;
    }
  }
  return { settings, help: takeSwitch(settings, 'help'), version: takeSwitch(settings, 'version'), check: takeSwitch(settings, 'check') };
}

/** A command-line-only switch (--help, --version, --check): read, and removed from the settings. */
function takeSwitch(settings: RawSettings, name: string): boolean {
  const on = settings[name] !== undefined && toBool(settings[name], `--${name}`);
  delete settings[name];
  return on;
}

/** Read and parse a YAML config file into raw settings. Unknown keys are refused. */
export function readConfigFile(file: string): RawSettings {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('config', `cannot read ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError('config', `${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError('config', `${file} must be a YAML mapping of settings`);
  const raw = doc as RawSettings;
  for (const key of Object.keys(raw)) {
    if (key === 'routes') continue;
    const spec = OPTION_BY_NAME.get(key);
    if (!spec || spec.cliOnly) throw new ConfigError(key, `unknown config key in ${file}`);
  }
  return raw;
}

/** Merge defaults < file < flags, validate every field, and freeze the result. */
export function loadConfig(argv: readonly string[]): GatewayConfig & { help: boolean; version: boolean; check: boolean } {
  const args = parseArgs(argv);
  if (args.help || args.version) return { ...buildConfig({ 'demo-origin': 'off', upstream: ['http://127.0.0.1:1'] }, null), help: args.help, version: args.version, check: false };
  const file = typeof args.settings.config === 'string' ? args.settings.config : null;
  const fromFile = file ? readConfigFile(file) : {};
  const merged: RawSettings = { ...fromFile, ...args.settings };
  delete merged.config;
  try {
    return { ...buildConfig(merged, file), help: false, version: false, check: args.check };
  } catch (err) {
    // A bad value that came from the file (not overridden by a flag) names the file too, so the
    // operator knows where to fix it (a flag's error needs no file: it is on the command line).
    const root = err instanceof ConfigError ? err.field.split(/[.[]/)[0] : '';
    if (file !== null && Object.hasOwn(fromFile, root) && !Object.hasOwn(args.settings, root)) {
      const e = err as ConfigError;
      throw new ConfigError(e.field, `${e.message.slice(e.field.length + 2)} (in ${file})`);
    }
    throw err;
  }
}

/** Validate merged raw settings into a frozen GatewayConfig. Exported for tests. */
export function buildConfig(raw: RawSettings, configFile: string | null): GatewayConfig {
  const get = (name: string) => setting(raw, name, name);
  const demoOrigin = get('demo-origin') as HostPort | null;
  const routeDefaults: RawSettings = {};
  for (const spec of OPTIONS) {
    if (!spec.perRoute) continue;
    // Checked here first so a bad top-level value is reported under its own name, not a route's.
    setting(raw, spec.name, spec.name);
    routeDefaults[spec.name] = raw[spec.name];
  }

  const routes: RouteConfig[] = [];
  if (raw.routes !== undefined) {
    if (!Array.isArray(raw.routes)) throw new ConfigError('routes', 'must be a list of routes');
    raw.routes.forEach((r, i) => routes.push(buildRoute(r, `routes[${i}]`, routeDefaults, i)));
  }
  let upstreams = raw.upstream as unknown;
  if (upstreams === undefined && routes.length === 0 && demoOrigin) upstreams = [`http://${formatHostPort(demoOrigin)}`];
  if (upstreams !== undefined) {
    routes.push(buildRoute({ name: 'default', path: '/', upstream: upstreams }, 'upstream', routeDefaults, routes.length));
  }
  if (routes.length === 0) {
    throw new ConfigError('upstream', 'no backend configured: pass --upstream URL, or set upstream or routes in the config file');
  }
  const names = new Set<string>();
  const places = new Map<string, string>();
  for (const r of routes) {
    if (names.has(r.name)) throw new ConfigError('routes', `route name "${r.name}" is used twice`);
    names.add(r.name);
    // Two routes for the same host and path: only one could ever match, so the other's
    // backends would silently get nothing. Refused rather than picking one by list order.
    const place = `${r.host ?? '*'}${r.path}`;
    const other = places.get(place);
    if (other !== undefined) throw new ConfigError('routes', `routes "${other}" and "${r.name}" both have host ${r.host ?? '(any)'} and path ${r.path}`);
    places.set(place, r.name);
  }
  routes.sort(routeOrder);

  const listen = get('listen') as HostPort | null;
  if (listen === null) throw new ConfigError('listen', 'cannot be "off": the proxy needs an address');
  if (demoOrigin && demoOrigin.port === 0) throw new ConfigError('demo-origin', 'needs a fixed port (the default route points at it)');
  const admin = get('admin') as HostPort | null;
  // uWS binds listen with SO_REUSEPORT, so the admin API or demo origin on the same address
  // would bind too and take a share of the proxy's clients instead of failing.
  if (admin && sameAddress(admin, listen)) throw new ConfigError('admin', `${formatHostPort(admin)} is the listen address; use another port`);
  if (demoOrigin && sameAddress(demoOrigin, listen)) throw new ConfigError('demo-origin', `${formatHostPort(demoOrigin)} is the listen address; use another port`);
  if (admin && demoOrigin && sameAddress(admin, demoOrigin)) throw new ConfigError('demo-origin', `${formatHostPort(demoOrigin)} is the admin address; use another port`);
  const trusted = (get('trusted-proxy') as string[] | undefined) ?? [];
  for (const ip of trusted) if (!isIP(ip)) throw new ConfigError('trusted-proxy', `"${ip}" is not an IP address`);
  const workers = get('workers') as number;

  return deepFreeze({
    configFile,
    listen,
    admin,
    workers,
    drainTimeoutMs: get('drain-timeout') as number,
    maxHeaderSize: get('max-header-size') as number,
    trustedProxies: trusted,
    forwardedFor: get('forwarded-for') === 'on',
    upstreamReadBuffer: get('upstream-read-buffer') as number,
    demoOrigin,
    allowJsFallback: get('allow-js-fallback') as boolean,
    routes,
    cache: buildCacheConfig(get, workers),
  });
}

function buildCacheConfig(get: (name: string) => unknown, workers: number): CacheConfig | null {
  const size = get('cache-size') as number;
  const maxEntry = get('cache-max-entry') as number;
  const warm = (get('cache-warm') as string[] | undefined) ?? [];
  for (const w of warm) {
    if (!w.startsWith('/') && !/^http:\/\/[^/]+\//.test(w)) throw new ConfigError('cache-warm', `${JSON.stringify(w)} must be a path starting with "/" or http://host/path`);
  }
  // Read (and so validated) even when the cache is off: a typo in them must not pass silently.
  const defaultTtlMs = get('cache-default-ttl') as number;
  const setCookie = get('cache-set-cookie') as boolean;
  const l2TimeoutMs = get('cache-l2-timeout') as number;
  const redis = (get('redis') as string | undefined) ?? null;
  if (redis !== null && !/^rediss?:\/\/[^/\s]+(\/\d*)?$/.test(redis)) throw new ConfigError('redis', `${JSON.stringify(redis)} is not a redis://HOST:PORT URL`);
  if (size === 0) {
    if (warm.length > 0) throw new ConfigError('cache-warm', 'needs --cache-size (the cache is off)');
    if (redis !== null) throw new ConfigError('redis', 'needs --cache-size (the cache is off)');
    return null;
  }
  if (maxEntry > size) throw new ConfigError('cache-max-entry', `${maxEntry} is larger than cache-size ${size}`);
  // Each worker fills its own L1: what no machine could hold is refused now, not hours later
  // by the kernel's OOM killer.
  if (size * workers > totalmem()) {
    throw new ConfigError('cache-size', `${size} bytes per worker × ${workers} workers is more than this machine's memory (${totalmem()} bytes)`);
  }
  return {
    size, maxEntry, defaultTtlMs, setCookie, warm, redis, l2TimeoutMs,
  };
}

function buildRoute(input: unknown, field: string, defaults: RawSettings, index: number): RouteConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ConfigError(field, 'must be a mapping with path and upstream');
  }
  const r = input as RawSettings;
  for (const key of Object.keys(r)) {
    if (key === 'name' || key === 'host' || key === 'path' || key === 'upstream') continue;
    if (!OPTION_BY_NAME.get(key)?.perRoute) throw new ConfigError(`${field}.${key}`, 'unknown route key (allowed: name, host, path, upstream and the per-route settings in --help)');
  }
  const path = r.path === undefined ? '/' : r.path;
  // Control characters (NUL included) and spaces never occur in a request-target, so such a
  // route could never match: refused rather than left silently dead.
  if (typeof path !== 'string' || !path.startsWith('/') || /[?#\s\x00-\x1f\x7f]/.test(path)) {
    throw new ConfigError(`${field}.path`, `${JSON.stringify(path)} must be a path prefix starting with "/"`);
  }
  let host: string | null = null;
  if (r.host !== undefined && r.host !== null) {
    if (typeof r.host !== 'string' || r.host.length > 253 || !ROUTE_HOST.test(r.host)) {
      throw new ConfigError(`${field}.host`, `${JSON.stringify(r.host)} must be a host name such as api.example.com or *.example.com`);
    }
    host = r.host.toLowerCase();
  }
  const name = r.name === undefined ? (index === 0 && field === 'upstream' ? 'default' : `route${index}`) : r.name;
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(name)) {
    throw new ConfigError(`${field}.name`, `${JSON.stringify(name)} must be letters, digits, _ . or -`);
  }
  const merged = { ...defaults, ...r };
  // Error messages name top-level keys for the default route, "routes[i].key" for the others.
  const prefix = field === 'upstream' ? '' : `${field}.`;
  const get = (n: string) => setting(merged, n, prefix + n);
  const opt = (n: string) => get(n) as number;
  const list = get('upstream') as Backend[] | undefined;
  if (!list || list.length === 0) throw new ConfigError(prefix + 'upstream', 'at least one backend URL is needed');
  checkBackupsApart(list, name, prefix + 'upstream');
  const lb = buildBalancing(get, prefix);
  checkHealthTiming(lb, r, defaults, prefix);
  return {
    name,
    host,
    path: path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path,
    backends: list,
    connectTimeoutMs: opt('connect-timeout'),
    headersTimeoutMs: opt('headers-timeout'),
    bodyTimeoutMs: opt('body-timeout'),
    idleTimeoutMs: opt('idle-timeout'),
    maxBodySize: opt('max-body-size'),
    poolConnections: opt('pool-connections'),
    pipelining: opt('pipelining'),
    upstreamClient: get('upstream-client') as 'lean' | 'undici',
    lb,
  };
}

/** A backup serves only when no primary may, and a URL that is also a primary shares that
 * primary's row (health, ejection, circuit): whenever the backup entry could be picked, the
 * primary is out too, so it never serves. Refused rather than letting the operator believe the
 * route has a fallback. */
function checkBackupsApart(list: readonly Backend[], route: string, field: string): void {
  const primaries = new Set(list.filter((b) => !b.backup).map((b) => b.url));
  const both = list.find((b) => b.backup && primaries.has(b.url));
  if (both !== undefined) {
    throw new ConfigError(field, `route "${route}" lists ${both.url} both as a primary and as a backup; a backup shares its primary's health, so it could never serve`);
  }
}

/** An active check waits up to health-timeout for its answer, and the next one starts
 * health-interval after that: with a timeout as long as the interval, a backend that stopped
 * answering is probed less often than configured and found down later than health-fall ×
 * health-interval, so the pair is refused. Only while checks are on (health-path): otherwise
 * neither value is used. The error is reported under a setting the operator wrote (the
 * route's own before a top-level one, the timeout before the interval) and names the other
 * with its value and where it came from. */
function checkHealthTiming(lb: BalancingConfig, route: RawSettings, defaults: RawSettings, prefix: string): void {
  if (lb.healthPath === null || lb.healthTimeoutMs < lb.healthIntervalMs) return;
  const timeout = written('health-timeout', route, defaults, prefix);
  const interval = written('health-interval', route, defaults, prefix);
  const byInterval = timeout === null || (interval !== null && interval.own && !timeout.own);
  const [bad, other] = byInterval ? [interval!, timeout] : [timeout, interval];
  const otherName = byInterval ? 'health-timeout' : 'health-interval';
  const otherText = other === null ? `${otherName} (${JSON.stringify(OPTION_BY_NAME.get(otherName)!.default)}, the default)` : `${other.field} (${JSON.stringify(other.value)})`;
  // A top-level pair that only a route with its own health-path puts to use: say which route.
  const where = prefix !== '' && !bad.own && (other === null || !other.own) ? ` (health checks on in ${prefix.slice(0, -1)})` : '';
  throw new ConfigError(bad.field, `${JSON.stringify(bad.value)} must be ${byInterval ? 'longer' : 'shorter'} than ${otherText}${where}`);
}

/** Where a per-route setting of a route came from: its own key, the top-level key, or null
 * for the built-in default. */
function written(name: string, route: RawSettings, defaults: RawSettings, prefix: string): { field: string; value: unknown; own: boolean } | null {
  if (Object.hasOwn(route, name)) return { field: prefix + name, value: route[name], own: true };
  if (defaults[name] !== undefined) return { field: name, value: defaults[name], own: false };
  return null;
}

function buildBalancing(opt: (name: string) => unknown, prefix: string): BalancingConfig {
  const hashKey = opt('hash-key') as string;
  const m = /^(ip|header:([A-Za-z0-9!#$%&'*+.^_`|~-]+)|cookie:([^\s;,=]+))$/.exec(hashKey);
  if (!m) throw new ConfigError(`${prefix}hash-key`, `${JSON.stringify(hashKey)} is not ip, header:NAME or cookie:NAME`);
  const healthPath = opt('health-path') as string;
  if (healthPath !== 'off' && (healthPath.length > MAX_HEALTH_PATH || !/^\/[\x21-\x7e]*$/.test(healthPath))) {
    const what = healthPath.length > MAX_HEALTH_PATH ? `a path of ${healthPath.length} characters is longer than ${MAX_HEALTH_PATH}` : `${JSON.stringify(healthPath)} must be "off" or a path starting with "/"`;
    throw new ConfigError(`${prefix}health-path`, what);
  }
  return {
    balance: opt('balance') as BalanceAlgorithm,
    hashKey: m[2] !== undefined ? `header:${m[2].toLowerCase()}` : hashKey,
    healthPath: healthPath === 'off' ? null : healthPath,
    healthIntervalMs: opt('health-interval') as number,
    healthTimeoutMs: opt('health-timeout') as number,
    healthRise: opt('health-rise') as number,
    healthFall: opt('health-fall') as number,
    maxFails: opt('max-fails') as number,
    failWindowMs: opt('fail-window') as number,
    ejectTimeMs: opt('eject-time') as number,
    retries: opt('retries') as number,
    retryBudgetPercent: opt('retry-budget') as number,
    circuitFailures: opt('circuit-failures') as number,
    circuitCooldownMs: opt('circuit-cooldown') as number,
    circuitProbes: opt('circuit-probes') as number,
  };
}

function routeOrder(a: RouteConfig, b: RouteConfig): number {
  if ((a.host === null) !== (b.host === null)) return a.host === null ? 1 : -1;
  if (a.host && b.host && a.host.startsWith('*.') !== b.host.startsWith('*.')) return a.host.startsWith('*.') ? 1 : -1;
  return b.path.length - a.path.length;
}

/** One setting: the raw value or the option's default, converted and range-checked. */
function setting(raw: RawSettings, name: string, field: string): unknown {
  const spec = OPTION_BY_NAME.get(name) as OptionSpec;
  let value = raw[name];
  if (value === undefined) {
    if (spec.default === undefined) return undefined;
    value = spec.default;
  }
  const bad = (what: string): never => {
    throw new ConfigError(field, `${JSON.stringify(value)} is not ${what}`);
  };
  switch (spec.kind) {
    case 'string':
      if (typeof value !== 'string') return bad('a string');
      if (spec.choices && !spec.choices.includes(value)) return bad(`one of ${spec.choices.join(', ')}`);
      return value;
    case 'bool':
      return toBool(value, field);
    case 'hostport':
      if (value === 'off' || value === false || value === null) return null;
      return parseHostPort(value, field);
    case 'int': {
      const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : NaN;
      if (!Number.isSafeInteger(n)) return bad('a whole number');
      return inRange(n, spec, field);
    }
    case 'duration': {
      const ms = parseDuration(value);
      if (ms === undefined) return bad('a duration such as 500ms, 5s or 1m');
      // Node's timers take at most 2^31-1 ms (~24.8 days) and fire after 1 ms beyond that, so
      // "1000h" would mean health checks every millisecond or a drain that ends at once.
      if (ms > MAX_DURATION_MS) throw new ConfigError(field, `${JSON.stringify(value)} is above the maximum ${MAX_DURATION_MS} ms (about 24 days)`);
      return inRange(ms, spec, field);
    }
    case 'size': {
      const bytes = parseSize(value);
      return bytes === undefined ? bad('a size such as 512kb, 16kb or 1mb') : inRange(bytes, spec, field);
    }
    case 'list': {
      const list = Array.isArray(value) ? value : [value];
      return list.map((v) => (typeof v === 'string' ? v.trim() : bad('a list of strings')));
    }
    case 'url-list': {
      const list = Array.isArray(value) ? value : [value];
      return list.map((v, i) => parseBackend(v, list.length > 1 ? `${field}[${i}]` : field));
    }
  }
}

/** setTimeout's longest delay. */
const MAX_DURATION_MS = 2 ** 31 - 1;

/** Two listening addresses that would be the same socket: same port and same or wildcard host. */
function sameAddress(a: HostPort, b: HostPort): boolean {
  if (a.port === 0 || a.port !== b.port) return false;
  const wild = (h: string) => h === '0.0.0.0' || h === '::';
  return a.host === b.host || wild(a.host) || wild(b.host);
}

function inRange(n: number, spec: OptionSpec, field: string): number {
  if (spec.min !== undefined && n < spec.min) throw new ConfigError(field, `${n} is below the minimum ${spec.min}`);
  if (spec.max !== undefined && n > spec.max) throw new ConfigError(field, `${n} is above the maximum ${spec.max}`);
  return n;
}

function toBool(value: unknown, field: string): boolean {
  if (value === true || value === 'true' || value === '1' || value === 'yes') return true;
  if (value === false || value === 'false' || value === '0' || value === 'no') return false;
  throw new ConfigError(field, `${JSON.stringify(value)} is not true or false`);
}

export function parseHostPort(value: unknown, field: string): HostPort {
  if (typeof value === 'number') value = `0.0.0.0:${value}`;
  if (typeof value !== 'string') throw new ConfigError(field, `${JSON.stringify(value)} is not HOST:PORT`);
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(field, `${JSON.stringify(value)} is not HOST:PORT (e.g. 0.0.0.0:8080, [::]:8080)`);
  const host = m[1] ?? m[2];
  // A host that is neither an IP nor a DNS name would only fail later, at bind, as a runtime error.
  if (!isIP(host) && !/^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(host)) {
    throw new ConfigError(field, `${JSON.stringify(value)}: "${host}" is not an IP address or host name`);
  }
  return { host, port };
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** "http://10.0.0.1:80 weight=3 backup": the URL, then nginx-like options. */
function parseBackend(value: unknown, field: string): Backend {
  if (typeof value !== 'string' || value.trim() === '') throw new ConfigError(field, `${JSON.stringify(value)} is not a backend URL`);
  const [urlText, ...opts] = value.trim().split(/\s+/);
  let url: URL;
  try {
    url = new URL(urlText);
  } catch {
    throw new ConfigError(field, `"${urlText}" is not a valid URL (expected http://host:port)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(field, `"${urlText}" must use http:// or https://`);
  if (url.username || url.password) throw new ConfigError(field, `"${urlText}" must not carry credentials`);
  // Port 0 cannot be connected to: every request would fail with 502.
  if (url.port === '0') throw new ConfigError(field, `"${urlText}" has port 0 (expected http://host:port with a port from 1 to 65535)`);
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw new ConfigError(field, `"${urlText}" must be an origin without path, query or fragment (routes choose paths)`);
  }
  let weight = 1;
  let backup = false;
  for (const opt of opts) {
    const [k, v] = opt.split('=', 2);
    if (k === 'weight' && v !== undefined && /^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 1000) weight = Number(v);
    else if (k === 'backup' && v === undefined) backup = true;
    else throw new ConfigError(field, `unknown backend option "${opt}" (allowed: weight=1..1000, backup)`);
  }
  return { url: backendName(url), origin: url.origin, weight, backup };
}

/** scheme://host:port of a parsed URL, default port written out: the one spelling of an origin. */
function backendName(url: URL): string {
  return `${url.protocol}//${url.hostname}:${url.port || (url.protocol === 'https:' ? '443' : '80')}`;
}

/** The name (see Backend.url) an operator's spelling of a backend stands for, e.g. in a
 * POST /backends/drain body; null when it is not an http(s) origin. */
export function normalizeBackendUrl(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  return backendName(url);
}

function deepFreeze<T>(obj: T): T {
  if (obj && typeof obj === 'object' && !Object.isFrozen(obj)) {
    Object.freeze(obj);
    for (const v of Object.values(obj)) deepFreeze(v);
  }
  return obj;
}

export function formatHelp(version: string): string {
  const lines = [
    `ugate ${version} — multi-threaded HTTP reverse proxy and API gateway`,
    '',
    'Usage: ugate [--config FILE] [flags]',
    '',
    'Settings merge in this order, later wins: built-in defaults < config file < flags.',
    'Every flag except --config/--check/--help/--version is also a YAML key of the same name.',
    'Durations take ms, s, m, h (500ms, 5s); sizes take b, kb, mb, gb (16kb, 1mb; 1kb = 1024 bytes).',
    '',
    'Flags:',
  ];
  for (const o of OPTIONS) {
    const left = `  --${o.name}${o.arg ? ' ' + o.arg : ''}`;
    const def = o.default !== undefined && o.kind !== 'bool' ? ` [default: ${o.default}]` : '';
    const route = o.perRoute ? ' (per route)' : '';
    lines.push(`${left.padEnd(34)} ${o.help}${route}${def}`);
  }
  lines.push('', 'Exit codes: 0 clean shutdown (or --check: valid), 1 runtime failure (or --check: would not start), 2 usage or config error.');
  return lines.join('\n');
}
