// SIGHUP reload under load: backends swapped in the config file while requests flow; not one
// request fails, the removed backend stops getting requests, the added one starts, and a bad
// config is refused with the old one kept. Active health state survives a reload; pools are
// kept or closed, none leaked.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startOrigin, type Origin } from '../helpers/origin';
import { load } from '../helpers/load';
import { eventually, startUgate, type Ugate } from '../helpers/ugate';

const started: Origin[] = [];
let u: Ugate | null = null;
let h: Ugate | null = null;
let dup: Ugate | null = null;
let tel: Ugate | null = null;
let cached: Ugate | null = null;
let retried: Ugate | null = null;
afterAll(async () => {
  await retried?.stop();
  await u?.stop();
  await h?.stop();
  await dup?.stop();
  await tel?.stop();
  await cached?.stop();
  for (const o of started) await o.close();
});

async function origin(delayMs = 0): Promise<Origin> {
  const o = await startOrigin((_req, res) => {
    if (delayMs) setTimeout(() => res.end('ok'), delayMs);
    else res.end('ok');
  });
  started.push(o);
  return o;
}

describe('SIGHUP reload', () => {
  it('swaps backends under load with zero failed requests; removed backends finish their in-flight requests', async () => {
    // A is slow, so requests are in flight on it at the moment it is removed.
    const a = await origin(30);
    const b = await origin();
    const c = await origin();
    const file = configFile(`upstream:\n  - ${a.url}\n  - ${b.url}\n`);
    u = await startUgate(['--config', file]);
    let reloaded = false;
    let aAtReload = 0;
    const r = await load(u.url, 1200, {
      concurrency: 8,
      onDone: (n) => {
        if (n === 200 && !reloaded) {
          reloaded = true;
          writeFileSync(file, `upstream:\n  - ${b.url}\n  - ${c.url}\nbalance: least-conn\n`);
          aAtReload = a.seen.length;
          u!.proc.kill('SIGHUP');
        }
      },
    });
    expect(r.errors).toEqual([]);
    expect(r.failed).toBe(0);
    expect(r.statuses.get(200)).toBe(1200);
    expect(u.output()).toContain('reloaded config (generation 1)');
    expect(c.seen.length).toBeGreaterThan(100);
    // Requests already sent to A when the reload landed may still arrive there; nothing after.
    expect(a.seen.length - aAtReload).toBeLessThan(20);
    const aAfter = a.seen.length;
    await load(u.url, 100, { concurrency: 4 });
    expect(a.seen.length).toBe(aAfter);
    const stats = await u.stats();
    expect(stats.backends.map((s) => s.url)).toEqual([b.url, c.url]);
    await eventually(async () => ((await u!.stats()).requests.total >= 1300 ? true : undefined));
  });

  it('refuses an invalid config and keeps serving with the old one', async () => {
    const b = started[1];
    const before = b.seen.length;
    const file = /--config (\S+)/.exec(u!.proc.spawnargs.join(' '))![1];
    writeFileSync(file, `upstream:\n  - ${b.url}\nbalance: fastest\n`);
    u!.proc.kill('SIGHUP');
    await eventually(() => u!.output().includes('reload refused'), 5000);
    expect(u!.output()).toContain('balance: "fastest" is not one of');
    const r = await load(u!.url, 50, { concurrency: 2 });
    expect(r.failed).toBe(0);
    expect(b.seen.length).toBeGreaterThan(before);
  });
});

/** An origin whose health path answers 503: active checks take it down, traffic still gets 200. */
async function sickOrigin(): Promise<Origin> {
  const o = await startOrigin((req, res) => {
    res.statusCode = req.url === '/health' ? 503 : 200;
    res.end('ok');
  });
  started.push(o);
  return o;
}

function traffic(o: Origin): number {
  return o.seen.filter((s) => s.url !== '/health').length;
}
function probes(o: Origin): number {
  return o.seen.filter((s) => s.url === '/health').length;
}

async function healthyFlag(g: Ugate, url: string): Promise<boolean | undefined> {
  return (await g.stats()).backends.find((b) => b.url === url)?.healthy;
}

/** A config file in a fresh temp folder, holding `yaml`. */
function configFile(yaml: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'ugate-reload-')), 'ugate.yaml');
  writeFileSync(file, yaml);
  return file;
}

/** Rewrite the config file, send SIGHUP and wait until main has applied generation `gen`. */
async function reloadWith(g: Ugate, file: string, yaml: string, gen: number): Promise<void> {
  writeFileSync(file, yaml);
  g.proc.kill('SIGHUP');
  await eventually(() => g.output().includes(`reloaded config (generation ${gen})`), 5000);
}

describe('SIGHUP reload and active health checks', () => {
  // Listed twice, B is one backend row, checked once: a second check of the same row would
  // start "up" after the reload and publish that.
  for (const copies of [1, 2]) it(`a backend that checks took down stays out of rotation across a reload of the same config (listed ${copies}×)`, async () => {
    const a = await origin();
    const b = await sickOrigin();
    // health-fall 4: a checker that forgot the state would call B healthy for 3 intervals.
    const yaml = `upstream:\n  - ${a.url}\n${`  - ${b.url}\n`.repeat(copies)}health-path: /health\nhealth-interval: 300ms\nhealth-timeout: 250ms\nhealth-fall: 4\nhealth-rise: 2\n`;
    const file = configFile(yaml);
    h = await startUgate(['--config', file]);
    await eventually(async () => (await healthyFlag(h!, b.url)) === false, 10_000);

    const probesBefore = probes(b);
    await reloadWith(h, file, yaml, 1);
    // Two probes by the new checker: the first one's verdict has been published.
    await eventually(() => probes(b) >= probesBefore + 2, 5000);
    const before = traffic(b);
    const r = await load(h.url, 40, { concurrency: 4 });
    expect(r.failed).toBe(0);
    expect(traffic(b)).toBe(before);
    expect(await healthyFlag(h, b.url)).toBe(false);
    await h.stop();
    h = null;
  });

  it('turning health-path off by a reload puts a backend the checks took down back into rotation', async () => {
    const a = await origin();
    const b = await sickOrigin();
    const base = `upstream:\n  - ${a.url}\n  - ${b.url}\n`;
    const file = configFile(`${base}health-path: /health\nhealth-interval: 100ms\nhealth-timeout: 90ms\nhealth-fall: 1\n`);
    h = await startUgate(['--config', file]);
    await eventually(async () => (await healthyFlag(h!, b.url)) === false, 5000);
    const before = traffic(b);
    expect((await load(h.url, 10, { concurrency: 2 })).failed).toBe(0);
    expect(traffic(b)).toBe(before);

    await reloadWith(h, file, base, 1);
    const r = await load(h.url, 40, { concurrency: 4 });
    expect(r.failed).toBe(0);
    // Round-robin over two backends again: about half each.
    expect(traffic(b) - before).toBeGreaterThanOrEqual(10);
    expect(await healthyFlag(h, b.url)).toBe(true);
    await h.stop();
    h = null;
  });
});

describe('SIGHUP reload and upstream pools', () => {
  it('a route listing the same origin twice: both pools are kept by a reload, and both closed when the origin goes', async () => {
    const a = await origin();
    const b = await origin();
    let accepted = 0;
    a.server.on('connection', () => accepted++);
    const open = () => new Promise<number>((r, j) => a.server.getConnections((err, n) => (err ? j(err) : r(n))));
    const get = async () => {
      const res = await fetch(dup!.url + '/');
      expect(res.status).toBe(200);
      await res.text();
    };
    const file = configFile(`upstream:\n  - ${a.url}\n  - ${a.url}\n`);
    // One worker, requests one at a time: each entry's pool keeps exactly one connection.
    dup = await startUgate(['--config', file], { workers: 1 });
    for (let i = 0; i < 4; i++) await get();
    expect(accepted).toBe(2);
    // Both entries share one backend row: one series each, not two with the same labels.
    const series = (await dup.metrics()).split('\n').filter((l) => l.startsWith('ugate_backend_requests_total{'));
    expect(series).toEqual([`ugate_backend_requests_total{route="default",backend="${a.url}"} 4`]);

    // Same two entries plus B: both old pools are taken over, so A sees no new connection.
    writeFileSync(file, `upstream:\n  - ${a.url}\n  - ${a.url}\n  - ${b.url}\n`);
    dup.proc.kill('SIGHUP');
    await eventually(async () => {
      await get();
      return b.seen.length > 0;
    });
    // The worker runs the new routes now; round robin over 3 entries reaches each in 3 requests.
    for (let i = 0; i < 3; i++) await get();
    expect(accepted).toBe(2);
    expect(await open()).toBe(2);

    // A removed: both of its pools close, and with them their idle connections (a pool left
    // out of the reload would keep its connection until --idle-timeout, 60 s).
    writeFileSync(file, `upstream:\n  - ${b.url}\n`);
    dup.proc.kill('SIGHUP');
    await eventually(async () => (await open()) === 0);
    const seen = a.seen.length;
    for (let i = 0; i < 3; i++) await get();
    expect(a.seen.length).toBe(seen);
  });
});

describe('SIGHUP reload and telemetry', () => {
  it('a request in flight across a reload that reorders routes is counted under its own route, not the one now at its index', async () => {
    const slow = await origin(1500);
    const fast = await origin();
    const route = (name: string, path: string, o: Origin) => `  - name: ${name}\n    path: ${path}\n    upstream:\n      - ${o.url}\n`;
    const file = configFile(`routes:\n${route('slow', '/slow', slow)}${route('fast', '/fast', fast)}`);
    tel = await startUgate(['--config', file], { workers: 1 });
    const inFlight = fetch(tel.url + '/slow').then((r) => r.status);
    await eventually(() => slow.seen.length === 1);
    // Generation 1 (the first reload) puts "fast" at index 0, where "slow" was.
    await reloadWith(tel, file, `routes:\n${route('fast', '/fast', fast)}${route('slow', '/slow', slow)}`, 1);
    expect(await inFlight).toBe(200);
    const metrics = await eventually(async () => {
      const m = await tel!.metrics();
      return m.includes('ugate_requests_total{route="slow",status="200"} 1\n') ? m : undefined;
    });
    expect(metrics).not.toContain('ugate_requests_total{route="fast"');
  });
});

describe('SIGHUP reload and the cache', () => {
  it('a request coalesced on a fill across a reload that replaces the backend goes to the new backend when the answer cannot be shared', async () => {
    // The old backend answers slowly with no-store: the waiter then goes upstream on its own,
    // after the reload has closed the old backend's pool.
    const old = await startOrigin((_req, res) => setTimeout(() => res.writeHead(200, { 'cache-control': 'no-store' }).end('old'), 800));
    const fresh = await startOrigin((_req, res) => res.writeHead(200, { 'cache-control': 'no-store' }).end('new'));
    started.push(old, fresh);
    const file = configFile(`upstream:\n  - ${old.url}\ncache-size: 1mb\n`);
    cached = await startUgate(['--config', file], { workers: 1 });
    const leader = fetch(cached.url + '/item').then(async (r) => [r.status, await r.text()]);
    await eventually(() => old.seen.length === 1);
    const waiter = fetch(cached.url + '/item').then(async (r) => [r.status, await r.text()]);
    await eventually(async () => (await cached!.stats()).cache?.coalesced === 1);
    await reloadWith(cached, file, `upstream:\n  - ${fresh.url}\ncache-size: 1mb\n`, 1);
    expect(await leader).toEqual([200, 'old']);
    expect(await waiter).toEqual([200, 'new']);
    expect(old.seen.length).toBe(1);
  });
});

describe('SIGHUP reload and retries', () => {
  it('a request whose backend fails after a reload is retried on the new config\'s backends, not on a pool the reload closed', async () => {
    // A takes the request, then resets the connection before any response head; by then a
    // reload has replaced B (whose pool it closed) with C. The retry must go to C.
    const a = await startOrigin((req) => setTimeout(() => req.socket.destroy(), 800));
    const b = await origin();
    const c = await startOrigin((_req, res) => res.end('c'));
    started.push(a, c);
    const list = (...os: Origin[]) => `upstream:\n${os.map((o) => `  - ${o.url}\n`).join('')}max-fails: 0\n`;
    const file = configFile(list(a, b));
    retried = await startUgate(['--config', file], { workers: 1 });
    // Round robin starts at the first backend: A.
    const inFlight = fetch(retried.url + '/item').then(async (r) => [r.status, await r.text()]);
    await eventually(() => a.seen.length === 1);
    await reloadWith(retried, file, list(a, c), 1);
    expect(await inFlight).toEqual([200, 'c']);
    expect(b.seen.length).toBe(0);
    expect(c.seen.length).toBe(1);
  });
});

describe('SIGHUP reload and settings bound at start', () => {
  // The L1 cache is built once per worker with its size and policy: a reload that changed
  // cache-size or cache-default-ttl used to be taken silently with no effect at all.
  it('a changed cache setting is kept, with a warning that it changes only on restart; the cache goes on serving', async () => {
    const o = await startOrigin((_req, res) => res.writeHead(200, { 'cache-control': 'max-age=600' }).end('cached body'));
    started.push(o);
    const file = configFile(`upstream:\n  - ${o.url}\ncache-size: 1mb\n`);
    h = await startUgate(['--config', file], { workers: 1 });
    expect((await fetch(h.url + '/c')).headers.get('x-cache')).toBe('MISS');
    await reloadWith(h, file, `upstream:\n  - ${o.url}\ncache-size: 2mb\ncache-default-ttl: 5s\n`, 1);
    expect(h.output()).toMatch(/reload: cache changes only on restart; keeping \{"size":1048576/);
    const again = await fetch(h.url + '/c');
    expect([again.headers.get('x-cache'), await again.text()]).toEqual(['HIT', 'cached body']);
    expect(o.seen.length).toBe(1);
    await h.stop();
    h = null;
  });
});
