import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildConfig,
  formatHelp,
  formatHostPort,
  loadConfig,
  parseArgs,
  parseHostPort,
  readConfigFile,
  type GatewayConfig,
  type RawSettings,
} from '../../../src/config/config';
import { MAX_HEADER_SIZE_CEILING, OPTIONS } from '../../../src/config/options';
import { ConfigError } from '../../../src/shared/errors';

const UP = 'http://127.0.0.1:9000';

/** Run fn, expect a ConfigError, return it. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

function expectFieldError(fn: () => unknown, field: string, ...mentions: string[]): ConfigError {
  const err = configError(fn);
  expect(err.field).toBe(field);
  expect(err.message.startsWith(`${field}: `)).toBe(true);
  for (const m of mentions) expect(err.message).toContain(m);
  return err;
}

const build = (raw: RawSettings): GatewayConfig => buildConfig(raw, null);

function isDeepFrozen(v: unknown, seen = new Set<unknown>()): boolean {
  if (v === null || typeof v !== 'object' || seen.has(v)) return true;
  seen.add(v);
  if (!Object.isFrozen(v)) return false;
  return Object.values(v as object).every((x) => isDeepFrozen(x, seen));
}

describe('parseArgs', () => {
  it('reads --name value and --name=value', () => {
    const a = parseArgs(['--listen', '127.0.0.1:1234', '--headers-timeout=2s', '--workers', '3']);
    expect(a.settings).toEqual({ listen: '127.0.0.1:1234', 'headers-timeout': '2s', workers: '3' });
    expect(a.help).toBe(false);
    expect(a.version).toBe(false);
  });

  it('keeps "=" inside a value given with --name=value', () => {
    expect(parseArgs(['--upstream=http://10.0.0.1:80 weight=3']).settings).toEqual({ upstream: ['http://10.0.0.1:80 weight=3'] });
  });

  it('accumulates repeated --upstream and --trusted-proxy', () => {
    const a = parseArgs(['--upstream', 'http://a:1', '--upstream=http://b:2', '--trusted-proxy', '10.0.0.1', '--upstream', 'http://c:3', '--trusted-proxy', '::1']);
    expect(a.settings.upstream).toEqual(['http://a:1', 'http://b:2', 'http://c:3']);
    expect(a.settings['trusted-proxy']).toEqual(['10.0.0.1', '::1']);
  });

  it('lets a repeated scalar flag be overridden by the last one', () => {
    expect(parseArgs(['--workers', '2', '--workers', '5']).settings.workers).toBe('5');
  });

  it('takes bool flags without a value, or with =value', () => {
    expect(parseArgs(['--allow-js-fallback']).settings['allow-js-fallback']).toBe(true);
    expect(parseArgs(['--allow-js-fallback=false']).settings['allow-js-fallback']).toBe('false');
    const h = parseArgs(['--help']);
    expect(h.help).toBe(true);
    expect(h.version).toBe(false);
    expect(h.settings).toEqual({});
    expect(parseArgs(['--version']).version).toBe(true);
    expect(parseArgs(['--help=no']).help).toBe(false);
  });

  it('does not consume the next token for a bool flag', () => {
    const a = parseArgs(['--allow-js-fallback', '--workers', '4']);
    expect(a.settings).toEqual({ 'allow-js-fallback': true, workers: '4' });
  });

  it('refuses an unknown flag, naming it', () => {
    const err = expectFieldError(() => parseArgs(['--bogus', '1']), '--bogus', 'unknown flag');
    expect(err.message).toBe('--bogus: unknown flag (see --help)');
    expectFieldError(() => parseArgs(['--bogus=1']), '--bogus');
  });

  it('refuses a bare argument', () => {
    expectFieldError(() => parseArgs(['8080']), '8080', 'unexpected argument');
    expectFieldError(() => parseArgs(['-w', '2']), '-w');
  });

  it('refuses a flag missing its value', () => {
    expectFieldError(() => parseArgs(['--upstream']), '--upstream', 'needs a value URL');
    expectFieldError(() => parseArgs(['--workers', '2', '--headers-timeout']), '--headers-timeout', 'DURATION');
  });

  it('refuses a bad bool value for --help', () => {
    expectFieldError(() => parseArgs(['--help=maybe']), '--help', '"maybe"');
  });
});

describe('buildConfig: defaults', () => {
  const cfg = build({ upstream: [UP] });

  it('applies the documented defaults', () => {
    expect(cfg.configFile).toBeNull();
    expect(cfg.listen).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(cfg.admin).toEqual({ host: '127.0.0.1', port: 9901 });
    expect(cfg.workers).toBeGreaterThanOrEqual(1);
    expect(cfg.drainTimeoutMs).toBe(10_000);
    expect(cfg.maxHeaderSize).toBe(16_384);
    expect(cfg.trustedProxies).toEqual([]);
    expect(cfg.demoOrigin).toBeNull();
    expect(cfg.allowJsFallback).toBe(false);
    expect(cfg.routes).toHaveLength(1);
    expect(cfg.routes[0]).toEqual({
      name: 'default',
      host: null,
      path: '/',
      backends: [{ url: UP, origin: UP, weight: 1, backup: false }],
      connectTimeoutMs: 5000,
      headersTimeoutMs: 30_000,
      bodyTimeoutMs: 30_000,
      idleTimeoutMs: 60_000,
      maxBodySize: 10 * 1024 * 1024,
      poolConnections: 128,
      pipelining: 1,
      upstreamClient: 'lean',
      lb: {
        balance: 'round-robin', hashKey: 'ip', healthPath: null, healthIntervalMs: 5000, healthTimeoutMs: 2000, healthRise: 2, healthFall: 3,
        maxFails: 5, failWindowMs: 10_000, ejectTimeMs: 30_000, retries: 1, retryBudgetPercent: 20,
        circuitFailures: 0, circuitCooldownMs: 10_000, circuitProbes: 1,
      },
    });
  });

  it('freezes the whole config deeply', () => {
    expect(Object.isFrozen(cfg)).toBe(true);
    expect(Object.isFrozen(cfg.routes)).toBe(true);
    expect(Object.isFrozen(cfg.routes[0])).toBe(true);
    expect(Object.isFrozen(cfg.routes[0].backends[0])).toBe(true);
    expect(Object.isFrozen(cfg.listen)).toBe(true);
    expect(isDeepFrozen(cfg)).toBe(true);
    expect(() => {
      (cfg as { workers: number }).workers = 99;
    }).toThrow(TypeError);
    expect(() => (cfg.routes as unknown as unknown[]).push({})).toThrow(TypeError);
  });
});

describe('buildConfig: values', () => {
  it('converts durations and sizes with units', () => {
    const cfg = build({
      upstream: [UP],
      'connect-timeout': '500ms',
      'headers-timeout': '1.5m',
      'body-timeout': '0',
      'idle-timeout': '1h',
      'drain-timeout': '2s',
      'max-body-size': '1mb',
      'max-header-size': '32kb',
      'pool-connections': '4',
      pipelining: 8,
      workers: '3',
    });
    const r = cfg.routes[0];
    expect(r.connectTimeoutMs).toBe(500);
    expect(r.headersTimeoutMs).toBe(90_000);
    expect(r.bodyTimeoutMs).toBe(0);
    expect(r.idleTimeoutMs).toBe(3_600_000);
    expect(cfg.drainTimeoutMs).toBe(2000);
    expect(r.maxBodySize).toBe(1024 * 1024);
    expect(cfg.maxHeaderSize).toBe(32 * 1024);
    expect(r.poolConnections).toBe(4);
    expect(r.pipelining).toBe(8);
    expect(cfg.workers).toBe(3);
  });

  it('takes bare numbers (YAML) as ms and bytes', () => {
    const cfg = build({ upstream: [UP], 'headers-timeout': 2500, 'max-header-size': 2048 });
    expect(cfg.routes[0].headersTimeoutMs).toBe(2500);
    expect(cfg.maxHeaderSize).toBe(2048);
  });

  it('parses listen/admin forms, "off" and a bare YAML port', () => {
    const cfg = build({ upstream: [UP], listen: '[::1]:8443', admin: 'off', 'demo-origin': 'off' });
    expect(cfg.listen).toEqual({ host: '::1', port: 8443 });
    expect(cfg.admin).toBeNull();
    expect(build({ upstream: [UP], listen: 9000 }).listen).toEqual({ host: '0.0.0.0', port: 9000 });
    expect(build({ upstream: [UP], listen: 'localhost:0' }).listen).toEqual({ host: 'localhost', port: 0 });
  });

  it('reads backend options weight= and backup, and several upstreams', () => {
    const cfg = build({ upstream: ['http://10.0.0.1:80 weight=3', 'https://b.example:8443 backup', 'http://c.example'] });
    expect(cfg.routes[0].backends).toEqual([
      { url: 'http://10.0.0.1:80', origin: 'http://10.0.0.1', weight: 3, backup: false },
      { url: 'https://b.example:8443', origin: 'https://b.example:8443', weight: 1, backup: true },
      { url: 'http://c.example:80', origin: 'http://c.example', weight: 1, backup: false },
    ]);
  });

  it('names every spelling of one origin alike: trailing slash, host case, default port written or not', () => {
    const urls = (upstream: string[]) => build({ upstream }).routes[0].backends.map((b) => b.url);
    expect(urls(['http://a:1', 'http://a:1/', 'http://A:1', 'HTTP://a:1/'])).toEqual(Array(4).fill('http://a:1'));
    expect(urls(['http://a', 'http://a:80', 'http://a:80/', 'http://A/'])).toEqual(Array(4).fill('http://a:80'));
    expect(urls(['https://a', 'https://a:443/'])).toEqual(Array(2).fill('https://a:443'));
    expect(urls(['http://[::1]:8080', 'http://[0:0::1]:8080/'])).toEqual(Array(2).fill('http://[::1]:8080'));
    // Different ports, schemes or hosts stay different backends.
    expect(new Set(urls(['http://a:80', 'http://a:81', 'https://a:80', 'http://b:80'])).size).toBe(4);
  });

  it('accepts a single upstream string (YAML scalar) and a trailing slash', () => {
    expect(build({ upstream: 'http://127.0.0.1:9000/' }).routes[0].backends[0].origin).toBe(UP);
  });

  it('keeps trusted proxies, trimmed', () => {
    expect(build({ upstream: [UP], 'trusted-proxy': [' 10.0.0.1 ', '::1'] }).trustedProxies).toEqual(['10.0.0.1', '::1']);
    expect(build({ upstream: [UP], 'trusted-proxy': '192.168.1.1' }).trustedProxies).toEqual(['192.168.1.1']);
  });

  it('reads allow-js-fallback from flags and YAML', () => {
    expect(build({ upstream: [UP], 'allow-js-fallback': true }).allowJsFallback).toBe(true);
    expect(build({ upstream: [UP], 'allow-js-fallback': 'yes' }).allowJsFallback).toBe(true);
    expect(build({ upstream: [UP], 'allow-js-fallback': 'false' }).allowJsFallback).toBe(false);
  });

  it('accepts max-header-size at exactly the ceiling and the floor', () => {
    expect(build({ upstream: [UP], 'max-header-size': '96kb' }).maxHeaderSize).toBe(MAX_HEADER_SIZE_CEILING);
    expect(build({ upstream: [UP], 'max-header-size': '1kb' }).maxHeaderSize).toBe(1024);
  });
});

describe('buildConfig: validation errors name the field and the bad value', () => {
  it('bad upstream URL', () => {
    expectFieldError(() => build({ upstream: ['not-a-url'] }), 'upstream', '"not-a-url"', 'not a valid URL');
  });

  it('upstream with a path, query or fragment', () => {
    expectFieldError(() => build({ upstream: ['http://127.0.0.1:9000/api'] }), 'upstream', '"http://127.0.0.1:9000/api"', 'without path');
    expectFieldError(() => build({ upstream: ['http://127.0.0.1:9000/?a=1'] }), 'upstream', 'query');
    expectFieldError(() => build({ upstream: ['http://127.0.0.1:9000/#x'] }), 'upstream', 'fragment');
  });

  it('non-http schemes and credentials', () => {
    expectFieldError(() => build({ upstream: ['ftp://127.0.0.1:21'] }), 'upstream', '"ftp://127.0.0.1:21"', 'http:// or https://');
    expectFieldError(() => build({ upstream: ['http://user:pw@127.0.0.1:80'] }), 'upstream', 'credentials');
  });

  it('names the index when several upstreams are given', () => {
    expectFieldError(() => build({ upstream: [UP, 'ftp://x'] }), 'upstream[1]', '"ftp://x"');
  });

  it('unknown or bad backend option', () => {
    expectFieldError(() => build({ upstream: [`${UP} fast`] }), 'upstream', 'unknown backend option "fast"');
    expectFieldError(() => build({ upstream: [`${UP} weight=0`] }), 'upstream', '"weight=0"');
    expectFieldError(() => build({ upstream: [`${UP} weight=1001`] }), 'upstream', '"weight=1001"');
    expectFieldError(() => build({ upstream: [`${UP} backup=yes`] }), 'upstream', '"backup=yes"');
  });

  it('a URL listed both as a primary and as a backup in one route (the backup could never serve)', () => {
    expectFieldError(() => build({ upstream: [UP, `${UP}/ backup`] }), 'upstream', 'route "default"', `${UP} both as a primary and as a backup`);
    expectFieldError(
      () => build({ routes: [{ name: 'api', path: '/api', upstream: ['http://a:1 backup', 'http://b:1', 'http://A:1 weight=2'] }] }),
      'routes[0].upstream', 'route "api"', 'http://a:1 both as a primary and as a backup',
    );
    // In two different routes, or as two backups, it is fine.
    expect(build({ routes: [{ path: '/a', upstream: [UP] }, { path: '/b', upstream: ['http://b:1', `${UP} backup`] }] }).routes).toHaveLength(2);
    expect(build({ upstream: ['http://b:1', `${UP} backup`, `${UP} backup`] }).routes[0].backends).toHaveLength(3);
  });

  it('empty or non-string upstream', () => {
    expectFieldError(() => build({ upstream: [''] }), 'upstream', 'not a backend URL');
    expectFieldError(() => build({ upstream: [42] }), 'upstream', '42');
    expectFieldError(() => build({ upstream: [] }), 'upstream', 'at least one backend');
  });

  it('workers out of range or not a number', () => {
    expectFieldError(() => build({ upstream: [UP], workers: '0' }), 'workers', '0 is below the minimum 1');
    expectFieldError(() => build({ upstream: [UP], workers: 257 }), 'workers', '257 is above the maximum 256');
    expectFieldError(() => build({ upstream: [UP], workers: 'four' }), 'workers', '"four"', 'whole number');
    expectFieldError(() => build({ upstream: [UP], workers: '1.5' }), 'workers', '"1.5"');
    expectFieldError(() => build({ upstream: [UP], workers: -2 }), 'workers', '-2 is below the minimum 1');
  });

  it('max-header-size over 96kb or under 1kb', () => {
    expectFieldError(() => build({ upstream: [UP], 'max-header-size': '200kb' }), 'max-header-size', `${200 * 1024} is above the maximum ${MAX_HEADER_SIZE_CEILING}`);
    expectFieldError(() => build({ upstream: [UP], 'max-header-size': '97kb' }), 'max-header-size', 'above the maximum');
    expectFieldError(() => build({ upstream: [UP], 'max-header-size': '512b' }), 'max-header-size', '512 is below the minimum 1024');
  });

  it('bad durations and sizes', () => {
    expectFieldError(() => build({ upstream: [UP], 'connect-timeout': '5parsecs' }), 'connect-timeout', '"5parsecs"', 'duration');
    expectFieldError(() => build({ upstream: [UP], 'drain-timeout': '-1s' }), 'drain-timeout', '"-1s"');
    expectFieldError(() => build({ upstream: [UP], 'max-body-size': '10 furlongs' }), 'max-body-size', '"10 furlongs"', 'size');
  });

  it('bad listen, admin and demo-origin', () => {
    expectFieldError(() => build({ upstream: [UP], listen: 'nowhere' }), 'listen', '"nowhere"', 'HOST:PORT');
    expectFieldError(() => build({ upstream: [UP], listen: '0.0.0.0:70000' }), 'listen', '"0.0.0.0:70000"');
    expectFieldError(() => build({ upstream: [UP], listen: ':8080' }), 'listen', '":8080"');
    expectFieldError(() => build({ upstream: [UP], admin: 'localhost' }), 'admin', '"localhost"');
    expectFieldError(() => build({ upstream: [UP], 'demo-origin': '1.2.3.4:x' }), 'demo-origin', '"1.2.3.4:x"');
  });

  it('bad trusted-proxy', () => {
    expectFieldError(() => build({ upstream: [UP], 'trusted-proxy': ['10.0.0.1', 'proxy.local'] }), 'trusted-proxy', '"proxy.local"', 'not an IP address');
    expectFieldError(() => build({ upstream: [UP], 'trusted-proxy': ['10.0.0.0/8'] }), 'trusted-proxy', '"10.0.0.0/8"');
  });

  it('bad bool', () => {
    expectFieldError(() => build({ upstream: [UP], 'allow-js-fallback': 'maybe' }), 'allow-js-fallback', '"maybe"', 'true or false');
  });

  it('no upstream at all', () => {
    expectFieldError(() => build({}), 'upstream', 'no backend configured');
    expectFieldError(() => build({ routes: [] }), 'upstream', 'no backend configured');
  });
});

describe('buildConfig: routes', () => {
  const A = 'http://127.0.0.1:9001';
  const B = 'http://127.0.0.1:9002';
  const C = 'http://127.0.0.1:9003';
  const D = 'http://127.0.0.1:9004';

  const cfg = build({
    'headers-timeout': '10s',
    'connect-timeout': '2s',
    upstream: [UP],
    routes: [
      { name: 'short', path: '/a', upstream: A },
      { name: 'longer', path: '/a/b/c/', upstream: [B], 'headers-timeout': '250ms', 'max-body-size': '1kb' },
      { name: 'hosted', host: 'API.Example.com', path: '/', upstream: C },
      { name: 'wild', host: '*.example.com', path: '/long/path', upstream: D },
      { host: 'x.example.com', path: '/x', upstream: D, pipelining: 4 },
    ],
  });

  it('sorts most specific first: exact hosts, then wildcard hosts, then host-less; longer paths first', () => {
    expect(cfg.routes.map((r) => r.name)).toEqual(['route4', 'hosted', 'wild', 'longer', 'short', 'default']);
  });

  it('normalises host case and strips a trailing slash from the path', () => {
    const byName = Object.fromEntries(cfg.routes.map((r) => [r.name, r]));
    expect(byName.hosted.host).toBe('api.example.com');
    expect(byName.hosted.path).toBe('/');
    expect(byName.longer.path).toBe('/a/b/c');
    expect(byName.short.host).toBeNull();
    expect(byName.default.path).toBe('/');
    expect(byName.default.host).toBeNull();
  });

  it('uses per-route overrides, and inherits top-level values otherwise', () => {
    const byName = Object.fromEntries(cfg.routes.map((r) => [r.name, r]));
    expect(byName.longer.headersTimeoutMs).toBe(250);
    expect(byName.longer.maxBodySize).toBe(1024);
    expect(byName.longer.connectTimeoutMs).toBe(2000);
    expect(byName.short.headersTimeoutMs).toBe(10_000);
    expect(byName.short.maxBodySize).toBe(10 * 1024 * 1024);
    expect(byName.default.headersTimeoutMs).toBe(10_000);
    expect(byName.route4.pipelining).toBe(4);
    expect(byName.short.pipelining).toBe(1);
    expect(byName.wild.backends.map((b) => b.origin)).toEqual([D]);
    expect(byName.longer.backends.map((b) => b.origin)).toEqual([B]);
  });

  it('freezes routes deeply', () => {
    expect(isDeepFrozen(cfg)).toBe(true);
  });

  it('routes alone are enough (no default route is added)', () => {
    const c = build({ routes: [{ path: '/only', upstream: A }] });
    expect(c.routes.map((r) => [r.name, r.path])).toEqual([['route0', '/only']]);
  });

  it('refuses an unknown route key, naming routes[i].key', () => {
    expectFieldError(() => build({ routes: [{ path: '/', upstream: A, bogus: 1 }] }), 'routes[0].bogus', 'unknown route key');
    // A global-only option is not a route key either.
    expectFieldError(() => build({ routes: [{ path: '/', upstream: A }, { path: '/b', upstream: A, workers: 2 }] }), 'routes[1].workers', 'unknown route key');
  });

  it('names the route field in per-route validation errors', () => {
    expectFieldError(() => build({ routes: [{ path: '/', upstream: A, 'headers-timeout': 'soon' }] }), 'routes[0].headers-timeout', '"soon"');
    expectFieldError(() => build({ routes: [{ path: '/', upstream: 'ftp://x' }] }), 'routes[0].upstream', '"ftp://x"');
    expectFieldError(() => build({ routes: [{ path: '/' }] }), 'routes[0].upstream', 'at least one backend');
    expectFieldError(() => build({ routes: [{ path: 'api', upstream: A }] }), 'routes[0].path', '"api"');
    expectFieldError(() => build({ routes: [{ path: '/a?b', upstream: A }] }), 'routes[0].path', '"/a?b"');
    expectFieldError(() => build({ routes: [{ path: '/', host: 'bad host!', upstream: A }] }), 'routes[0].host', '"bad host!"');
    // Empty labels, or a hyphen at either end of one, could never match a Host header.
    for (const host of ['...', 'a..b', '.a', 'a.', '*.', '-a.b', 'a-.b', '*.*.a'])
      expectFieldError(() => build({ routes: [{ path: '/', host, upstream: A }] }), 'routes[0].host', JSON.stringify(host));
    expect(build({ routes: [{ path: '/', host: '*.Api-2.example.com', upstream: A }] }).routes[0].host).toBe('*.api-2.example.com');
    expectFieldError(() => build({ routes: [{ path: '/', name: 'has space', upstream: A }] }), 'routes[0].name', '"has space"');
    expectFieldError(() => build({ routes: ['/api'] }), 'routes[0]', 'mapping');
    expectFieldError(() => build({ routes: { path: '/' } }), 'routes', 'list');
  });

  it('refuses duplicate route names', () => {
    expectFieldError(() => build({ routes: [{ name: 'api', path: '/a', upstream: A }, { name: 'api', path: '/b', upstream: B }] }), 'routes', '"api"', 'twice');
    expectFieldError(() => build({ upstream: [UP], routes: [{ name: 'default', path: '/a', upstream: A }] }), 'routes', '"default"');
  });
});

describe('buildConfig: demo origin', () => {
  it('without upstream, the demo origin becomes the default route', () => {
    const cfg = build({ 'demo-origin': '127.0.0.1:9090' });
    expect(cfg.demoOrigin).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(cfg.routes).toHaveLength(1);
    expect(cfg.routes[0].name).toBe('default');
    expect(cfg.routes[0].path).toBe('/');
    expect(cfg.routes[0].backends.map((b) => b.origin)).toEqual(['http://127.0.0.1:9090']);
  });

  it('an explicit upstream wins over the demo origin', () => {
    const cfg = build({ 'demo-origin': '127.0.0.1:9090', upstream: [UP] });
    expect(cfg.routes.map((r) => r.backends[0].origin)).toEqual([UP]);
  });

  it('off by default: no route without upstream', () => {
    expectFieldError(() => build({ 'demo-origin': 'off' }), 'upstream');
  });
});

describe('parseHostPort / formatHostPort', () => {
  it('round-trips IPv4 and IPv6', () => {
    expect(parseHostPort('10.1.2.3:80', 'x')).toEqual({ host: '10.1.2.3', port: 80 });
    expect(formatHostPort({ host: '::', port: 8080 })).toBe('[::]:8080');
    expect(formatHostPort(parseHostPort('[::]:8080', 'x'))).toBe('[::]:8080');
  });
});

describe('loadConfig: defaults < file < flags', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ugate-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string): string => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  it('flag wins over file, file wins over default', () => {
    const file = write(
      'merge.yaml',
      [
        'listen: 127.0.0.1:7000',
        'headers-timeout: 10s',
        'connect-timeout: 3s',
        'workers: 2',
        'upstream:',
        `  - ${UP}`,
        'trusted-proxy: [10.0.0.1]',
        '',
      ].join('\n'),
    );
    const cfg = loadConfig(['--config', file, '--headers-timeout', '2s', '--workers=4']);
    expect(cfg.help).toBe(false);
    expect(cfg.version).toBe(false);
    expect(cfg.configFile).toBe(file);
    const r = cfg.routes[0];
    expect(r.headersTimeoutMs).toBe(2000); // flag
    expect(r.connectTimeoutMs).toBe(3000); // file
    expect(r.bodyTimeoutMs).toBe(30_000); // default
    expect(cfg.workers).toBe(4); // flag
    expect(cfg.listen).toEqual({ host: '127.0.0.1', port: 7000 }); // file
    expect(cfg.admin).toEqual({ host: '127.0.0.1', port: 9901 }); // default
    expect(cfg.trustedProxies).toEqual(['10.0.0.1']);
    expect(r.backends.map((b) => b.origin)).toEqual([UP]);
  });

  it('--upstream on the command line replaces the file list', () => {
    const file = write('up.yaml', `upstream: [${UP}, http://127.0.0.1:9001]\n`);
    const cfg = loadConfig(['--config', file, '--upstream', 'http://127.0.0.1:9555']);
    expect(cfg.routes[0].backends.map((b) => b.origin)).toEqual(['http://127.0.0.1:9555']);
  });

  it('reads routes from the file with per-route overrides', () => {
    const file = write(
      'routes.yaml',
      [
        'headers-timeout: 7s',
        `upstream: ${UP}`,
        'routes:',
        '  - name: api',
        '    path: /api',
        '    upstream: http://127.0.0.1:9001',
        '    headers-timeout: 300ms',
        '  - name: site',
        '    host: www.example.com',
        '    path: /',
        '    upstream: [http://127.0.0.1:9002 weight=2]',
        '',
      ].join('\n'),
    );
    const cfg = loadConfig(['--config', file]);
    expect(cfg.routes.map((r) => r.name)).toEqual(['site', 'api', 'default']);
    expect(cfg.routes.map((r) => r.headersTimeoutMs)).toEqual([7000, 300, 7000]);
    expect(cfg.routes[0].backends[0].weight).toBe(2);
  });

  it('an empty file is all defaults (upstream from flags)', () => {
    const file = write('empty.yaml', '');
    const cfg = loadConfig(['--config', file, '--upstream', UP]);
    expect(cfg.listen).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(cfg.routes[0].headersTimeoutMs).toBe(30_000);
  });

  it('refuses an unknown YAML key, naming it', () => {
    const file = write('unknown.yaml', `upstream: ${UP}\nheader-timeout: 5s\n`);
    expectFieldError(() => loadConfig(['--config', file]), 'header-timeout', 'unknown config key', file);
  });

  it('refuses CLI-only keys in YAML', () => {
    const file = write('clionly.yaml', `upstream: ${UP}\nconfig: other.yaml\n`);
    expectFieldError(() => loadConfig(['--config', file]), 'config', 'unknown config key');
    const help = write('help.yaml', `upstream: ${UP}\nhelp: true\n`);
    expectFieldError(() => loadConfig(['--config', help]), 'help', 'unknown config key');
  });

  it('refuses invalid YAML, naming config', () => {
    const file = write('broken.yaml', 'upstream: [http://127.0.0.1:9000\nlisten: : :\n');
    expectFieldError(() => loadConfig(['--config', file]), 'config', 'not valid YAML', file);
  });

  it('refuses a YAML document that is not a mapping', () => {
    const file = write('list.yaml', '- a\n- b\n');
    expectFieldError(() => loadConfig(['--config', file]), 'config', 'mapping');
  });

  it('refuses a missing file, naming config', () => {
    const missing = path.join(dir, 'does-not-exist.yaml');
    expectFieldError(() => loadConfig(['--config', missing]), 'config', 'cannot read', missing);
    expectFieldError(() => readConfigFile(missing), 'config', 'ENOENT');
  });

  it('bad values from the file name the field and value', () => {
    const file = write('badvalue.yaml', `upstream: ${UP}\nconnect-timeout: 5 parsecs\n`);
    expectFieldError(() => loadConfig(['--config', file]), 'connect-timeout', '"5 parsecs"');
  });

  it('--help and --version short-circuit without needing an upstream', () => {
    expect(loadConfig(['--help']).help).toBe(true);
    expect(loadConfig(['--version']).version).toBe(true);
  });
});

describe('formatHelp', () => {
  it('lists every option with its default', () => {
    const help = formatHelp('9.9.9');
    expect(help).toContain('ugate 9.9.9');
    for (const o of OPTIONS) {
      expect(help).toContain(`--${o.name}`);
      if (o.default !== undefined && o.kind !== 'bool') expect(help).toContain(`[default: ${o.default}]`);
    }
  });
});

describe('forwarded-for', () => {
  const UP = 'http://127.0.0.1:9000';
  it('is on by default, "off" turns it off, anything else names the field', () => {
    expect(build({ upstream: [UP] }).forwardedFor).toBe(true);
    expect(build({ upstream: [UP], 'forwarded-for': 'off' }).forwardedFor).toBe(false);
    expectFieldError(() => build({ upstream: [UP], 'forwarded-for': 'sometimes' }), 'forwarded-for', 'sometimes');
  });
});

describe('upstream-read-buffer', () => {
  const UP = 'http://127.0.0.1:9000';
  it('defaults to 256 KiB, takes sizes, and refuses what is out of range naming the field', () => {
    expect(build({ upstream: [UP] }).upstreamReadBuffer).toBe(256 * 1024);
    expect(build({ upstream: [UP], 'upstream-read-buffer': '1mb' }).upstreamReadBuffer).toBe(1024 * 1024);
    expectFieldError(() => build({ upstream: [UP], 'upstream-read-buffer': '1kb' }), 'upstream-read-buffer');
    expectFieldError(() => build({ upstream: [UP], 'upstream-read-buffer': 'big' }), 'upstream-read-buffer', 'big');
  });
});

describe('the shipped config files', () => {
  it('routes.example.yaml builds, with its per-route overrides (pipelining on the api route only)', () => {
    const file = path.resolve(__dirname, '../../../config/routes.example.yaml');
    const cfg = buildConfig(readConfigFile(file), file);
    const by = Object.fromEntries(cfg.routes.map((r) => [r.name, r]));
    expect(Object.keys(by).sort()).toEqual(['api', 'default', 'uploads']);
    expect(by.api).toMatchObject({ pipelining: 16, headersTimeoutMs: 2000, maxBodySize: 1024 * 1024 });
    expect(by.uploads.pipelining).toBe(1);
    expect(by.default.pipelining).toBe(1);
  });

  it('cache.example.yaml builds with its cache settings', () => {
    const file = path.resolve(__dirname, '../../../config/cache.example.yaml');
    const cfg = buildConfig(readConfigFile(file), file);
    expect(cfg.cache).toMatchObject({ size: 256 * 1024 * 1024, maxEntry: 1024 * 1024, warm: ['/', '/static/app.js'], redis: null });
  });
});
