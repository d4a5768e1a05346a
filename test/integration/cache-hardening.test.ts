// Cache cases from hardening passes. Every case but the last five failed before its fix (a
// stored response answering a request it must not, or something stored that must not be, or
// kept fresh too long); the last five are guards that already held (keys, Vary, HEAD/GET, cut
// bodies), kept as regressions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrigin, type Origin } from '../helpers/origin';
import { rawRequest } from '../helpers/raw';
import { eventually, sleep, startUgate, type Ugate } from '../helpers/ugate';

let origin: Origin;
let u: Ugate;
/** Trusts the loopback client's own X-Forwarded-*: the origin sees them per request. */
let behindProxy: Ugate;
const hits = new Map<string, number>();

beforeAll(async () => {
  origin = await startOrigin((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const path = url.pathname;
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    if (path.startsWith('/rc-cookie')) {
      // 200 without a cookie; the 304 to the cache's revalidation sets one for that client.
      if (req.headers['if-none-match'] === '"v1"') {
        res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=1', 'set-cookie': `session=user${n}` });
        res.end();
        return;
      }
      res.writeHead(200, { etag: '"v1"', 'cache-control': 'max-age=1', 'content-length': '6' });
      res.end('shared');
      return;
    }
    if (path.startsWith('/rc-private')) {
      // The 304 to the cache's revalidation makes the response private, and comes late.
      if (req.headers['if-none-match'] === '"p1"') {
        setTimeout(() => {
          res.writeHead(304, { etag: '"p1"', 'cache-control': 'private, max-age=60' });
          res.end();
        }, 400);
        return;
      }
      const body = `private? ${n}`;
      res.writeHead(200, { etag: '"p1"', 'cache-control': 'max-age=1', 'content-length': String(body.length) });
      res.end(body);
      return;
    }
    if (path.startsWith('/nc-sie')) {
      // Stored with no-cache (every use needs the origin's yes), then the origin fails.
      if (n > 1) {
        res.writeHead(500, { 'content-length': '4' });
        res.end('down');
        return;
      }
      res.writeHead(200, { etag: '"n1"', 'cache-control': 'no-cache, max-age=60, stale-if-error=60', 'content-length': '9' });
      res.end('validated');
      return;
    }
    if (path.startsWith('/xff')) {
      // Content chosen per client address (geo-IP style), announced with Vary.
      const body = `for ${req.headers['x-forwarded-for']} / ${req.headers['x-forwarded-host']}`;
      res.writeHead(200, { 'cache-control': 'max-age=60', vary: url.searchParams.get('vary')!, 'content-length': String(body.length) });
      res.end(body);
      return;
    }
    if (path.startsWith('/swr-proto')) {
      // Behind a TLS terminator: plain http is redirected to https (a cacheable 301).
      if (req.headers['x-forwarded-proto'] !== 'https') {
        res.writeHead(301, { location: `https://example.test${req.url}`, 'cache-control': 'max-age=60', 'content-length': '0' });
        res.end();
        return;
      }
      const body = `secure ${n}`;
      res.writeHead(200, { 'cache-control': 'max-age=1, stale-while-revalidate=60', 'content-length': String(body.length) });
      res.end(body);
      return;
    }
    if (path.startsWith('/grow')) {
      // The 304 brings an 8 KB field the stored entry did not have.
      if (req.headers['if-none-match'] === '"g1"') {
        res.writeHead(304, { etag: '"g1"', 'cache-control': 'max-age=60', 'x-big': 'b'.repeat(8192) });
        res.end();
        return;
      }
      res.writeHead(200, { etag: '"g1"', 'cache-control': 'max-age=1', 'content-length': '4' });
      res.end('grow');
      return;
    }
    if (path.startsWith('/expires-num')) {
      // Seconds where an HTTP-date belongs (a common mistake): invalid, so already expired.
      const body = `expires ${n}`;
      res.writeHead(200, { expires: url.searchParams.get('v')!, 'content-length': String(body.length) });
      res.end(body);
      return;
    }
    if (path.startsWith('/dated')) {
      // Date the given seconds in the past (the response waited in some cache upstream, or the
      // origin's clock is behind), no Age field.
      const body = `dated ${n}`;
      const date = new Date(Date.now() - Number(url.searchParams.get('ago')) * 1000).toUTCString();
      res.writeHead(200, { date, 'cache-control': 'max-age=60', 'content-length': String(body.length) });
      res.end(body);
      return;
    }
    if (path.startsWith('/twice')) {
      // The same freshness directive or field given twice (in one field line or two).
      const body = `twice ${n}`;
      const past = new Date(Date.now() - 60_000).toUTCString();
      const future = new Date(Date.now() + 60_000).toUTCString();
      const fields: Record<string, string | string[]> = {
        'one-line': { 'cache-control': 'max-age=0, max-age=60' },
        'two-lines': { 'cache-control': ['max-age=0', 'max-age=60'] },
        's-maxage': { 'cache-control': 's-maxage=0, s-maxage=60' },
        expires: { expires: [past, future] },
        same: { 'cache-control': ['max-age=60', 'max-age=60'] },
      }[url.searchParams.get('mode')!] as Record<string, string | string[]>;
      for (const [name, value] of Object.entries(fields)) res.setHeader(name, value);
      res.writeHead(200, { 'content-length': String(body.length) });
      res.end(body);
      return;
    }
    if (path.startsWith('/dup')) {
      // Date or Age given twice with different values (two field lines, or one comma list).
      const body = `dup ${n}`;
      const at = (s: number) => new Date(Date.now() + s * 1000).toUTCString();
      const fields = {
        // max-age=60: one Age says 100 s old (stale), the other 5 s (fresh).
        age: { 'cache-control': 'max-age=60', age: ['100', '5'] },
        'age-list': { 'cache-control': 'max-age=60', age: '100, 5' },
        // max-age=60: one Date is 100 s old (stale), the other this second (fresh).
        date: { 'cache-control': 'max-age=60', date: [at(-100), at(0)] },
        // Expires in 60 s, Age 60: counted from the Date of now the response is stale (60 s
        // lifetime, 60 s old); from the Date of 100 s ago it is fresh (160 s lifetime, 100 s old).
        expires: { expires: at(60), age: '60', date: [at(0), at(-100)] },
      }[url.searchParams.get('mode')!] as Record<string, string | string[]>;
      for (const [name, value] of Object.entries(fields)) res.setHeader(name, value);
      res.writeHead(200, { 'content-length': String(body.length) });
      res.end(body);
      return;
    }
    if (path.startsWith('/swr-ask')) {
      const body = `swr ${n}`;
      res.writeHead(200, { 'cache-control': 'max-age=1, stale-while-revalidate=60', 'content-length': String(body.length) });
      res.end(body);
      return;
    }
    if (path.startsWith('/moved')) {
      // The resource changed: to the cache's validators for the first response the origin
      // answers 304 with its new validator (?by=etag: ETag, else Last-Modified), after 300 ms
      // (?cc: the first response's Cache-Control); unconditionally, the new body.
      const byEtag = url.searchParams.get('by') === 'etag';
      const first = { etag: '"e1"', 'last-modified': new Date(Date.UTC(2020, 0, 1)).toUTCString() };
      const now = { etag: '"e2"', 'last-modified': new Date(Date.UTC(2021, 0, 1)).toUTCString() };
      const validator = (v: typeof first): Record<string, string> => (byEtag ? { etag: v.etag } : { 'last-modified': v['last-modified'] });
      if (req.headers['if-none-match'] !== undefined || req.headers['if-modified-since'] !== undefined) {
        setTimeout(() => {
          res.writeHead(304, { ...validator(now), 'cache-control': 'max-age=60' });
          res.end();
        }, 300);
        return;
      }
      const body = n === 1 ? 'old' : `new ${n}`;
      res.writeHead(200, { ...validator(n === 1 ? first : now), 'cache-control': n === 1 ? url.searchParams.get('cc')! : 'max-age=60', 'content-length': String(body.length) });
      res.end(body);
      return;
    }
    if (path.startsWith('/vary-moved')) {
      // Stored without Vary; the 304 to the cache's revalidation says the resource now varies
      // on Accept-Language, and so do its 200s.
      if (req.headers['if-none-match'] === '"v"') {
        res.writeHead(304, { etag: '"v"', vary: 'Accept-Language', 'cache-control': 'max-age=60' });
        res.end();
        return;
      }
      const lang = req.headers['accept-language'];
      const body = n === 1 ? 'plain' : `lang ${lang}`;
      const headers: Record<string, string> = { etag: n === 1 ? '"v"' : `"v-${lang}"`, 'cache-control': n === 1 ? 'max-age=1' : 'max-age=60', 'content-length': String(body.length) };
      if (n > 1) headers.vary = 'Accept-Language';
      res.writeHead(200, headers);
      res.end(body);
      return;
    }
    if (path.startsWith('/echo')) {
      const varied = url.searchParams.get('vary');
      const body = `url ${req.url} n ${n}` + (varied === null ? '' : ` v ${req.headers[varied.toLowerCase()]}`);
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': String(Buffer.byteLength(body)), vary: url.searchParams.get('vary') ?? '' });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (path.startsWith('/cut-cl')) {
      res.socket!.write('HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 100\r\n\r\n' + 'a'.repeat(50));
      setTimeout(() => res.socket!.destroy(), 50);
      return;
    }
    if (path.startsWith('/cut-chunked')) {
      res.socket!.write('HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n');
      setTimeout(() => res.socket!.destroy(), 50);
      return;
    }
    res.writeHead(404);
    res.end();
  });
  u = await startUgate(['--upstream', origin.url, '--cache-size', '1mb'], { workers: 1 });
  behindProxy = await startUgate(['--upstream', origin.url, '--cache-size', '1mb', '--trusted-proxy', '127.0.0.1'], { workers: 1 });
});

afterAll(async () => {
  await u?.stop();
  await behindProxy?.stop();
  await origin?.close();
});

async function get(path: string, headers: Record<string, string> = {}, method = 'GET', via: Ugate = u) {
  const r = await fetch(via.url + path, { method, headers, signal: AbortSignal.timeout(5000) });
  return { status: r.status, headers: r.headers, body: await r.text().catch(() => 'CUT'), xcache: r.headers.get('x-cache') };
}

describe('cache hardening', () => {
  it('a 304 revalidation that sets a cookie does not put it in the shared entry', async () => {
    await get('/rc-cookie');
    await sleep(1100);
    const b = await get('/rc-cookie');
    expect(b.xcache).toBe('REVALIDATED');
    // The client whose revalidation got the cookie still gets it.
    expect(b.headers.get('set-cookie')).toBe('session=user2');
    const c = await get('/rc-cookie');
    expect(c.body).toBe('shared');
    expect(c.headers.get('set-cookie')).toBeNull();
  });

  it('a 304 that makes the entry private answers only the request that revalidated it, not its coalesced waiters', async () => {
    await get('/rc-private');
    await sleep(1100);
    const leader = get('/rc-private');
    await sleep(100);
    const waiter = await get('/rc-private');
    const l = await leader;
    expect(l.xcache).toBe('REVALIDATED');
    expect(waiter.xcache).not.toBe('REVALIDATED');
    expect(waiter.body).toBe('private? 3');
    expect(hits.get('/rc-private')).toBe(3);
    // Not kept either: the next request goes to the origin.
    expect((await get('/rc-private')).body).toBe('private? 4');
  });

  it('a response no-cache entry is never served stale on an origin error, even with stale-if-error', async () => {
    expect((await get('/nc-sie')).body).toBe('validated');
    const b = await get('/nc-sie');
    expect(hits.get('/nc-sie')).toBe(2);
    expect(b.status).toBe(500);
    expect(b.body).toBe('down');
  });

  it('Vary on X-Forwarded-For / X-Forwarded-Host (written by ugate, not in the client\'s fields) never shares one client\'s variant', async () => {
    const a = await get('/xff1?vary=X-Forwarded-For', { 'x-forwarded-for': '192.0.2.1' }, 'GET', behindProxy);
    const b = await get('/xff1?vary=X-Forwarded-For', { 'x-forwarded-for': '192.0.2.2' }, 'GET', behindProxy);
    expect(a.body).toContain('for 192.0.2.1, 127.0.0.1');
    expect(b.body).toContain('for 192.0.2.2, 127.0.0.1');
    const c = await get('/xff2?vary=X-Forwarded-Host', { 'x-forwarded-host': 'one.example' }, 'GET', behindProxy);
    const d = await get('/xff2?vary=X-Forwarded-Host', { 'x-forwarded-host': 'two.example' }, 'GET', behindProxy);
    expect(c.body).toContain('/ one.example');
    expect(d.body).toContain('/ two.example');
    expect(hits.get('/xff1')).toBe(2);
    expect(hits.get('/xff2')).toBe(2);
  });

  it('a varied field the client names in Connection (dropped before the origin) does not key the entry', async () => {
    // The origin never sees this Accept-Language (hop-by-hop), so its answer is the default
    // variant; stored under "fr" it would be served to real French requests.
    const host = new URL(u.url).host;
    const a = await rawRequest(u.port, [`GET /echo5?vary=accept-language HTTP/1.1\r\nhost: ${host}\r\nconnection: accept-language, close\r\naccept-language: fr\r\n\r\n`], 1500);
    expect(a.status).toBe(200);
    expect(a.text).toContain('v undefined');
    const b = await get('/echo5?vary=accept-language', { 'accept-language': 'fr' });
    expect(b.body).toContain('v fr');
    expect(hits.get('/echo5')).toBe(2);
  });

  it('a stale-while-revalidate refresh asks the origin with the X-Forwarded-* fields the client\'s request would carry', async () => {
    const https = { 'x-forwarded-proto': 'https' };
    const a = await get('/swr-proto', https, 'GET', behindProxy);
    expect(a.body).toBe('secure 1');
    await sleep(1100);
    const b = await get('/swr-proto', https, 'GET', behindProxy);
    expect(b.xcache).toBe('STALE');
    // Wait for the background refresh to reach the origin and come back.
    await eventually(() => hits.get('/swr-proto') === 2);
    await sleep(200);
    const c = await fetch(behindProxy.url + '/swr-proto', { headers: https, redirect: 'manual', signal: AbortSignal.timeout(5000) });
    expect(c.status).toBe(200);
    expect(await c.text()).toBe('secure 2');
    expect(c.headers.get('x-cache')).toBe('HIT');
  });

  it('fields a 304 adds to an entry count against --cache-size', async () => {
    const one = await startUgate(['--upstream', origin.url, '--cache-size', '1mb'], { workers: 1 });
    try {
      const bytes = async () => Number(/ugate_cache_bytes (\d+)/.exec(await one.metrics())?.[1] ?? -1);
      expect((await get('/grow', {}, 'GET', one)).body).toBe('grow');
      const before = await eventually(async () => ((await bytes()) > 0 ? bytes() : false));
      expect(before).toBeLessThan(4096);
      await sleep(1100);
      expect((await get('/grow', {}, 'GET', one)).xcache).toBe('REVALIDATED');
      expect((await get('/grow', {}, 'GET', one)).xcache).toBe('HIT');
      await eventually(async () => (await bytes()) >= before + 8192);
    } finally {
      await one.stop();
    }
  });

  it('an Expires that is not an HTTP-date ("3600", "2030") means already expired, not a far-future year', async () => {
    for (const v of ['3600', '2030']) {
      const path = `/expires-num-${v}?v=${v}`;
      await get(path);
      const b = await get(path);
      expect(b.xcache).toBe('MISS');
      expect(b.body).toBe('expires 2');
    }
    // A real HTTP-date still gives freshness.
    const when = encodeURIComponent(new Date(Date.now() + 60_000).toUTCString());
    await get(`/expires-num-date?v=${when}`);
    expect((await get(`/expires-num-date?v=${when}`)).xcache).toBe('HIT');
  });

  it('the age of a response counts from its Date (RFC 9111 §4.2.3), not only from its Age field', async () => {
    // Date 100 s ago, max-age=60: stale on arrival, so the next request goes to the origin.
    expect((await get('/dated-100?ago=100')).body).toBe('dated 1');
    const b = await get('/dated-100?ago=100');
    expect(b.xcache).toBe('MISS');
    expect(b.body).toBe('dated 2');
    expect(hits.get('/dated-100')).toBe(2);
    // Date 30 s ago: fresh for 30 s more, and served with the age it already had.
    await get('/dated-30?ago=30');
    const c = await get('/dated-30?ago=30');
    expect(c.xcache).toBe('HIT');
    expect(Number(c.headers.get('age'))).toBeGreaterThanOrEqual(30);
    expect(Number(c.headers.get('age'))).toBeLessThan(60);
  });

  it('max-age, s-maxage or Expires given twice with different values makes the response stale (RFC 9111 §4.2.1)', async () => {
    for (const mode of ['one-line', 'two-lines', 's-maxage', 'expires']) {
      const path = `/twice-${mode}?mode=${mode}`;
      await get(path);
      const b = await get(path);
      expect(b.xcache, mode).toBe('MISS');
      expect(b.body, mode).toBe('twice 2');
    }
    // The same value twice is no conflict.
    await get('/twice-same?mode=same');
    expect((await get('/twice-same?mode=same')).xcache).toBe('HIT');
  });

  it('a Date or Age given twice with different values is read the way that makes the response least fresh', async () => {
    for (const mode of ['age', 'age-list', 'date', 'expires']) {
      const path = `/dup-${mode}?mode=${mode}`;
      await get(path);
      const b = await get(path);
      expect(b.xcache, mode).toBe('MISS');
      expect(b.body, mode).toBe('dup 2');
    }
  });

  it('a request that asks for fresh (min-fresh, no-cache, max-age=0) is not answered stale under stale-while-revalidate', async () => {
    const asks = ['min-fresh=5', 'no-cache', 'max-age=0'];
    for (const [i] of asks.entries()) await get(`/swr-ask-${i}`);
    await sleep(1100);
    for (const [i, cc] of asks.entries()) {
      const b = await get(`/swr-ask-${i}`, { 'cache-control': cc });
      expect(b.xcache, cc).toBe('MISS');
      expect(b.body, cc).toBe('swr 2');
    }
  });

  it('a 304 with another ETag or Last-Modified than the entry\'s does not refresh it: the request and its waiters get the new body (RFC 9111 §4.3.4)', async () => {
    for (const by of ['etag', 'lm']) {
      const path = `/moved-${by}?by=${by}&cc=max-age%3D1`;
      expect((await get(path)).body).toBe('old');
      await sleep(1100);
      // The leader's revalidation gets the 304 after 300 ms; the second request waits on it.
      const leader = get(path);
      await sleep(100);
      const waiter = await get(path);
      const l = await leader;
      expect(l.body, by).toBe('new 3');
      expect(l.xcache, by).toBe('MISS');
      expect(waiter.body, by).toBe('new 3');
      expect(hits.get(`/moved-${by}`), by).toBe(3);
      const after = await get(path);
      expect(after.xcache, by).toBe('HIT');
      expect(after.body, by).toBe('new 3');
    }
  });

  it('a background refresh answered by a 304 with another ETag drops the entry instead of refreshing it', async () => {
    const path = '/moved-swr?by=etag&cc=max-age%3D1%2C%20stale-while-revalidate%3D60';
    expect((await get(path)).body).toBe('old');
    await sleep(1100);
    expect((await get(path)).xcache).toBe('STALE');
    await eventually(() => hits.get('/moved-swr') === 2);
    await sleep(400);
    const c = await get(path);
    expect(c.xcache).toBe('MISS');
    expect(c.body).toBe('new 3');
  });

  it('a 304 whose Vary differs from the entry\'s does not refresh it for every variant', async () => {
    expect((await get('/vary-moved')).body).toBe('plain');
    await sleep(1100);
    expect((await get('/vary-moved', { 'accept-language': 'fr' })).body).toBe('lang fr');
    const de = await get('/vary-moved', { 'accept-language': 'de' });
    expect(de.body).toBe('lang de');
    expect(de.xcache).toBe('MISS');
    expect((await get('/vary-moved', { 'accept-language': 'fr' })).xcache).toBe('HIT');
  });

  it('percent-encoded and plain targets are different keys', async () => {
    const a = await get('/echo1/a%2Fb');
    const b = await get('/echo1/a/b');
    expect(b.body).not.toBe(a.body);
    const c = await get('/echo2/x%3Fq=1');
    const d = await get('/echo2/x?q=1');
    expect(d.body).not.toBe(c.body);
  });

  it('Vary on a header the second request lacks', async () => {
    const a = await get('/echo3?vary=x-a', { 'x-a': '1' });
    const b = await get('/echo3?vary=x-a');
    expect(b.xcache).toBe('MISS');
    expect(b.body).not.toBe(a.body);
    const c = await get('/echo3?vary=x-a', { 'x-a': '2' });
    expect(c.xcache).toBe('MISS');
  });

  it('a HEAD miss passes through without filling: the GET after it gets the whole body, and a HEAD hit its length', async () => {
    const a = await get('/echo4', {}, 'HEAD');
    expect(a.status).toBe(200);
    const b = await get('/echo4');
    expect(b.body).toContain('url /echo4');
    const c = await get('/echo4', {}, 'HEAD');
    expect(c.xcache).toBe('HIT');
    expect(c.headers.get('content-length')).toBe(String(b.body.length));
  });

  it('a body cut short of its Content-Length is not stored', async () => {
    await get('/cut-cl');
    const b = await get('/cut-cl');
    expect(b.xcache).not.toBe('HIT');
    expect(hits.get('/cut-cl')).toBe(2);
  });

  it('a chunked body cut mid-way is not stored', async () => {
    await get('/cut-chunked');
    const b = await get('/cut-chunked');
    expect(b.xcache).not.toBe('HIT');
    expect(hits.get('/cut-chunked')).toBe(2);
  });
});
