// The built CLI (dist/) as operators run it: help, version, usage errors, startup failures,
// and a config file with routes actually steering requests.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPTIONS } from '../../src/config/options';
import { closedPort, startOrigin, type Origin } from '../helpers/origin';
import { eventually, runCli, startUgate, type Ugate } from '../helpers/ugate';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION: string = require('../../package.json').version;

/** One request with an explicit Host header (fetch cannot set Host). */
function get(base: string, urlPath: string, host?: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: Number(u.port), path: urlPath, method: 'GET', agent: false, headers: host ? { host } : {} },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function expectOneLine(stderr: string): string {
  const lines = stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0].startsWith('ugate: ')).toBe(true);
  return lines[0];
}

describe('ugate --help / --version', () => {
  it('--help exits 0 and lists every option with its default', async () => {
    const { code, stdout, stderr } = await runCli(['--help']);
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toContain(`ugate ${VERSION}`);
    expect(stdout).toContain('Usage: ugate');
    const lines = stdout.split('\n');
    for (const o of OPTIONS) {
      const line = lines.find((l) => l.startsWith(`  --${o.name} `) || l === `  --${o.name}`);
      expect(line, `help line for --${o.name}`).toBeDefined();
      if (o.default !== undefined && o.kind !== 'bool') expect(line).toContain(`[default: ${o.default}]`);
      if (o.arg) expect(line).toContain(`--${o.name} ${o.arg}`);
    }
    expect(stdout).toContain('[default: 0.0.0.0:8080]');
    expect(stdout).toContain('[default: 16kb]');
    expect(stdout).toContain('Exit codes: 0 clean shutdown (or --check: valid), 1 runtime failure (or --check: would not start), 2 usage or config error.');
  });

  it('--help wins even when other flags are bad values', async () => {
    const { code, stdout } = await runCli(['--help', '--headers-timeout', 'whenever']);
    expect(code).toBe(0);
    expect(stdout).toContain('--headers-timeout');
  });

  it('--version prints the package version and exits 0', async () => {
    const { code, stdout, stderr } = await runCli(['--version']);
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toBe(`ugate ${VERSION}\n`);
  });
});

describe('ugate --check', () => {
  let dir: string;
  let held: NetServer;
  let heldPort: number;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'ugate-check-'));
    // A port some other process holds: --check must not try to bind it.
    held = createNetServer();
    await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve));
    heldPort = (held.address() as { port: number }).port;
  });
  afterAll(() => {
    held.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a valid file: exits 0, prints what would run, binds nothing', async () => {
    const file = path.join(dir, 'ok.yaml');
    writeFileSync(file, [
      `listen: 127.0.0.1:${heldPort}`,
      'admin: "off"',
      'workers: 3',
      'routes:',
      '  - name: api',
      '    path: /api',
      '    upstream: [http://127.0.0.1:7001, http://127.0.0.1:7002]',
      '  - name: rest',
      '    path: /',
      '    upstream: http://127.0.0.1:7003',
      '',
    ].join('\n'));
    const { code, stdout, stderr } = await runCli(['--check', '--config', file]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toBe([
      `configuration OK: would listen on 127.0.0.1:${heldPort} with 3 workers`,
      'admin API off',
      'route api: */api -> http://127.0.0.1:7001, http://127.0.0.1:7002',
      'route rest: */ -> http://127.0.0.1:7003',
      '',
    ].join('\n'));
  });

  it('flags override the file under --check as they do at start', async () => {
    const { code, stdout } = await runCli(['--check', '--config', 'config/default.yaml', '--workers', '1', '--listen', '127.0.0.1:18123']);
    expect(code).toBe(0);
    expect(stdout.split('\n')[0]).toBe('configuration OK: would listen on 127.0.0.1:18123 with 1 worker');
  });

  it('an invalid file: exits 2 with the field, like a start would', async () => {
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, 'upstream: http://127.0.0.1:7001\nroutes:\n  - path: /x\n    upstream: http://127.0.0.1:7002\n    headers-timeout: soon\n');
    const { code, stdout, stderr } = await runCli(['--check', '--config', file]);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(expectOneLine(stderr)).toContain('routes[0].headers-timeout: "soon" is not a duration');
  });

  it('a route path with a control character (NUL, \\x01) exits 2 naming routes[i].path; it could never match', async () => {
    for (const esc of ['\\0', '\\x01', '\\x7f']) {
      const file = path.join(dir, 'ctl-path.yaml');
      writeFileSync(file, `upstream: http://127.0.0.1:7001\nroutes:\n  - path: "/a${esc}b"\n    upstream: http://127.0.0.1:7002\n`);
      const { code, stdout, stderr } = await runCli(['--check', '--config', file]);
      expect(stdout).toBe('');
      expect(code).toBe(2);
      expect(expectOneLine(stderr)).toMatch(/^ugate: routes\[0\]\.path: "\/a(\\u0000|\\u0001|\x7f)b" must be a path prefix/);
    }
  });

  it('is a command-line flag only: refused as a YAML key', async () => {
    const file = path.join(dir, 'key.yaml');
    writeFileSync(file, 'check: true\nupstream: http://127.0.0.1:7001\n');
    const { code, stderr } = await runCli(['--config', file]);
    expect(code).toBe(2);
    expect(expectOneLine(stderr)).toContain('check: unknown config key');
  });
});

describe('usage and config errors exit 2 with one line naming the field', () => {
  it('unknown flag', async () => {
    const { code, stdout, stderr } = await runCli(['--bogus', '1']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    const line = expectOneLine(stderr);
    expect(line).toBe('ugate: --bogus: unknown flag (see --help)');
  });

  it('flag missing its value', async () => {
    const { code, stderr } = await runCli(['--upstream']);
    expect(code).toBe(2);
    expect(expectOneLine(stderr)).toContain('--upstream: needs a value');
  });

  it('--upstream not-a-url', async () => {
    const { code, stderr } = await runCli(['--upstream', 'not-a-url']);
    expect(code).toBe(2);
    const line = expectOneLine(stderr);
    expect(line).toMatch(/^ugate: upstream: /);
    expect(line).toContain('"not-a-url"');
  });

  it('--cache-size more than this machine holds, per worker × workers', async () => {
    const perWorkerMiB = Math.ceil(totalmem() / 2 / 2 ** 20) + 1;
    const { code, stderr } = await runCli(['--upstream', 'http://127.0.0.1:1', '--workers', '2', '--cache-size', `${perWorkerMiB}mb`]);
    expect(code).toBe(2);
    const line = expectOneLine(stderr);
    expect(line).toMatch(/^ugate: cache-size: /);
    expect(line).toContain(`× 2 workers is more than this machine's memory (${totalmem()} bytes)`);
  });

  it('--connect-timeout 5parsecs', async () => {
    const { code, stderr } = await runCli(['--upstream', 'http://127.0.0.1:1', '--connect-timeout', '5parsecs']);
    expect(code).toBe(2);
    const line = expectOneLine(stderr);
    expect(line).toMatch(/^ugate: connect-timeout: /);
    expect(line).toContain('"5parsecs"');
  });

  it('--max-header-size 200kb', async () => {
    const { code, stderr } = await runCli(['--upstream', 'http://127.0.0.1:1', '--max-header-size', '200kb']);
    expect(code).toBe(2);
    const line = expectOneLine(stderr);
    expect(line).toMatch(/^ugate: max-header-size: /);
    expect(line).toContain(`${200 * 1024} is above the maximum ${96 * 1024}`);
  });

  it('no upstream at all', async () => {
    const { code, stderr } = await runCli(['--listen', '127.0.0.1:0', '--admin', 'off']);
    expect(code).toBe(2);
    expect(expectOneLine(stderr)).toMatch(/^ugate: upstream: no backend configured/);
  });

  it('missing config file', async () => {
    const { code, stderr } = await runCli(['--config', '/nonexistent/ugate.yaml']);
    expect(code).toBe(2);
    const line = expectOneLine(stderr);
    expect(line).toMatch(/^ugate: config: cannot read \/nonexistent\/ugate\.yaml/);
  });
});

describe('bad operator input found by hardening: exit 2, the field named', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ugate-cli-bad-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const base = ['--listen', '127.0.0.1:0', '--admin', 'off', '--workers', '1'];

  it('a duration past setTimeout\'s range (1000h) is refused, not run as 1 ms', async () => {
    const { code, stdout, stderr } = await runCli([...base, '--upstream', 'http://127.0.0.1:1', '--health-path', '/h', '--health-interval', '1000h']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(expectOneLine(stderr)).toBe('ugate: health-interval: "1000h" is above the maximum 2147483647 ms (about 24 days)');
  });

  it('--admin on the listen address is refused instead of sharing the port with the proxy', async () => {
    const { code, stdout, stderr } = await runCli(['--listen', '127.0.0.1:18931', '--admin', '127.0.0.1:18931', '--workers', '1', '--upstream', 'http://127.0.0.1:1']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(expectOneLine(stderr)).toBe('ugate: admin: 127.0.0.1:18931 is the listen address; use another port');
  });

  it('a listen host that is no IP or host name is a usage error (2), not a bind failure (1)', async () => {
    const { code, stderr } = await runCli(['--listen', 'bad_host!:8080', '--admin', 'off', '--upstream', 'http://127.0.0.1:1']);
    expect(code).toBe(2);
    expect(expectOneLine(stderr)).toBe('ugate: listen: "bad_host!:8080": "bad_host!" is not an IP address or host name');
  });

  it('an upstream on port 0 is refused', async () => {
    const { code, stderr } = await runCli([...base, '--upstream', 'http://127.0.0.1:0']);
    expect(code).toBe(2);
    expect(expectOneLine(stderr)).toMatch(/^ugate: upstream: "http:\/\/127\.0\.0\.1:0" has port 0/);
  });

  it('a URL that is both a primary and a backup of one route is refused (the backup could never serve)', async () => {
    const { code, stdout, stderr } = await runCli([...base, '--upstream', 'http://127.0.0.1:1', '--upstream', 'http://127.0.0.1:2', '--upstream', 'http://127.0.0.1:1/ backup']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(expectOneLine(stderr)).toBe(
      'ugate: upstream: route "default" lists http://127.0.0.1:1 both as a primary and as a backup; a backup shares its primary\'s health, so it could never serve',
    );
  });

  it('two routes with the same host and path are refused, naming both', async () => {
    const file = path.join(dir, 'dup.yaml');
    writeFileSync(file, ['routes:', '  - name: a', '    path: /api', '    upstream: http://127.0.0.1:1', '  - name: b', '    path: /api/', '    upstream: http://127.0.0.1:2', ''].join('\n'));
    const { code, stderr } = await runCli([...base, '--config', file]);
    expect(code).toBe(2);
    expect(expectOneLine(stderr)).toBe(`ugate: routes: routes "a" and "b" both have host (any) and path /api (in ${file})`);
  });

  it('a bad value in the YAML file names the file; the same bad value as a flag does not', async () => {
    const file = path.join(dir, 'bad-value.yaml');
    writeFileSync(file, 'upstream: http://127.0.0.1:1\nworkers: [1, 2]\n');
    const fromFile = await runCli(['--listen', '127.0.0.1:0', '--admin', 'off', '--config', file]);
    expect(fromFile.code).toBe(2);
    expect(expectOneLine(fromFile.stderr)).toBe(`ugate: workers: [1,2] is not a whole number (in ${file})`);
    const fromFlag = await runCli(['--listen', '127.0.0.1:0', '--admin', 'off', '--config', file, '--workers', 'x']);
    expect(fromFlag.code).toBe(2);
    expect(expectOneLine(fromFlag.stderr)).toBe('ugate: workers: "x" is not a whole number');
  });

  it('a --health-timeout not shorter than --health-interval is refused, as flags, YAML keys and per-route keys', async () => {
    const flags = await runCli([...base, '--upstream', 'http://127.0.0.1:1', '--health-path', '/h', '--health-interval', '2s', '--health-timeout', '2s']);
    expect(flags.code).toBe(2);
    expect(flags.stdout).toBe('');
    expect(expectOneLine(flags.stderr)).toBe('ugate: health-timeout: "2s" must be shorter than health-interval ("2s")');
    // The default timeout (2s) with a shorter interval: the interval the operator wrote is named.
    const interval = await runCli([...base, '--upstream', 'http://127.0.0.1:1', '--health-path', '/h', '--health-interval', '500ms']);
    expect(interval.code).toBe(2);
    expect(expectOneLine(interval.stderr)).toBe('ugate: health-interval: "500ms" must be longer than health-timeout ("2s", the default)');
    const file = path.join(dir, 'health.yaml');
    writeFileSync(file, 'upstream: http://127.0.0.1:1\nhealth-path: /h\nhealth-timeout: 10s\n');
    const yaml = await runCli([...base, '--config', file]);
    expect(yaml.code).toBe(2);
    expect(expectOneLine(yaml.stderr)).toBe(`ugate: health-timeout: "10s" must be shorter than health-interval ("5s", the default) (in ${file})`);
    const routeFile = path.join(dir, 'health-route.yaml');
    writeFileSync(routeFile, ['routes:', '  - name: api', '    path: /api', '    upstream: http://127.0.0.1:1', '    health-path: /h', '    health-interval: 1s', ''].join('\n'));
    const route = await runCli([...base, '--config', routeFile]);
    expect(route.code).toBe(2);
    expect(expectOneLine(route.stderr)).toBe(`ugate: routes[0].health-interval: "1s" must be longer than health-timeout ("2s", the default) (in ${routeFile})`);
  });

  it('a bad cache setting is refused even while the cache is off', async () => {
    const { code, stderr } = await runCli([...base, '--upstream', 'http://127.0.0.1:1', '--cache-default-ttl', 'banana']);
    expect(code).toBe(2);
    expect(expectOneLine(stderr)).toMatch(/^ugate: cache-default-ttl: "banana" is not a duration/);
  });
});

describe('startup failures exit 1', () => {
  let blocker: NetServer;
  let busyPort: number;

  beforeAll(async () => {
    blocker = createNetServer();
    await new Promise<void>((r) => blocker.listen({ host: '127.0.0.1', port: 0, exclusive: true }, r));
    busyPort = (blocker.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => blocker.close(() => r())));

  it('port already in use names listen and says so', async () => {
    const { code, stdout, stderr } = await runCli(['--listen', `127.0.0.1:${busyPort}`, '--admin', 'off', '--workers', '1', '--upstream', 'http://127.0.0.1:1']);
    expect(code).toBe(1);
    expect(stdout).not.toContain('listening on');
    const line = expectOneLine(stderr);
    expect(line).toBe(`ugate: listen: cannot listen on 127.0.0.1:${busyPort}: address already in use`);
  });

  it('refuses the uWS pure-JS fallback unless --allow-js-fallback, without listening', async () => {
    const port = await closedPort();
    const { code, stdout, stderr } = await runCli(
      ['--listen', `127.0.0.1:${port}`, '--admin', 'off', '--workers', '1', '--upstream', 'http://127.0.0.1:1'],
      { UWS_USE_FALLBACK: '1' },
    );
    expect(code).toBe(1);
    expect(stdout).not.toContain('listening on');
    const line = expectOneLine(stderr);
    expect(line).toContain('refusing to start');
    expect(line).toContain('fallback');
    expect(line).toContain('UWS_USE_FALLBACK');
    expect(line).toContain('--allow-js-fallback');
    // Nothing was left bound on the requested port.
    const probe = createNetServer();
    await new Promise<void>((res, rej) => {
      probe.once('error', rej);
      probe.listen({ host: '127.0.0.1', port, exclusive: true }, res);
    });
    await new Promise<void>((r) => probe.close(() => r()));
  });
});

describe('a config file with routes', () => {
  let dir: string;
  let fallback: Origin;
  let api: Origin;
  let hosted: Origin;
  let ugate: Ugate;

  const tag = (name: string) => (req: { url?: string }, res: import('node:http').ServerResponse) => {
    const send = () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-origin': name });
      res.end(`${name} ${req.url}`);
    };
    if (req.url?.includes('slow')) setTimeout(send, 1200);
    else send();
  };

  beforeAll(async () => {
    [fallback, api, hosted] = await Promise.all([startOrigin(tag('fallback')), startOrigin(tag('api')), startOrigin(tag('hosted'))]);
    dir = mkdtempSync(path.join(tmpdir(), 'ugate-cli-'));
    const file = path.join(dir, 'ugate.yaml');
    writeFileSync(
      file,
      [
        `upstream: ${fallback.url}`,
        'headers-timeout: 10s',
        'routes:',
        '  - name: api',
        '    path: /api',
        `    upstream: ${api.url}`,
        '    headers-timeout: 300ms',
        '  - name: hosted',
        '    host: only.example.com',
        '    path: /site',
        `    upstream: [${hosted.url}]`,
        '',
      ].join('\n'),
    );
    ugate = await startUgate(['--config', file]);
  });

  afterAll(async () => {
    await ugate?.stop();
    await Promise.all([fallback?.close(), api?.close(), hosted?.close()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('announces each route', () => {
    const out = ugate.output();
    expect(out).toContain(`route api: */api -> ${api.url}`);
    expect(out).toContain(`route hosted: only.example.com/site -> ${hosted.url}`);
    expect(out).toContain(`route default: */ -> ${fallback.url}`);
  });

  it('sends the route path to the route origin and everything else to the default upstream', async () => {
    const a = await get(ugate.url, '/api/users?id=1');
    expect(a.status).toBe(200);
    expect(a.body).toBe('api /api/users?id=1');

    const b = await get(ugate.url, '/api');
    expect(b.body).toBe('api /api');

    const c = await get(ugate.url, '/apix');
    expect(c.status).toBe(200);
    expect(c.body).toBe('fallback /apix');

    const d = await get(ugate.url, '/other/page');
    expect(d.body).toBe('fallback /other/page');
  });

  it('uses a host-specific route only for that host', async () => {
    const other = await get(ugate.url, '/site/index.html', 'www.example.com');
    expect(other.status).toBe(200);
    expect(other.body).toBe('fallback /site/index.html');

    const own = await get(ugate.url, '/site/index.html', `only.example.com:${ugate.port}`);
    expect(own.status).toBe(200);
    expect(own.body).toBe('hosted /site/index.html');

    const sub = await get(ugate.url, '/site', 'sub.only.example.com');
    expect(sub.body).toBe('fallback /site');
    expect(hosted.seen.map((s) => s.url)).toEqual(['/site/index.html']);
  });

  it('applies the per-route headers-timeout, not the top-level one', async () => {
    const slowApi = await get(ugate.url, '/api/slow');
    expect(slowApi.status).toBe(504);
    // The default route inherits the top-level 10s and waits for the same slow origin.
    const slowDefault = await get(ugate.url, '/slow');
    expect(slowDefault.status).toBe(200);
    expect(slowDefault.body).toBe('fallback /slow');
  });

  it('/stats counts requests by route name', async () => {
    // api: 3 (two 200s + one 504), hosted: 1, default: 5.
    const byRoute = await eventually(async () => {
      const s = await ugate.stats();
      const r = s.requests.byRoute;
      return r.api === 3 && r.hosted === 1 && r.default === 5 ? r : undefined;
    }, 5000).catch(async (err) => {
      throw new Error(`${err}: byRoute=${JSON.stringify((await ugate.stats()).requests.byRoute)}`);
    });
    expect(Object.keys(byRoute).sort()).toEqual(['api', 'default', 'hosted']);
  });
});

describe('a large L1 cache and the workers\' heap', () => {
  // V8 gives each worker a heap limit of its own (this machine's default, as in this process);
  // a --cache-size near or above it ended the worker out of memory once the cache filled, and
  // its replacement after it. The workers now get a limit that holds the cache and 1 GiB more.
  const defaultMiB = Math.round(getHeapStatistics().heap_size_limit / 2 ** 20);
  const cacheMiB = defaultMiB + 256;
  it.skipIf(cacheMiB * 2 ** 20 > totalmem())(`--cache-size ${cacheMiB}mb (above the default limit of ${defaultMiB} MiB) raises the worker's`, async () => {
    const u = await startUgate(['--upstream', 'http://127.0.0.1:1', '--cache-size', `${cacheMiB}mb`], { workers: 1 });
    try {
      const m = /L1 cache: (\d+) MiB per worker, worker heap limit (\d+) MiB/.exec(u.output());
      expect(m).not.toBeNull();
      expect(Number(m![1])).toBe(cacheMiB);
      expect(Number(m![2])).toBeGreaterThanOrEqual(cacheMiB + 1024);
    } finally {
      await u.stop();
    }
  });

  it('/metrics and /stats show each worker\'s heap: its limit, and cached bodies in external memory', async () => {
    const body = Buffer.alloc(8192, 'cached body ');
    const o = await startOrigin((_req, res) => res.writeHead(200, { 'cache-control': 'max-age=600' }).end(body));
    const u = await startUgate(['--upstream', o.url, '--cache-size', '64mb'], { workers: 1 });
    const heap = async (kind: string) => {
      const m = new RegExp(`^ugate_worker_heap_bytes\\{worker="0",kind="${kind}"\\} (\\d+)$`, 'm').exec(await u.metrics());
      return m === null ? -1 : Number(m[1]);
    };
    try {
      const limit = await eventually(async () => (await heap('limit')) > 0 && heap('limit'));
      // A 64 MiB cache needs no more than V8's default, the same as this process's.
      expect(limit).toBe(getHeapStatistics().heap_size_limit);
      const before = await heap('external');
      for (let i = 0; i < 2000; i += 50) {
        await Promise.all(Array.from({ length: 50 }, (_, j) => fetch(`${u.url}/item/${i + j}`).then((r) => r.arrayBuffer())));
      }
      // 2,000 entries of 8 KiB held by the cache: at least 16 MB more outside the V8 heap.
      await eventually(async () => (await heap('external')) - before >= 16_000_000 || undefined);
      expect(await heap('used')).toBeGreaterThan(0);
      const row = (await u.stats()).workers[0];
      expect(row.heap!.limitBytes).toBe(limit);
      expect(row.heap!.externalBytes).toBeGreaterThanOrEqual(before + 16_000_000);
    } finally {
      await u.stop();
      await o.close();
    }
  });

  it('a small cache keeps the default limit', async () => {
    const u = await startUgate(['--upstream', 'http://127.0.0.1:1', '--cache-size', '64mb'], { workers: 1 });
    try {
      expect(u.output()).toContain(`L1 cache: 64 MiB per worker, worker heap limit ${defaultMiB} MiB`);
    } finally {
      await u.stop();
    }
  });
});
