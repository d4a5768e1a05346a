// The one table of settings. Every entry is both a CLI flag (--name) and a YAML key (name),
// so help text, parsing and validation cannot drift apart.
import { availableParallelism } from 'node:os';

export type OptionKind = 'string' | 'hostport' | 'url-list' | 'list' | 'int' | 'duration' | 'size' | 'bool';

export interface OptionSpec {
  readonly name: string;
  readonly kind: OptionKind;
  readonly arg?: string;
  readonly default?: string | number | boolean;
  readonly min?: number;
  readonly max?: number;
  /** Settable per route in the YAML `routes:` list. */
  readonly perRoute?: boolean;
  /** Only for the command line (not a YAML key). */
  readonly cliOnly?: boolean;
  /** For kind 'string': the only accepted values. */
  readonly choices?: readonly string[];
  readonly help: string;
}

// uWS in this build accepts header blocks up to ~100 KB and silently drops connections
// above that, so ugate's own limit must stay below it to always answer 431 itself.
export const MAX_HEADER_SIZE_CEILING = 96 * 1024;

export const BALANCE_ALGORITHMS = ['round-robin', 'weighted', 'least-conn', 'least-time', 'hash', 'sticky'] as const;

// Load balancing, health and retries (README "Load balancing and health"); all per route.
const BALANCING_OPTIONS: readonly OptionSpec[] = [
  { name: 'balance', kind: 'string', arg: 'ALGORITHM', default: 'round-robin', choices: BALANCE_ALGORITHMS, perRoute: true, help: 'how a backend is chosen: round-robin, weighted, least-conn, least-time, hash or sticky' },
  { name: 'hash-key', kind: 'string', arg: 'KEY', default: 'ip', perRoute: true, help: 'key for --balance hash: ip, header:NAME or cookie:NAME' },
  { name: 'health-path', kind: 'string', arg: 'PATH', default: 'off', perRoute: true, help: 'active health checks: GET this path on every backend ("off" disables them)' },
  { name: 'health-interval', kind: 'duration', arg: 'DURATION', default: '5s', min: 10, perRoute: true, help: 'time between two active health checks of a backend' },
  { name: 'health-timeout', kind: 'duration', arg: 'DURATION', default: '2s', min: 1, perRoute: true, help: 'an active health check slower than this fails; must be shorter than --health-interval' },
  { name: 'health-rise', kind: 'int', arg: 'N', default: 2, min: 1, max: 100, perRoute: true, help: 'consecutive passed checks that bring a down backend up' },
  { name: 'health-fall', kind: 'int', arg: 'N', default: 3, min: 1, max: 100, perRoute: true, help: 'consecutive failed checks that take a backend down' },
  { name: 'max-fails', kind: 'int', arg: 'N', default: 5, min: 0, max: 1_000_000, perRoute: true, help: 'passive checks: connection failures and 5xx within --fail-window that eject a backend; 0 disables' },
  { name: 'fail-window', kind: 'duration', arg: 'DURATION', default: '10s', min: 1, perRoute: true, help: 'window in which --max-fails failures are counted' },
  { name: 'eject-time', kind: 'duration', arg: 'DURATION', default: '30s', min: 1, perRoute: true, help: 'how long a passively ejected backend gets no requests' },
  { name: 'retries', kind: 'int', arg: 'N', default: 1, min: 0, max: 10, perRoute: true, help: 'times an idempotent request without a body that failed before any response byte is re-sent to another backend' },
  { name: 'retry-budget', kind: 'int', arg: 'PERCENT', default: 20, min: 0, max: 100, perRoute: true, help: 'retries allowed, as a percentage of requests over the last 10 s (per worker; at least 10 retries per window)' },
  { name: 'circuit-failures', kind: 'int', arg: 'N', default: 0, min: 0, max: 1_000_000, perRoute: true, help: 'consecutive failures that open a backend\'s circuit breaker; 0 disables' },
  { name: 'circuit-cooldown', kind: 'duration', arg: 'DURATION', default: '10s', min: 1, perRoute: true, help: 'how long an open circuit refuses requests before letting probes through (half-open)' },
  { name: 'circuit-probes', kind: 'int', arg: 'N', default: 1, min: 1, max: 1000, perRoute: true, help: 'requests let through at once while the circuit is half-open' },
];

export const OPTIONS: readonly OptionSpec[] = [
  { name: 'config', kind: 'string', arg: 'FILE', cliOnly: true, help: 'YAML config file; flags given on the command line override its keys' },
  { name: 'listen', kind: 'hostport', arg: 'HOST:PORT', default: '0.0.0.0:8080', help: 'address the proxy workers accept clients on (every worker binds it, SO_REUSEPORT)' },
  { name: 'admin', kind: 'hostport', arg: 'HOST:PORT', default: '127.0.0.1:9901', help: 'admin API address (/health /ready /metrics /stats); "off" disables it' },
  { name: 'upstream', kind: 'url-list', arg: 'URL', help: 'backend origin http://host:port for the default route "/"; repeat for several backends' },
  { name: 'workers', kind: 'int', arg: 'N', default: availableParallelism(), min: 1, max: 256, help: 'number of proxy worker threads (default: available parallelism)' },
  { name: 'connect-timeout', kind: 'duration', arg: 'DURATION', default: '5s', perRoute: true, help: 'time to open a connection to a backend (504 when exceeded); 0 disables' },
  { name: 'headers-timeout', kind: 'duration', arg: 'DURATION', default: '30s', perRoute: true, help: 'time from sending the request until the backend\'s response headers (504 when exceeded); 0 disables' },
  { name: 'body-timeout', kind: 'duration', arg: 'DURATION', default: '30s', perRoute: true, help: 'longest pause between two chunks of a backend\'s response body (the response is cut when exceeded); 0 disables' },
  { name: 'idle-timeout', kind: 'duration', arg: 'DURATION', default: '60s', perRoute: true, help: 'how long an idle keep-alive connection to a backend is kept open; 0: not kept for reuse' },
  { name: 'drain-timeout', kind: 'duration', arg: 'DURATION', default: '10s', help: 'on SIGTERM/SIGINT, how long in-flight requests may take to finish before their connections are closed' },
  { name: 'max-body-size', kind: 'size', arg: 'SIZE', default: '10mb', perRoute: true, help: 'largest request body accepted (413 above it); 0 means no limit' },
  { name: 'max-header-size', kind: 'size', arg: 'SIZE', default: '16kb', min: 1024, max: MAX_HEADER_SIZE_CEILING, help: 'largest request line + header block accepted (431 above it); at most 96kb' },
  { name: 'pool-connections', kind: 'int', arg: 'N', default: 128, min: 1, max: 65536, perRoute: true, help: 'keep-alive connections per backend, per worker' },
  { name: 'upstream-client', kind: 'string', arg: 'CLIENT', default: 'lean', choices: ['lean', 'undici'], perRoute: true, help: 'client that talks to backends: lean (ugate\'s own HTTP/1.1 client, the fast path) or undici; https:// backends always use undici' },
  { name: 'upstream-read-buffer', kind: 'size', arg: 'SIZE', default: '256kb', min: 4096, max: 16 * 1024 * 1024, help: 'the one buffer each worker reads every backend socket into (lean client): larger means fewer reads and writes for big bodies; it is also the most a response held back by a slow client keeps in memory' },
  { name: 'pipelining', kind: 'int', arg: 'N', default: 1, min: 1, max: 128, perRoute: true, help: 'requests in flight on one backend connection (1 = no pipelining); above 1, bodyless idempotent requests share connections, one write per event-loop turn' },
  { name: 'forwarded-for', kind: 'string', arg: 'on|off', default: 'on', choices: ['on', 'off'], help: 'add X-Forwarded-For with the client address; "off" saves reading it per request (~15% of a small proxied request\'s CPU with this uWS build), and a client\'s own X-Forwarded-For then passes only from a --trusted-proxy' },
  { name: 'trusted-proxy', kind: 'list', arg: 'IP', help: 'client address whose X-Forwarded-* headers are kept and appended to (repeatable); others are overwritten' },
  { name: 'demo-origin', kind: 'hostport', arg: 'HOST:PORT', default: 'off', help: 'start the built-in demo origin on this address (for trying ugate with nothing else installed); "off" by default' },
  { name: 'allow-js-fallback', kind: 'bool', default: false, help: 'start even when the uWebSockets.js native binary did not load (its pure-JS fallback is many times slower)' },
  ...BALANCING_OPTIONS,
  { name: 'cache-size', kind: 'size', arg: 'SIZE', default: '0', help: 'L1 response cache per worker, bounded by bytes (LRU); 0 = caching off' },
  { name: 'cache-max-entry', kind: 'size', arg: 'SIZE', default: '1mb', min: 1, help: 'largest response body the cache stores; larger ones stream through uncached' },
  { name: 'cache-default-ttl', kind: 'duration', arg: 'DURATION', default: '0', help: 'freshness for cacheable responses without Cache-Control max-age/s-maxage or Expires; 0 = do not store them' },
  { name: 'cache-set-cookie', kind: 'bool', default: false, help: 'also store responses that carry Set-Cookie (off: they are never stored)' },
  { name: 'cache-warm', kind: 'list', arg: 'PATH', help: 'path (or http://host/path) every worker fetches into its cache at start (repeatable)' },
  { name: 'redis', kind: 'string', arg: 'URL', help: 'redis://HOST:PORT of a Redis shared by workers and processes as the L2 response cache (needs --cache-size)' },
  { name: 'cache-l2-timeout', kind: 'duration', arg: 'DURATION', default: '50ms', min: 1, help: 'longest wait for the L2 (Redis) before a lookup counts as a miss' },
  { name: 'check', kind: 'bool', cliOnly: true, help: 'check the configuration (file and flags) and that the native uWS binary loads, print what would run, and exit: 0 valid, 1 would not start, 2 invalid; starts nothing (run it before a SIGHUP reload)' },
  { name: 'help', kind: 'bool', cliOnly: true, help: 'print this help and exit' },
  { name: 'version', kind: 'bool', cliOnly: true, help: 'print the version and exit' },
];

export const OPTION_BY_NAME: ReadonlyMap<string, OptionSpec> = new Map(OPTIONS.map((o) => [o.name, o]));
