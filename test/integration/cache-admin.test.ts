// The cache seen from the control plane: purge on every worker, warming at start, eviction by
// bytes, and the cache counters in /metrics and /stats.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCacheOrigin, type CacheOrigin } from '../helpers/cache-origin';
import { eventually, runCli, startUgate, type Ugate } from '../helpers/ugate';

let origin: CacheOrigin;
let u: Ugate;
let small: Ugate;

beforeAll(async () => {
  origin = await startCacheOrigin();
  u = await startUgate(['--upstream', origin.url, '--cache-size', '1mb', '--cache-warm', '/w/a?cc=max-age%3D600', '--cache-warm', '/w/b?cc=max-age%3D600']);
  // About four 10 KB entries fit.
  small = await startUgate(['--upstream', origin.url, '--cache-size', '44kb', '--cache-max-entry', '16kb'], { workers: 1 });
});

afterAll(async () => {
  await u?.stop();
  await small?.stop();
  await origin?.close();
});

async function get(via: Ugate, target: string) {
  // A new connection each time, so both workers are reached over a handful of requests.
  const r = await fetch(via.url + target, { headers: { connection: 'close' } });
  return { status: r.status, body: await r.text(), xcache: r.headers.get('x-cache') };
}

async function purge(body: unknown) {
  const r = await fetch(`${u.adminUrl}/cache/purge`, { method: 'POST', body: JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

describe('warming and purge', () => {
  it('--cache-warm fills every worker at start: the first client requests are hits', async () => {
    await eventually(() => origin.hits('/w/a') === 2 && origin.hits('/w/b') === 2);
    for (let i = 0; i < 6; i++) expect((await get(u, '/w/a?cc=max-age%3D600')).xcache).toBe('HIT');
    expect(origin.hits('/w/a')).toBe(2);
  });

  it('POST /cache/purge {url} and {prefix} purge on every worker and say how many acknowledged', async () => {
    const one = await purge({ url: '/w/a?cc=max-age%3D600' });
    expect(one.status).toBe(200);
    expect(one.json).toMatchObject({ workers: 2, acknowledged: 2, removed: 2 });
    for (let i = 0; i < 4; i++) await get(u, '/w/b?cc=max-age%3D600');
    expect(origin.hits('/w/b')).toBe(2); // untouched by the exact-URL purge
    const all = await purge({ prefix: '/w/' });
    expect(all.json).toMatchObject({ workers: 2, acknowledged: 2, removed: 2 });
    const r = await get(u, '/w/b?cc=max-age%3D600');
    expect(r.xcache).toBe('MISS');
    expect(origin.hits('/w/b')).toBe(3);
  });

  it('a bad purge body is a 400 naming the expected shape', async () => {
    const r = await purge({ path: '/x' });
    expect(r.status).toBe(400);
    expect(String(r.json.error)).toContain('prefix');
    const notJson = await fetch(`${u.adminUrl}/cache/purge`, { method: 'POST', body: '{' });
    expect(notJson.status).toBe(400);
  });

  it('refuses --cache-warm without a cache, naming the flag', async () => {
    const r = await runCli(['--upstream', origin.url, '--cache-warm', '/x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('cache-warm');
  });
});

describe('eviction and metrics', () => {
  it('evicts the least recently used entries to stay under --cache-size', async () => {
    for (let i = 0; i < 6; i++) await get(small, `/e/${i}?cc=max-age%3D600&size=10000`);
    // /e/5 is the newest: still there. /e/0 was evicted first.
    expect((await get(small, '/e/5?cc=max-age%3D600&size=10000')).xcache).toBe('HIT');
    expect((await get(small, '/e/0?cc=max-age%3D600&size=10000')).xcache).toBe('MISS');
    const text = await eventually(async () => {
      const m = await small.metrics();
      return /ugate_cache_evictions_total [1-9]/.test(m) && m;
    });
    const bytes = Number(/ugate_cache_bytes (\d+)/.exec(text)![1]);
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThanOrEqual(44 * 1024);
  });

  it('reports hits, misses, entries and bytes in /metrics and /stats', async () => {
    await get(small, '/m?cc=max-age%3D600');
    await get(small, '/m?cc=max-age%3D600');
    const stats = await eventually(async () => {
      const s = (await (await fetch(`${small.adminUrl}/stats`)).json()) as { cache?: Record<string, number> };
      return s.cache && s.cache.hits >= 2 && s.cache;
    });
    expect(stats.misses).toBeGreaterThanOrEqual(7);
    expect(stats.entries).toBeGreaterThan(0);
    expect(stats.bytes).toBeGreaterThan(0);
    expect(stats).toHaveProperty('coalesced');
    expect(stats).toHaveProperty('l2Errors');
    const m = await small.metrics();
    expect(stats.waiting).toBe(0);
    for (const name of ['hits_total', 'misses_total', 'stale_total', 'coalesced_total', 'evictions_total', 'l2_errors_total', 'bytes', 'entries', 'waiting']) {
      expect(m).toMatch(new RegExp(`^ugate_cache_${name} \\d+$`, 'm'));
    }
  });

  it('/stats has no cache object when caching is off', async () => {
    const off = await startUgate(['--upstream', origin.url], { workers: 1 });
    try {
      await fetch(off.url + '/x');
      const s = (await off.stats()) as unknown as Record<string, unknown>;
      expect(s.cache).toBeUndefined();
      expect(await off.metrics()).not.toContain('ugate_cache_');
    } finally {
      await off.stop();
    }
  });
});
