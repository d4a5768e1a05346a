// A revalidation answered by a 304 for another representation is sent again without validators
// (upstream.redispatch). That second send is the cache's doing, not a retry: when it fails, the
// request still has its --retries, and the requests coalesced on it get the same error.
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrigin, type Origin } from '../helpers/origin';
import { sleep, startUgate } from '../helpers/ugate';

let x: Origin;
let y: Origin;
/** Origins that have answered a 304 for another ETag: from then on they reset any request
 * without validators, on a new connection (the 304 closed its own), before any response byte. */
const broken = new Set<Origin>();
const hits = new Map<string, number>();

function handler(self: () => Origin) {
  return (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    const path = new URL(req.url!, 'http://x').pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    if (req.headers['if-none-match'] !== undefined) {
      // Late, so that a second client can coalesce on the revalidation.
      setTimeout(() => {
        broken.add(self());
        res.writeHead(304, { etag: '"v2"', 'cache-control': 'max-age=60', connection: 'close' });
        res.end();
      }, 300);
      return;
    }
    if (broken.has(self())) {
      req.socket.destroy();
      return;
    }
    const body = (hits.get(path) ?? 0) === 1 ? 'old' : 'new';
    res.writeHead(200, { etag: (hits.get(path) ?? 0) === 1 ? '"v1"' : '"v2"', 'cache-control': 'max-age=1', 'content-length': String(body.length) });
    res.end(body);
  };
}

beforeAll(async () => {
  x = await startOrigin(handler(() => x));
  y = await startOrigin(handler(() => y));
});

afterAll(async () => {
  await x?.close();
  await y?.close();
});

async function get(url: string, path: string) {
  const r = await request(url + path, { headers: { 'x-k': 'one' } });
  return { status: r.statusCode, body: await r.body.text(), xcache: r.headers['x-cache'], error: r.headers['x-ugate-error'] };
}

describe('cache: a request sent again after a 304 for another representation', () => {
  it('keeps its --retries: a failure of the second send is retried on another backend', async () => {
    broken.clear();
    // hash on one header value: every request of the test goes to the same backend first.
    const u = await startUgate(['--upstream', x.url, '--upstream', y.url, '--balance', 'hash', '--hash-key', 'header:x-k', '--retries', '1', '--cache-size', '1mb'], { workers: 1 });
    try {
      expect(await get(u.url, '/retry')).toMatchObject({ status: 200, body: 'old' });
      await sleep(1100);
      // 304 "v2" (not the entry's "v1"): the entry goes, the request is sent again without
      // validators, that backend resets it, and the one retry --retries 1 allows goes to the other.
      expect(await get(u.url, '/retry')).toMatchObject({ status: 200, body: 'new', xcache: 'MISS' });
      expect(broken.size).toBe(1);
      expect(hits.get('/retry')).toBe(4);
      // Each send gave back its in-flight slot once: neither held nor counted below zero.
      expect((await u.stats()).backends.map((b) => b.inFlight)).toEqual([0, 0]);
    } finally {
      await u.stop();
    }
  });

  it('a failure of the second send before any response answers the coalesced requests with that error, without a trip each', async () => {
    broken.clear();
    const u = await startUgate(['--upstream', x.url, '--retries', '0', '--cache-size', '1mb'], { workers: 1 });
    try {
      expect(await get(u.url, '/waiters')).toMatchObject({ status: 200, body: 'old' });
      await sleep(1100);
      const leader = get(u.url, '/waiters');
      await sleep(100);
      const waiter = get(u.url, '/waiters');
      for (const r of [await leader, await waiter]) expect(r).toMatchObject({ status: 502, error: 'UGATE_ERR_UPSTREAM_RESET' });
      // The 200, the 304, the second send: the waiter did not go upstream on its own.
      expect(hits.get('/waiters')).toBe(3);
      expect((await u.stats()).backends.map((b) => b.inFlight)).toEqual([0]);
    } finally {
      await u.stop();
    }
  });
});
