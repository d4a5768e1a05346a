// Response cache semantics through a real ugate (1 worker, so every request meets the same L1)
// against a real origin that counts what reached it.
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCacheOrigin, type CacheOrigin } from '../helpers/cache-origin';
import { rawRequest } from '../helpers/raw';
import { eventually, sleep, startUgate, type Ugate } from '../helpers/ugate';

let origin: CacheOrigin;
let u: Ugate;
let lax: Ugate;

beforeAll(async () => {
  origin = await startCacheOrigin();
  u = await startUgate(['--upstream', origin.url, '--cache-size', '1mb', '--cache-max-entry', '64kb'], { workers: 1 });
  lax = await startUgate(['--upstream', origin.url, '--cache-size', '1mb', '--cache-set-cookie', '--cache-default-ttl', '60s'], { workers: 1 });
});

afterAll(async () => {
  await u?.stop();
  await lax?.stop();
  await origin?.close();
});

let seq = 0;
/** A fresh path per test, so tests never share entries. */
const p = (name: string) => `/t${++seq}-${name}`;

async function get(path: string, headers: Record<string, string> = {}, via: Ugate = u, method = 'GET') {
  const r = await fetch(via.url + path, { method, headers });
  return { status: r.status, headers: r.headers, body: await r.text(), xcache: r.headers.get('x-cache') };
}

describe('freshness', () => {
  it('serves a fresh entry from the cache with Age and X-Cache: HIT', async () => {
    const path = p('fresh');
    const a = await get(`${path}?cc=max-age%3D60`);
    const b = await get(`${path}?cc=max-age%3D60`);
    expect(a.xcache).toBe('MISS');
    expect(b.xcache).toBe('HIT');
    expect(b.body).toBe(a.body);
    expect(Number(b.headers.get('age'))).toBeGreaterThanOrEqual(0);
    expect(b.headers.get('content-type')).toBe('text/plain');
    expect(b.headers.get('via')).toBe('1.1 ugate');
    expect(origin.hits(path)).toBe(1);
  });

  it('goes back to the origin once the entry expires', async () => {
    const path = p('expiry');
    await get(`${path}?cc=max-age%3D1`);
    await get(`${path}?cc=max-age%3D1`);
    expect(origin.hits(path)).toBe(1);
    await sleep(1100);
    const c = await get(`${path}?cc=max-age%3D1`);
    expect(c.xcache).toBe('MISS');
    expect(origin.hits(path)).toBe(2);
  });

  it('keys on the target: another query is another entry', async () => {
    const path = p('query');
    await get(`${path}?cc=max-age%3D60&a=1`);
    await get(`${path}?cc=max-age%3D60&a=2`);
    await get(`${path}?cc=max-age%3D60&a=1`);
    expect(origin.hits(path)).toBe(2);
  });

  it('s-maxage wins over max-age for a shared cache', async () => {
    const path = p('smaxage');
    await get(`${path}?cc=max-age%3D0%2C%20s-maxage%3D60`);
    expect((await get(`${path}?cc=max-age%3D0%2C%20s-maxage%3D60`)).xcache).toBe('HIT');
    expect(origin.hits(path)).toBe(1);
  });

  it('Expires gives freshness; an invalid Expires means already expired', async () => {
    const path = p('expires');
    await get(`${path}?expires=60`);
    expect((await get(`${path}?expires=60`)).xcache).toBe('HIT');
    const bad = p('expires-bad');
    await get(`${bad}?expires=bad`);
    await get(`${bad}?expires=bad`);
    expect(origin.hits(path)).toBe(1);
    expect(origin.hits(bad)).toBe(2);
  });

  it('without freshness information nothing is stored, unless --cache-default-ttl', async () => {
    const path = p('nottl');
    await get(path);
    await get(path);
    expect(origin.hits(path)).toBe(2);
    const path2 = p('defttl');
    await get(path2, {}, lax);
    expect((await get(path2, {}, lax)).xcache).toBe('HIT');
    expect(origin.hits(path2)).toBe(1);
  });

  it('stores cacheable-by-default statuses (404) but not others (500, 206)', async () => {
    const nf = p('404');
    await get(`${nf}?status=404&cc=max-age%3D60`);
    const again = await get(`${nf}?status=404&cc=max-age%3D60`);
    expect(again.status).toBe(404);
    expect(again.xcache).toBe('HIT');
    const se = p('500');
    await get(`${se}?status=500&cc=max-age%3D60`);
    await get(`${se}?status=500&cc=max-age%3D60`);
    expect(origin.hits(nf)).toBe(1);
    expect(origin.hits(se)).toBe(2);
  });
});

describe('Cache-Control directives', () => {
  it('response no-store and private are never stored', async () => {
    for (const cc of ['no-store%2C%20max-age%3D60', 'private%2C%20max-age%3D60']) {
      const path = p('nostore');
      await get(`${path}?cc=${cc}`);
      await get(`${path}?cc=${cc}`);
      expect(origin.hits(path)).toBe(2);
    }
  });

  it('public stores the answer to an authorized request; without it, it is not stored', async () => {
    const path = p('auth');
    const auth = { authorization: 'Bearer x' };
    await get(`${path}?cc=max-age%3D60`, auth);
    await get(`${path}?cc=max-age%3D60`, auth);
    expect(origin.hits(path)).toBe(2);
    const pub = p('auth-public');
    await get(`${pub}?cc=public%2C%20max-age%3D60`, auth);
    expect((await get(`${pub}?cc=public%2C%20max-age%3D60`, auth)).xcache).toBe('HIT');
    const mr = p('auth-mr');
    await get(`${mr}?cc=max-age%3D60%2C%20must-revalidate`, auth);
    await get(`${mr}?cc=max-age%3D60%2C%20must-revalidate`, auth);
    expect(origin.hits(pub)).toBe(1);
    expect(origin.hits(mr)).toBe(1);
  });

  it('Set-Cookie responses are not stored unless --cache-set-cookie', async () => {
    const path = p('cookie');
    await get(`${path}?cc=max-age%3D60&cookie=1`);
    await get(`${path}?cc=max-age%3D60&cookie=1`);
    expect(origin.hits(path)).toBe(2);
    const path2 = p('cookie-on');
    await get(`${path2}?cc=max-age%3D60&cookie=1`, {}, lax);
    const hit = await get(`${path2}?cc=max-age%3D60&cookie=1`, {}, lax);
    expect(hit.xcache).toBe('HIT');
    expect(hit.headers.get('set-cookie')).toBe('session=abc');
    expect(origin.hits(path2)).toBe(1);
  });

  it('request no-store bypasses the cache; request no-cache and max-age=0 go to the origin', async () => {
    const path = p('reqdirs');
    const q = `${path}?cc=max-age%3D60`;
    await get(q);
    expect((await get(q, { 'cache-control': 'no-store' })).xcache).toBeNull();
    expect(origin.hits(path)).toBe(2);
    const nc = await get(q, { 'cache-control': 'no-cache' });
    expect(nc.xcache).toBe('MISS');
    expect(origin.hits(path)).toBe(3);
    await get(q, { 'cache-control': 'max-age=0' });
    expect(origin.hits(path)).toBe(4);
    await get(q, { pragma: 'no-cache' });
    expect(origin.hits(path)).toBe(5);
    // The refetched response replaced the entry: a plain request is a hit on it.
    const hit = await get(q);
    expect(hit.xcache).toBe('HIT');
    expect(hit.body).toBe('body 5');
  });

  it('response no-cache with a validator: stored, but revalidated on every use', async () => {
    const path = p('nocache');
    const q = `${path}?cc=no-cache&etag=%22v1%22`;
    const a = await get(q);
    const b = await get(q);
    expect(b.xcache).toBe('REVALIDATED');
    expect(b.body).toBe(a.body);
    expect(origin.hits(path)).toBe(2);
    expect(origin.seen.filter((s) => s.url.startsWith(path))[1].headers['if-none-match']).toBe('"v1"');
  });

  it('must-revalidate: a stale entry is never served, even with stale-if-error', async () => {
    const path = p('mustreval');
    const q = `${path}?cc=max-age%3D1%2C%20must-revalidate%2C%20stale-if-error%3D60`;
    await get(q);
    await sleep(1100);
    origin.down.set(path, 'error');
    const r = await get(q);
    origin.down.delete(path);
    expect(r.status).toBe(500);
  });
});

describe('Vary', () => {
  it('keys on the varied request header values', async () => {
    const path = p('vary');
    const q = `${path}?cc=max-age%3D60&vary=accept-language`;
    const en = await get(q, { 'accept-language': 'en' });
    const fr = await get(q, { 'accept-language': 'fr' });
    const en2 = await get(q, { 'accept-language': 'en' });
    const fr2 = await get(q, { 'accept-language': 'fr' });
    expect(en.body).toContain(' en');
    expect(fr.body).toContain(' fr');
    expect(en2).toMatchObject({ xcache: 'HIT', body: en.body });
    expect(fr2).toMatchObject({ xcache: 'HIT', body: fr.body });
    expect(origin.hits(path)).toBe(2);
  });

  it('Vary: * is never stored', async () => {
    const path = p('varystar');
    await get(`${path}?cc=max-age%3D60&vary=*`);
    await get(`${path}?cc=max-age%3D60&vary=*`);
    expect(origin.hits(path)).toBe(2);
  });
});

describe('HEAD and unsafe methods', () => {
  it('HEAD is answered from a GET entry, with its Content-Length', async () => {
    const path = p('head');
    const q = `${path}?cc=max-age%3D60&size=1234`;
    await get(q);
    const r = await fetch(u.url + q, { method: 'HEAD' });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-cache')).toBe('HIT');
    expect(r.headers.get('content-length')).toBe('1234');
    expect(await r.text()).toBe('');
    expect(origin.hits(path)).toBe(1);
  });

  it('a HEAD hit keeps the connection usable for the next request', async () => {
    const path = p('headka');
    const q = `${path}?cc=max-age%3D60&size=10`;
    // One connection (so one worker and its L1): fill with a GET, then a HEAD hit, then a GET;
    // a HEAD left open would stall the last GET.
    const r = await rawRequest(u.port, [
      `GET ${q} HTTP/1.1\r\nHost: t\r\n\r\n`, 200,
      `HEAD ${q} HTTP/1.1\r\nHost: t\r\n\r\n`, 200,
      `GET ${q} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`,
    ], 3000);
    const responses = r.text.split(/(?=HTTP\/1\.1 )/);
    expect(responses.map((t) => t.slice(9, 12))).toEqual(['200', '200', '200']);
    expect(responses[1].toLowerCase()).toContain('x-cache: hit');
    expect(responses[1].toLowerCase()).toContain('content-length: 10\r\n');
    expect(responses[1].endsWith('\r\n\r\n')).toBe(true);
    expect(responses[2].toLowerCase()).toContain('x-cache: hit');
    expect(r.closed).toBe(true);
    expect(origin.hits(path)).toBe(1);
  });

  it('a POST to the same target drops the stored entry', async () => {
    const path = p('post');
    const q = `${path}?cc=max-age%3D60`;
    await get(q);
    await fetch(u.url + q, { method: 'POST', body: 'x' });
    expect((await get(q)).xcache).toBe('MISS');
    expect(origin.hits(path)).toBe(3);
  });

  it('a response larger than --cache-max-entry streams through whole, uncached', async () => {
    const path = p('large');
    const q = `${path}?cc=max-age%3D60&size=100000`;
    const a = await get(q);
    const b = await get(q);
    expect(a.body.length).toBe(100000);
    expect(b.body.length).toBe(100000);
    expect(b.xcache).toBe('MISS');
    expect(origin.hits(path)).toBe(2);
  });

  it('a refetch whose answer fits --cache-max-entry but not --cache-size (with its fields) drops the old entry', async () => {
    // 2 KB of store, 2000 bytes of body allowed: the body fits the limit, the entry (fields,
    // key and overhead counted) does not fit the store.
    const tight = await startUgate(['--upstream', origin.url, '--cache-size', '2kb', '--cache-max-entry', '2kb'], { workers: 1 });
    try {
      const path = p('no-room');
      const q = `${path}?cc=max-age%3D60&thensize=2000`;
      expect(await get(q, {}, tight)).toMatchObject({ xcache: 'MISS', body: 'body 1' });
      expect((await get(q, {}, tight)).xcache).toBe('HIT');
      const refetched = await get(q, { 'cache-control': 'no-cache' }, tight);
      expect(refetched.body.length).toBe(2000);
      // The old copy is outdated: it must not answer the next request.
      const next = await get(q, {}, tight);
      expect(next.xcache).toBe('MISS');
      expect(next.body.length).toBe(2000);
      expect(origin.hits(path)).toBe(3);
    } finally {
      await tight.stop();
    }
  });
});

describe('conditional requests', () => {
  it('If-None-Match and If-Modified-Since against a fresh entry get a 304 from the cache', async () => {
    const path = p('cond');
    const q = `${path}?cc=max-age%3D60&etag=%22abc%22&lm=3600`;
    const a = await get(q);
    // undici.request, not fetch: fetch adds Cache-Control: no-cache to conditional requests.
    const inm = await request(u.url + q, { headers: { 'if-none-match': '"abc"' } });
    await inm.body.text();
    expect(inm.statusCode).toBe(304);
    expect(inm.headers['x-cache']).toBe('HIT');
    expect(inm.headers.etag).toBe('"abc"');
    const ims = await request(u.url + q, { headers: { 'if-modified-since': new Date().toUTCString() } });
    await ims.body.text();
    expect(ims.statusCode).toBe(304);
    const other = await request(u.url + q, { headers: { 'if-none-match': '"zzz"' } });
    expect(other.statusCode).toBe(200);
    expect(await other.body.text()).toBe(a.body);
    expect(origin.hits(path)).toBe(1);
  });

  it('a stale entry with an ETag is revalidated upstream and refreshed on 304', async () => {
    const path = p('reval');
    const q = `${path}?cc=max-age%3D1&etag=%22r1%22`;
    const a = await get(q);
    await sleep(1100);
    const b = await get(q);
    expect(b.xcache).toBe('REVALIDATED');
    expect(b.body).toBe(a.body);
    expect(origin.hits(path)).toBe(2);
    const sent = origin.seen.filter((s) => s.url.startsWith(path));
    expect(sent[1].headers['if-none-match']).toBe('"r1"');
    const c = await get(q);
    expect(c.xcache).toBe('HIT');
    expect(origin.hits(path)).toBe(2);
  });

  it('a 304 that carries a Content-Length still refreshes (undici rejects it; ugate does not)', async () => {
    const path = p('reval-cl');
    const q = `${path}?cc=max-age%3D1&etag=%22r2%22&cl304=1`;
    const a = await get(q);
    await sleep(1100);
    const b = await get(q);
    expect(b.status).toBe(200);
    expect(b.body).toBe(a.body);
    expect(b.xcache).toBe('REVALIDATED');
  });

  it('a stale entry revalidated with Last-Modified', async () => {
    const path = p('reval-lm');
    const q = `${path}?cc=max-age%3D1&lm=100`;
    await get(q);
    await sleep(1100);
    await get(q);
    const sent = origin.seen.filter((s) => s.url.startsWith(path));
    expect(sent.length).toBe(2);
    expect(sent[1].headers['if-modified-since']).toBeDefined();
  });
});

describe('stale', () => {
  it('stale-while-revalidate serves the stale entry at once and refreshes it once in the background', async () => {
    const path = p('swr');
    const q = `${path}?cc=max-age%3D1%2C%20stale-while-revalidate%3D30`;
    const a = await get(q);
    await sleep(1100);
    const [s1, s2] = await Promise.all([get(q), get(q)]);
    expect(s1.xcache).toBe('STALE');
    expect(s2.xcache).toBe('STALE');
    expect(s1.body).toBe(a.body);
    const fresh = await eventually(async () => {
      const r = await get(q);
      return r.xcache === 'HIT' && r;
    });
    expect(fresh.body).toBe('body 2');
    expect(origin.hits(path)).toBe(2);
  });

  it('stale-if-error serves the stale entry when the origin answers 5xx or fails', async () => {
    const path = p('sie');
    const q = `${path}?cc=max-age%3D1%2C%20stale-if-error%3D60`;
    const a = await get(q);
    await sleep(1100);
    origin.down.set(path, 'error');
    const b = await get(q);
    expect(b).toMatchObject({ status: 200, xcache: 'STALE', body: a.body });
    origin.down.set(path, 'reset');
    const c = await get(q);
    expect(c).toMatchObject({ status: 200, xcache: 'STALE', body: a.body });
    origin.down.delete(path);
    const d = await get(q);
    expect(d.xcache).toBe('MISS');
    expect(d.body).not.toBe(a.body);
  });

  it('max-stale takes a stale entry without going upstream: any staleness without a value, up to N s with one', async () => {
    const path = p('maxstale');
    const q = `${path}?cc=max-age%3D1`;
    const a = await get(q);
    await sleep(1100);
    for (const cc of ['max-stale', 'max-stale=60', 'max-stale="60"']) {
      const r = await get(q, { 'cache-control': cc });
      expect(r, cc).toMatchObject({ status: 200, xcache: 'STALE', body: a.body });
      expect(Number(r.headers.get('age')), cc).toBeGreaterThanOrEqual(1);
    }
    expect(origin.hits(path)).toBe(1);
    // Past its bound (the entry is 0.1 s and more stale), or with no-cache: the origin.
    for (const cc of ['max-stale=0', 'max-stale, no-cache']) {
      const r = await get(q, { 'cache-control': cc });
      expect(r.xcache, cc).toBe('MISS');
    }
    expect(origin.hits(path)).toBe(3);
  });

  it('only-if-cached: a stored response answers it (fresh, or stale within its max-stale); otherwise 504 UGATE_ERR_NOT_CACHED and the origin is never asked', async () => {
    const path = p('onlyifcached');
    const q = `${path}?cc=max-age%3D1`;
    const miss = await get(q, { 'cache-control': 'only-if-cached' });
    expect(miss.status).toBe(504);
    expect(miss.headers.get('x-ugate-error')).toBe('UGATE_ERR_NOT_CACHED');
    expect((await get(q, { 'cache-control': 'only-if-cached' }, u, 'HEAD')).status).toBe(504);
    expect(origin.hits(path)).toBe(0);
    const a = await get(q);
    expect(a.xcache).toBe('MISS');
    expect(await get(q, { 'cache-control': 'only-if-cached' })).toMatchObject({ status: 200, xcache: 'HIT', body: a.body });
    expect(origin.hits(path)).toBe(1);
    await sleep(1100);
    // Stale: only with max-stale; without it, 504 rather than a trip upstream.
    expect(await get(q, { 'cache-control': 'only-if-cached, max-stale' })).toMatchObject({ status: 200, xcache: 'STALE', body: a.body });
    expect((await get(q, { 'cache-control': 'only-if-cached' })).status).toBe(504);
    expect((await get(q, { 'cache-control': 'only-if-cached, no-cache' })).status).toBe(504);
    expect(origin.hits(path)).toBe(1);
  });

  it('max-stale never takes an entry whose response forbids serving it stale (must-revalidate, proxy-revalidate, s-maxage, no-cache)', async () => {
    const cases = ['max-age%3D1%2C%20must-revalidate', 'max-age%3D1%2C%20proxy-revalidate', 's-maxage%3D1', 'no-cache&etag=%22n%22'];
    const paths = cases.map((cc) => [p('maxstale-refused'), cc] as const);
    for (const [path, cc] of paths) await get(`${path}?cc=${cc}`);
    await sleep(1100);
    for (const [path, cc] of paths) {
      const r = await get(`${path}?cc=${cc}`, { 'cache-control': 'max-stale' });
      expect(r.xcache, cc).toBe(cc.includes('etag') ? 'REVALIDATED' : 'MISS');
      expect(origin.hits(path), cc).toBe(2);
    }
  });

  it('stale-if-error does not answer a request that asked for fresh (no-cache, max-age, min-fresh) or bounded it lower', async () => {
    const path = p('sie-ask');
    const q = `${path}?cc=max-age%3D1%2C%20stale-if-error%3D60`;
    const a = await get(q);
    await sleep(1100);
    origin.down.set(path, 'error');
    // max-age=1: the entry is older than that. stale-if-error=0: the client's own bound (RFC 5861 §4).
    for (const cc of ['no-cache', 'max-age=1', 'min-fresh=1', 'stale-if-error=0']) {
      const r = await get(q, { 'cache-control': cc });
      expect(r.status, cc).toBe(500);
      expect(r.body, cc).toBe('origin error');
    }
    expect((await get(q, { pragma: 'no-cache' })).status).toBe(500);
    origin.down.set(path, 'reset');
    expect((await get(q, { 'cache-control': 'no-cache' })).status).toBe(502);
    // A request that did not ask still gets the stale entry: those errors did not drop it.
    expect(await get(q)).toMatchObject({ status: 200, xcache: 'STALE', body: a.body });
    origin.down.delete(path);
  });

  it('a client\'s own stale-if-error lets it have the stale entry on an origin error, even with no-cache or without the origin\'s', async () => {
    const path = p('sie-req');
    const q = `${path}?cc=max-age%3D1`;
    const a = await get(q);
    await sleep(1100);
    origin.down.set(path, 'error');
    for (const cc of ['stale-if-error=60', 'no-cache, stale-if-error=60', 'max-age=0, stale-if-error=60']) {
      expect(await get(q, { 'cache-control': cc }), cc).toMatchObject({ status: 200, xcache: 'STALE', body: a.body });
    }
    expect((await get(q)).status).toBe(500);
    origin.down.set(path, 'reset');
    expect(await get(q, { 'cache-control': 'stale-if-error=60' })).toMatchObject({ status: 200, xcache: 'STALE', body: a.body });
    origin.down.delete(path);
  });

  it('on an origin error, each coalesced request gets the stale entry by its own directives, not the first one\'s', async () => {
    const path = p('sie-waiters');
    const q = `${path}?cc=max-age%3D1%2C%20stale-if-error%3D60&delay=300`;
    const a = await get(q);
    await sleep(1100);
    origin.down.set(path, 'error');
    // A plain request leads (its answer comes after 300 ms); a no-cache one waits on it.
    const leader = get(q);
    await sleep(100);
    const waiter = get(q, { 'cache-control': 'no-cache' });
    expect(await leader).toMatchObject({ status: 200, xcache: 'STALE', body: a.body });
    expect((await waiter).status).toBe(500);
    // The other way round.
    const leader2 = get(q, { 'cache-control': 'no-cache' });
    await sleep(100);
    const waiter2 = get(q);
    expect((await leader2).status).toBe(500);
    expect(await waiter2).toMatchObject({ status: 200, xcache: 'STALE', body: a.body });
    origin.down.delete(path);
  });

  it('without stale-if-error the origin failure reaches the client', async () => {
    const path = p('nosie');
    const q = `${path}?cc=max-age%3D1`;
    await get(q);
    await sleep(1100);
    origin.down.set(path, 'reset');
    const r = await get(q);
    origin.down.delete(path);
    expect(r.status).toBe(502);
  });
});
