// L2 through a real redis-server: two ugate processes share entries; Redis slow or killed
// never fails a client request; ugate reconnects by itself; purge reaches Redis.
import Redis from 'ioredis';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCacheOrigin, type CacheOrigin } from '../helpers/cache-origin';
import { HAS_REDIS, startRedis, type RedisServer } from '../helpers/redis';
import { eventually, sleep, startUgate, type Ugate } from '../helpers/ugate';

let origin: CacheOrigin;
let redis: RedisServer;
let a: Ugate;
let b: Ugate;

// Both processes see the same Host, as they would behind one load balancer.
const HOST = 'shared.test';

beforeAll(async () => {
  if (!HAS_REDIS) return;
  origin = await startCacheOrigin();
  redis = await startRedis();
  const args = ['--upstream', origin.url, '--cache-size', '1mb', '--redis', redis.url];
  a = await startUgate(args, { workers: 1 });
  b = await startUgate(args, { workers: 1 });
});

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await redis?.kill();
  await origin?.close();
});

async function get(u: Ugate, target: string) {
  const r = await request(u.url + target, { headers: { host: HOST } });
  return { status: r.statusCode, body: await r.body.text(), xcache: r.headers['x-cache'] };
}

describe.skipIf(!HAS_REDIS)('L2 cache in Redis', () => {
  it('a POST drops the target from Redis too: the same process does not serve the old copy from L2', async () => {
    const q = '/r/unsafe?cc=max-age%3D60';
    expect((await get(a, q)).xcache).toBe('MISS');
    const probe = new Redis(redis.url);
    try {
      await eventually(async () => (await probe.keys('ugate:c:*\n/r/unsafe*')).length === 1);
    } finally {
      probe.disconnect();
    }
    const post = await request(a.url + q, { method: 'POST', headers: { host: HOST }, body: 'x' });
    await post.body.text();
    expect(post.statusCode).toBe(200);
    const after = await get(a, q);
    expect(after.xcache).toBe('MISS');
    expect(after.body).toBe('body 3');
    expect(origin.hits('/r/unsafe')).toBe(3);
  });

  it('a refetch whose answer is no longer storable drops the entry from Redis too, not only from L1', async () => {
    const probe = new Redis(redis.url);
    const inRedis = async (path: string) => (await probe.keys(`ugate:c:*\n${path}*`)).length;
    try {
      // a holds it in L1 and Redis; a no-cache request to a gets the new answer, no-store.
      const q = '/r/turn?cc=max-age%3D60&then=no-store';
      expect((await get(a, q)).body).toBe('body 1');
      await eventually(async () => (await inRedis('/r/turn')) === 1);
      const r = await request(a.url + q, { headers: { host: HOST, 'cache-control': 'no-cache' } });
      expect(await r.body.text()).toBe('body 2');
      await eventually(async () => (await inRedis('/r/turn')) === 0);
      expect(await get(b, q)).toMatchObject({ xcache: 'MISS', body: 'body 3' });
      expect(await get(a, q)).toMatchObject({ xcache: 'MISS', body: 'body 4' });

      // The same when the process that refetches found the entry in Redis, not in its L1.
      const q2 = '/r/turn-l2?cc=max-age%3D60&then=no-store';
      expect((await get(a, q2)).body).toBe('body 1');
      await eventually(async () => (await inRedis('/r/turn-l2')) === 1);
      const r2 = await request(b.url + q2, { headers: { host: HOST, 'cache-control': 'no-cache' } });
      expect(await r2.body.text()).toBe('body 2');
      await eventually(async () => (await inRedis('/r/turn-l2')) === 0);

      // A 304 that makes the response private: the entry goes from Redis too, so the other
      // process cannot serve the old copy stale (here to a max-stale request).
      const q3 = '/r/turn-304?cc=max-age%3D1&etag=%22t%22&then=private%2C%20max-age%3D60';
      expect((await get(a, q3)).body).toBe('body 1');
      await eventually(async () => (await inRedis('/r/turn-304')) === 1);
      await sleep(1100);
      expect((await get(a, q3)).xcache).toBe('REVALIDATED');
      await eventually(async () => (await inRedis('/r/turn-304')) === 0);
      const r3 = await request(b.url + q3, { headers: { host: HOST, 'cache-control': 'max-stale' } });
      expect(r3.headers['x-cache']).toBe('MISS');
      expect(await r3.body.text()).toBe('body 3');
    } finally {
      probe.disconnect();
    }
  });

  it('a refetch whose chunked answer (no Content-Length) grows past --cache-max-entry drops the old entry from L1 and Redis', async () => {
    const probe = new Redis(redis.url);
    const inRedis = async (path: string) => (await probe.keys(`ugate:c:*\n${path}*`)).length;
    try {
      // The first answer is small; from the second on it is 1.1 MB, over a's 1mb --cache-max-entry.
      const q = '/r/grow?cc=max-age%3D60&chunked=1&thensize=1100000';
      expect(await get(a, q)).toMatchObject({ xcache: 'MISS', body: 'body 1' });
      await eventually(async () => (await inRedis('/r/grow')) === 1);
      const r = await request(a.url + q, { headers: { host: HOST, 'cache-control': 'no-cache' } });
      expect((await r.body.arrayBuffer()).byteLength).toBe(1_100_000);
      await eventually(async () => (await inRedis('/r/grow')) === 0);
      // Neither a's L1 nor b (through Redis) serves the old copy: both go to the origin.
      for (const u of [a, b]) {
        const next = await request(u.url + q, { headers: { host: HOST } });
        expect((await next.body.arrayBuffer()).byteLength).toBe(1_100_000);
        expect(next.headers['x-cache']).toBe('MISS');
      }
      expect(origin.hits('/r/grow')).toBe(4);
    } finally {
      probe.disconnect();
    }
  });

  it('a stale entry in Redis (no validator) answers an origin error in the other process under stale-if-error', async () => {
    const q = '/r/sie?cc=max-age%3D1%2C%20stale-if-error%3D60';
    const first = await get(a, q);
    const probe = new Redis(redis.url);
    try {
      await eventually(async () => (await probe.keys('ugate:c:*\n/r/sie*')).length === 1);
    } finally {
      probe.disconnect();
    }
    await sleep(1100);
    origin.down.set('/r/sie', 'error');
    try {
      expect(await get(b, q)).toMatchObject({ status: 200, xcache: 'STALE', body: first.body });
    } finally {
      origin.down.delete('/r/sie');
    }
  });

  it('an entry stored by one process is a hit in the other, without reaching the origin', async () => {
    const q = '/r/shared?cc=max-age%3D60';
    const first = await get(a, q);
    expect(first.xcache).toBe('MISS');
    // L2 writes are fire-and-forget: wait until the entry is in Redis.
    const probe = new Redis(redis.url);
    try {
      await eventually(async () => (await probe.keys('ugate:c:*\n/r/shared*')).length === 1);
    } finally {
      probe.disconnect();
    }
    const second = await get(b, q);
    expect(second).toMatchObject({ status: 200, xcache: 'HIT', body: first.body });
    expect(origin.hits('/r/shared')).toBe(1);
    const m = await eventually(async () => {
      const text = await b.metrics();
      return /ugate_cache_l2_hits_total 1/.test(text) && text;
    });
    expect(m).toContain('ugate_cache_l2_hits_total 1');
  });

  it('a fresh L2 hit answers each request coalesced on its lookup by that request\'s own directives', async () => {
    // A long L2 timeout: Redis is held (SIGSTOP) while requests pile up on one lookup.
    const c = await startUgate(['--upstream', origin.url, '--cache-size', '1mb', '--redis', redis.url, '--cache-l2-timeout', '10s'], { workers: 1 });
    try {
      const q = '/r/l2-waiters?cc=max-age%3D60&etag=%22w%22';
      expect(await get(a, q)).toMatchObject({ xcache: 'MISS', body: 'body 1' });
      const probe = new Redis(redis.url);
      try {
        await eventually(async () => (await probe.keys('ugate:c:*\n/r/l2-waiters*')).length === 1);
      } finally {
        probe.disconnect();
      }
      // Aged 2 s in Redis: a request max-age=1 may not have it.
      await sleep(2100);
      const ask = async (cc?: string) => {
        const r = await request(c.url + q, { headers: cc === undefined ? { host: HOST } : { host: HOST, 'cache-control': cc } });
        return { xcache: r.headers['x-cache'], body: await r.body.text() };
      };
      redis.proc.kill('SIGSTOP');
      let plain: Promise<{ xcache: unknown; body: string }>;
      let others: Promise<{ xcache: unknown; body: string }[]>;
      try {
        plain = ask();
        await eventually(async () => /ugate_cache_misses_total 1\b/.test(await c.metrics()));
        others = Promise.all([ask('no-cache'), ask('max-age=1'), ask('min-fresh=120'), ask()]);
        await eventually(async () => /ugate_cache_coalesced_total 4\b/.test(await c.metrics()));
      } finally {
        redis.proc.kill('SIGCONT');
      }
      expect(await plain).toEqual({ xcache: 'HIT', body: 'body 1' });
      const [noCache, maxAge, minFresh, plain2] = await others;
      // The entry is fresh for the plain requests only; the others revalidate it (a 304: same body).
      expect(plain2).toEqual({ xcache: 'HIT', body: 'body 1' });
      for (const r of [noCache, maxAge, minFresh]) expect(r).toEqual({ xcache: 'REVALIDATED', body: 'body 1' });
      // One revalidation for the three: the first leads it, the other two wait on it.
      expect(origin.hits('/r/l2-waiters')).toBe(2);
    } finally {
      await c.stop();
    }
  });

  it('a stale entry in Redis answers a request with max-stale in the other process', async () => {
    const q = '/r/max-stale?cc=max-age%3D1';
    const first = await get(a, q);
    const probe = new Redis(redis.url);
    try {
      await eventually(async () => (await probe.keys('ugate:c:*\n/r/max-stale*')).length === 1);
    } finally {
      probe.disconnect();
    }
    await sleep(1100);
    const r = await request(b.url + q, { headers: { host: HOST, 'cache-control': 'max-stale=60' } });
    expect(r.headers['x-cache']).toBe('STALE');
    expect(await r.body.text()).toBe(first.body);
    expect(origin.hits('/r/max-stale')).toBe(1);
    // A request without max-stale in that process does not get it: the entry is stale.
    expect((await get(b, q)).xcache).toBe('MISS');
  });

  it('only-if-cached: an entry in Redis answers it in the other process; nothing in L1 or Redis is a 504 without reaching the origin', async () => {
    const q = '/r/oic?cc=max-age%3D60';
    const oic = (u: Ugate, target: string) => request(u.url + target, { headers: { host: HOST, 'cache-control': 'only-if-cached' } });
    const none = await oic(b, q);
    expect(await none.body.text()).toContain('only-if-cached');
    expect(none.statusCode).toBe(504);
    expect(none.headers['x-ugate-error']).toBe('UGATE_ERR_NOT_CACHED');
    expect(origin.hits('/r/oic')).toBe(0);
    const first = await get(a, q);
    const probe = new Redis(redis.url);
    try {
      await eventually(async () => (await probe.keys('ugate:c:*\n/r/oic*')).length === 1);
    } finally {
      probe.disconnect();
    }
    const hit = await oic(b, q);
    expect(hit.statusCode).toBe(200);
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(await hit.body.text()).toBe(first.body);
    expect(origin.hits('/r/oic')).toBe(1);
  });

  it('Vary variants are shared too', async () => {
    const q = '/r/vary?cc=max-age%3D60&vary=accept-language';
    const en = await request(a.url + q, { headers: { host: HOST, 'accept-language': 'en' } });
    const enBody = await en.body.text();
    const probe = new Redis(redis.url);
    try {
      await eventually(async () => (await probe.keys('ugate:c:*\n/r/vary*')).length === 1 && (await probe.keys('ugate:v:*\n/r/vary*')).length === 1);
    } finally {
      probe.disconnect();
    }
    const r = await request(b.url + q, { headers: { host: HOST, 'accept-language': 'en' } });
    expect(r.headers['x-cache']).toBe('HIT');
    expect(await r.body.text()).toBe(enBody);
    const fr = await request(b.url + q, { headers: { host: HOST, 'accept-language': 'fr' } });
    expect(await fr.body.text()).toContain(' fr');
    expect(origin.hits('/r/vary')).toBe(2);
  });

  it('POST /cache/purge also removes the entries from Redis', async () => {
    const q = '/r/purge?cc=max-age%3D60';
    await get(a, q);
    const probe = new Redis(redis.url);
    try {
      await eventually(async () => (await probe.keys('ugate:c:*\n/r/purge*')).length === 1);
      const r = await fetch(`${a.adminUrl}/cache/purge`, { method: 'POST', body: JSON.stringify({ prefix: '/r/purge' }) });
      expect(await r.json()).toMatchObject({ acknowledged: 1, redisRemoved: 1 });
      expect(await probe.keys('ugate:c:*\n/r/purge*')).toEqual([]);
    } finally {
      probe.disconnect();
    }
    // b never held it in L1, and L2 no longer has it.
    expect((await get(b, q)).xcache).toBe('MISS');
    expect(origin.hits('/r/purge')).toBe(2);
  });

  it('an entry in Redis larger than this process\'s --cache-max-entry is neither served from L2 nor put in L1', async () => {
    // a (--cache-max-entry 1mb) stores 100 KB; small (64kb) must not take it from Redis.
    const small = await startUgate(['--upstream', origin.url, '--cache-size', '1mb', '--cache-max-entry', '64kb', '--redis', redis.url], { workers: 1 });
    try {
      const q = '/r/big?cc=max-age%3D60&size=100000';
      expect((await get(a, q)).body.length).toBe(100_000);
      const probe = new Redis(redis.url);
      try {
        await eventually(async () => (await probe.keys('ugate:c:*\n/r/big*')).length === 1);
      } finally {
        probe.disconnect();
      }
      for (let i = 0; i < 2; i++) {
        const r = await get(small, q);
        expect(r.body.length).toBe(100_000);
        expect(r.xcache).toBe('MISS');
      }
      expect(origin.hits('/r/big')).toBe(3);
      // Once telemetry has both misses: nothing held in L1, no L2 hit counted.
      const m = await eventually(async () => {
        const text = await small.metrics();
        return /ugate_cache_misses_total 2\b/.test(text) && text;
      });
      expect(m).toMatch(/ugate_cache_bytes 0\b/);
      expect(m).toMatch(/ugate_cache_l2_hits_total 0\b/);
    } finally {
      await small.stop();
    }
  });

  it('a Redis that does not answer costs at most the L2 timeout: the request still succeeds', async () => {
    // SIGSTOP: the connection stays open, and nothing answers on it.
    redis.proc.kill('SIGSTOP');
    try {
      const results = await Promise.all([get(a, '/r/slow-1?cc=max-age%3D60'), get(b, '/r/slow-2?cc=max-age%3D60'), get(a, '/r/slow-1?cc=max-age%3D60')]);
      // All answered while Redis was still stopped.
      expect(results.map((r) => r.status)).toEqual([200, 200, 200]);
    } finally {
      redis.proc.kill('SIGCONT');
    }
  });

  it('Redis killed mid-test: zero failed requests, errors counted, and L2 comes back by itself', async () => {
    const failures: string[] = [];
    let stop = false;
    let n = 0;
    const load = (async () => {
      while (!stop && n < 2000) {
        const i = n++;
        const target = i % 3 === 0 ? '/r/load-hot?cc=max-age%3D60' : `/r/load-${i}?cc=max-age%3D60`;
        try {
          const r = await get(i % 2 === 0 ? a : b, target);
          if (r.status !== 200) failures.push(`${target}: ${r.status}`);
        } catch (err) {
          failures.push(`${target}: ${err}`);
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    await redis.kill();
    await new Promise((r) => setTimeout(r, 700));
    stop = true;
    await load;
    expect(failures).toEqual([]);
    expect(n).toBeGreaterThan(10);
    await eventually(async () => /ugate_cache_l2_errors_total [1-9]/.test(await a.metrics()));

    await redis.restart();
    // ioredis reconnects on its own: a new entry written through a reaches b through Redis.
    await eventually(async () => {
      const q = `/r/back-${Date.now()}?cc=max-age%3D60`;
      await get(a, q);
      await new Promise((r) => setTimeout(r, 100));
      return (await get(b, q)).xcache === 'HIT';
    }, 15_000);
  });

  it('drains and exits 0 with its Redis connection open (the connection does not keep workers alive)', async () => {
    await get(a, '/r/last?cc=max-age%3D60');
    expect(await a.stop()).toBe(0);
  });
});
