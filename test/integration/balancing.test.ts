// Balancing algorithms end to end: real backends on port 0, ugate with 2 workers, and the
// distribution asserted as counts at the backends (with tolerances: connections land on
// workers as the kernel decides, and each worker balances on its own except where state is
// shared).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startOrigin, type Origin } from '../helpers/origin';
import { counts, load } from '../helpers/load';
import { eventually, startUgate, type Ugate } from '../helpers/ugate';

const started: { close(): Promise<unknown> }[] = [];
let u: Ugate | null = null;

afterEach(async () => {
  await u?.stop();
  u = null;
});
afterAll(async () => {
  for (const s of started) await s.close();
});

async function origins(n: number, delayMs: (i: number) => number = () => 0): Promise<Origin[]> {
  const list: Origin[] = [];
  for (let i = 0; i < n; i++) {
    const d = delayMs(i);
    const o = await startOrigin((_req, res) => {
      if (d === 0) res.end(`backend ${i}`);
      else setTimeout(() => res.end(`backend ${i}`), d);
    });
    started.push(o);
    list.push(o);
  }
  return list;
}

const upstreams = (os: Origin[], opts: string[] = []) => os.flatMap((o, i) => ['--upstream', `${o.url}${opts[i] ? ' ' + opts[i] : ''}`]);

describe('balancing end to end', () => {
  it('round-robin spreads evenly over every backend', async () => {
    const os = await origins(3);
    u = await startUgate(upstreams(os));
    const r = await load(u.url, 300, { concurrency: 4 });
    expect(r.failed).toBe(0);
    for (const n of counts(os)) expect(n).toBeGreaterThan(70);
  });

  it('weighted 3:1 sends three times as many requests to the heavy backend', async () => {
    const os = await origins(2);
    u = await startUgate(['--balance', 'weighted', ...upstreams(os, ['weight=3', 'weight=1'])]);
    const r = await load(u.url, 400, { concurrency: 4 });
    expect(r.failed).toBe(0);
    const [a, b] = counts(os);
    expect(a + b).toBe(400);
    // Each worker is exactly 3:1 per window of 4; the sum of two can be off by a few.
    expect(Math.abs(a - 300)).toBeLessThanOrEqual(4);
  });

  it('least-conn across 2 workers sends most requests to the fast backend', async () => {
    const os = await origins(2, (i) => (i === 0 ? 200 : 0));
    u = await startUgate(['--balance', 'least-conn', ...upstreams(os)]);
    const r = await load(u.url, 240, { concurrency: 12 });
    expect(r.failed).toBe(0);
    const [slow, fast] = counts(os);
    expect(fast).toBeGreaterThan(slow * 3);
  });

  it('least-time prefers the backend that answers faster', async () => {
    const os = await origins(2, (i) => (i === 0 ? 60 : 0));
    u = await startUgate(['--balance', 'least-time', ...upstreams(os)]);
    const r = await load(u.url, 200, { concurrency: 4 });
    expect(r.failed).toBe(0);
    const [slow, fast] = counts(os);
    expect(fast).toBeGreaterThan(slow * 2);
  });

  it('hash on a header: every key always reaches the same backend, keys spread', async () => {
    const os = await origins(3);
    u = await startUgate(['--balance', 'hash', '--hash-key', 'header:X-User', ...upstreams(os)]);
    const r = await load(u.url, 300, { concurrency: 4, headers: (i) => ({ 'x-user': `u${i % 30}` }) });
    expect(r.failed).toBe(0);
    const owner = new Map<string, number>();
    os.forEach((o, i) =>
      o.seen.forEach((s) => {
        const key = String(s.headers['x-user']);
        expect(owner.get(key) ?? i).toBe(i);
        owner.set(key, i);
      }),
    );
    expect(owner.size).toBe(30);
    for (const n of counts(os)) expect(n).toBeGreaterThan(0);
  });

  it('sticky: the cookie set on the first response pins the client to one backend', async () => {
    const os = await origins(3);
    u = await startUgate(['--balance', 'sticky', ...upstreams(os)]);
    const first = await request(u.url + '/');
    await first.body.dump();
    const setCookie = String(first.headers['set-cookie']);
    expect(setCookie).toMatch(/^ugate_sticky=\w+; Path=\//);
    const cookie = setCookie.split(';')[0];
    const before = counts(os);
    const r = await load(u.url, 60, { concurrency: 3, headers: () => ({ cookie }) });
    expect(r.failed).toBe(0);
    const added = counts(os).map((n, i) => n - before[i]);
    expect(added.filter((n) => n > 0)).toEqual([60]);
  });

  it('backups get nothing while a primary is up', async () => {
    const os = await origins(3);
    u = await startUgate(upstreams(os, ['', '', 'backup']));
    const r = await load(u.url, 100, { concurrency: 4 });
    expect(r.failed).toBe(0);
    expect(counts(os)[2]).toBe(0);
  });

  it('refuses an unknown algorithm, naming the field', async () => {
    const { runCli } = await import('../helpers/ugate');
    const r = await runCli(['--upstream', 'http://127.0.0.1:1', '--balance', 'random']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('balance: "random" is not one of round-robin, weighted, least-conn, least-time, hash, sticky');
  });
});

describe('admin view of a backend listed more than once', () => {
  it('/stats and /metrics: one row per route and URL, with that route\'s counts; a URL listed twice in a route is one row whose weight sums its entries', async () => {
    const [a, b] = await origins(2);
    const yaml = [
      'routes:',
      `  - { name: twice, path: /twice, upstream: [${a.url}, ${a.url}, ${b.url}] }`,
      `  - { name: weighted, path: /weighted, balance: weighted, upstream: ['${a.url} weight=2', '${a.url}', '${b.url}'] }`,
      // Two spellings of one origin are one backend, named by its scheme://host:port.
      `  - { name: spelled, path: /spelled, upstream: [${a.url}, '${a.url}/'] }`,
      '',
    ].join('\n');
    const file = join(mkdtempSync(join(tmpdir(), 'ugate-dup-')), 'ugate.yaml');
    writeFileSync(file, yaml);
    // One worker: round-robin and weighted are then exact.
    u = await startUgate(['--config', file], { workers: 1 });
    for (const [path, n] of [['/twice', 30], ['/weighted', 8], ['/spelled', 10]] as const) {
      expect((await load(u.url, n, { concurrency: 1, path: () => path })).failed).toBe(0);
    }
    // What reached the backends: A 20 + 6 + 10, B 10 + 2.
    expect(counts([a, b])).toEqual([36, 12]);
    const rows = await eventually(async () => {
      const s = await u!.stats();
      return s.backends.every((r) => r.inFlight === 0) && s.backends;
    });
    const sorted = <T>(xs: T[]) => [...xs].sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
    expect(sorted(rows.map((r) => ({ route: r.route, url: r.url, backup: r.backup, weight: r.weight, entries: r.entries, requests: r.requests })))).toEqual(
      sorted([
        { route: 'twice', url: a.url, backup: false, weight: 2, entries: 2, requests: 20 },
        { route: 'twice', url: b.url, backup: false, weight: 1, entries: 1, requests: 10 },
        { route: 'weighted', url: a.url, backup: false, weight: 3, entries: 2, requests: 6 },
        { route: 'weighted', url: b.url, backup: false, weight: 1, entries: 1, requests: 2 },
        { route: 'spelled', url: a.url, backup: false, weight: 2, entries: 2, requests: 10 },
      ]),
    );
    // The rows add up to what the backends saw.
    expect(rows.reduce((sum, r) => sum + r.requests, 0)).toBe(48);
    const series = (await u.metrics()).split('\n').filter((l) => l.startsWith('ugate_backend_requests_total{'));
    expect(series.sort()).toEqual(
      [
        `ugate_backend_requests_total{route="twice",backend="${a.url}"} 20`,
        `ugate_backend_requests_total{route="twice",backend="${b.url}"} 10`,
        `ugate_backend_requests_total{route="weighted",backend="${a.url}"} 6`,
        `ugate_backend_requests_total{route="weighted",backend="${b.url}"} 2`,
        `ugate_backend_requests_total{route="spelled",backend="${a.url}"} 10`,
      ].sort(),
    );
    // Draining it in one route names it once.
    const drain = await fetch(`${u.adminUrl}/backends/drain`, { method: 'POST', body: JSON.stringify({ route: 'twice', backend: a.url }) });
    expect(await drain.json()).toEqual({ action: 'drain', backends: [{ route: 'twice', backend: a.url }] });
    // Any spelling of it finds it.
    const drain2 = await fetch(`${u.adminUrl}/backends/drain`, { method: 'POST', body: JSON.stringify({ route: 'spelled', backend: `${a.url}/` }) });
    expect(await drain2.json()).toEqual({ action: 'drain', backends: [{ route: 'spelled', backend: a.url }] });
  });
});
