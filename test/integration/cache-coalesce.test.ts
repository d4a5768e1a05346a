// Coalescing: concurrent identical misses make one upstream request; failures and uncacheable
// answers never leave a waiter hanging.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCacheOrigin, type CacheOrigin } from '../helpers/cache-origin';
import { eventually, startUgate, type Ugate } from '../helpers/ugate';

let origin: CacheOrigin;
let one: Ugate;
let two: Ugate;

beforeAll(async () => {
  origin = await startCacheOrigin();
  one = await startUgate(['--upstream', origin.url, '--cache-size', '4mb', '--cache-max-entry', '64kb'], { workers: 1 });
  two = await startUgate(['--upstream', origin.url, '--cache-size', '4mb'], { workers: 2 });
});

afterAll(async () => {
  await one?.stop();
  await two?.stop();
  await origin?.close();
});

async function burst(u: Ugate, target: string, n: number) {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const r = await fetch(u.url + target);
      return { status: r.status, body: await r.text(), xcache: r.headers.get('x-cache') };
    }),
  );
}

describe('coalescing', () => {
  it('100 concurrent identical misses make one origin request (1 worker)', async () => {
    const results = await burst(one, '/c100?cc=max-age%3D60&delay=300', 100);
    expect(origin.hits('/c100')).toBe(1);
    expect(results.every((r) => r.status === 200 && r.body === 'body 1')).toBe(true);
    // Requests that arrive after the fill completed are plain hits: on a busy machine some may.
    const c = await eventually(async () => {
      const s = await one.stats();
      return s.cache && s.cache.coalesced + s.cache.hits === 99 && s.cache;
    });
    expect(c.misses).toBe(1);
    expect(c.coalesced).toBeGreaterThan(0);
  });

  it('with 2 workers, at most one origin request per worker', async () => {
    const results = await burst(two, '/c2w?cc=max-age%3D60&delay=300', 100);
    expect(origin.hits('/c2w')).toBeGreaterThanOrEqual(1);
    expect(origin.hits('/c2w')).toBeLessThanOrEqual(2);
    expect(results.every((r) => r.status === 200 && r.body.startsWith('body '))).toBe(true);
  });

  it('a failed fill answers every waiter with the error, no hangs', async () => {
    origin.down.set('/cfail', 'reset');
    const results = await burst(one, '/cfail?cc=max-age%3D60&delay=200', 20);
    origin.down.delete('/cfail');
    expect(results.map((r) => r.status)).toEqual(new Array(20).fill(502));
    // One request for all 20. The lean client sends it a second time, on a new connection,
    // when the first went out on a reused keep-alive connection that closed without a byte
    // (the stale-connection case: README, "The upstream client").
    expect(origin.hits('/cfail')).toBeGreaterThanOrEqual(1);
    expect(origin.hits('/cfail')).toBeLessThanOrEqual(2);
  });

  it('an uncacheable answer releases the waiters to go upstream themselves', async () => {
    const results = await burst(one, '/cnostore?cc=no-store&delay=200', 10);
    expect(results.every((r) => r.status === 200 && r.body.startsWith('body '))).toBe(true);
    expect(origin.hits('/cnostore')).toBe(10);
  });

  it('a response too large to store: waiters fetch it themselves, every body complete', async () => {
    const results = await burst(one, '/cbig?cc=max-age%3D60&delay=200&size=200000', 10);
    expect(results.every((r) => r.status === 200 && r.body.length === 200000)).toBe(true);
    expect(origin.hits('/cbig')).toBe(10);
  });

  it("the leader's client leaving hands the fill to a waiter; the others still wait", async () => {
    const ac = new AbortController();
    const leaving = fetch(one.url + '/cabort?cc=max-age%3D60&delay=300', { signal: ac.signal }).catch(() => 'aborted');
    await new Promise((r) => setTimeout(r, 50));
    const staying = burst(one, '/cabort?cc=max-age%3D60&delay=300', 5);
    await new Promise((r) => setTimeout(r, 50));
    ac.abort();
    expect(await leaving).toBe('aborted');
    const results = await staying;
    expect(results.every((r) => r.status === 200)).toBe(true);
    // The leader's client left: its upstream request was aborted, and the waiters went on their own.
    expect(origin.hits('/cabort')).toBeLessThanOrEqual(2);
  });
});
