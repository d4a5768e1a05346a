// Requests the cache makes on its own (stale-while-revalidate refreshes, --cache-warm) are
// counted on their backend like proxied ones: in flight, requests, passive health. And they
// only go to backends a client's request could go to. 1 worker, read from /stats "backends".
import { afterEach, describe, expect, it } from 'vitest';
import { startCacheOrigin, type CacheOrigin } from '../helpers/cache-origin';
import { startOrigin, type Origin } from '../helpers/origin';
import type { BackendRow } from '../../src/backend-admin';
import { eventually, sleep, startUgate, type Ugate } from '../helpers/ugate';

const started: Origin[] = [];
let u: Ugate | null = null;

afterEach(async () => {
  await u?.stop();
  u = null;
  for (const o of started.splice(0)) await o.close();
});

async function backends(): Promise<BackendRow[]> {
  return (await u!.stats()).backends;
}

async function origin(): Promise<CacheOrigin> {
  const o = await startCacheOrigin();
  started.push(o);
  return o;
}

async function get(target: string) {
  const r = await fetch(u!.url + target);
  return { status: r.status, body: await r.text(), xcache: r.headers.get('x-cache') };
}

const sum = (list: BackendRow[], f: (b: BackendRow) => number) => list.reduce((n, b) => n + f(b), 0);

describe('cache background fetches and the backend table', () => {
  it('a failing stale-while-revalidate refresh counts as a failure and ejects; the next refresh skips the ejected backend', async () => {
    const a = await origin();
    const b = await origin();
    u = await startUgate(['--upstream', a.url, '--upstream', b.url, '--cache-size', '1mb', '--max-fails', '1', '--eject-time', '60s', '--retries', '0'], { workers: 1 });
    const path = '/swr-fail';
    const q = `${path}?cc=max-age%3D1%2C%20stale-while-revalidate%3D60`;
    expect((await get(q)).xcache).toBe('MISS');
    await sleep(1100);
    a.down.set(path, 'reset');
    b.down.set(path, 'reset');
    const hits = () => a.hits(path) + b.hits(path);

    expect((await get(q)).xcache).toBe('STALE');
    await eventually(async () => (await backends()).some((x) => x.failures === 1 && x.ejected));

    // The reset left the stale entry in place: the next refresh goes to the other backend
    // (the only one left), and ejects it too.
    expect((await get(q)).xcache).toBe('STALE');
    const both = await eventually(async () => {
      const s = await backends();
      return s.every((x) => x.failures === 1 && x.ejected) && s;
    });
    // The first miss and two refreshes. (The origins may see more: the lean client re-sends
    // once a request whose reused keep-alive connection is reset before any byte.)
    expect(sum(both, (x) => x.requests)).toBe(3);
    const sent = hits();

    // Every backend is out: the stale entry is still served, and no refresh is sent anywhere
    // (a refresh would be counted before the stale answer leaves: same synchronous handler).
    expect((await get(q)).xcache).toBe('STALE');
    const after = await backends();
    expect(sum(after, (x) => x.requests)).toBe(3);
    expect(sum(after, (x) => x.inFlight)).toBe(0);
    expect(hits()).toBe(sent);
  });

  it('a background refresh is in flight on its backend until its answer arrives', async () => {
    // The refresh (second request) is held until the test lets it go.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const o = await startOrigin((_req, res, _seen) => {
      const n = o.seen.length;
      const send = () => res.writeHead(200, { 'cache-control': 'max-age=1, stale-while-revalidate=60' }).end(`body ${n}`);
      if (n === 1) send();
      else void held.then(send);
    });
    started.push(o);
    u = await startUgate(['--upstream', o.url, '--cache-size', '1mb'], { workers: 1 });
    expect((await get('/swr-held')).xcache).toBe('MISS');
    await sleep(1100);
    expect((await get('/swr-held')).xcache).toBe('STALE');
    await eventually(() => o.seen.length === 2);
    expect((await backends())[0]).toMatchObject({ inFlight: 1, requests: 2 });
    release();
    const fresh = await eventually(async () => {
      const r = await get('/swr-held');
      return r.xcache === 'HIT' && r;
    });
    expect(fresh.body).toBe('body 2');
    expect((await backends())[0]).toMatchObject({ inFlight: 0, requests: 2, failures: 0 });
  });

  it('--cache-warm requests count on their backend, failures included', async () => {
    const a = await origin();
    const b = await origin();
    a.down.set('/warm', 'reset');
    b.down.set('/warm', 'reset');
    u = await startUgate(['--upstream', a.url, '--upstream', b.url, '--cache-size', '1mb', '--cache-warm', '/warm?cc=max-age%3D600', '--max-fails', '1', '--eject-time', '60s'], { workers: 1 });
    const s = await eventually(async () => {
      const list = await backends();
      return sum(list, (x) => x.failures) === 1 && list;
    });
    expect(sum(s, (x) => x.requests)).toBe(1);
    expect(s.filter((x) => x.ejected).length).toBe(1);
    expect(sum(s, (x) => x.inFlight)).toBe(0);
    expect(a.hits('/warm') + b.hits('/warm')).toBe(1);
  });

  it('with hash balancing on the client IP, warming and stale refreshes work (no client address to read)', async () => {
    const a = await origin();
    const b = await origin();
    u = await startUgate(['--upstream', a.url, '--upstream', b.url, '--balance', 'hash', '--cache-size', '1mb', '--cache-warm', '/hash-warm?cc=max-age%3D600'], { workers: 1 });
    expect((await get('/hash-warm?cc=max-age%3D600')).xcache).toBe('HIT');
    const q = '/hash-swr?cc=max-age%3D1%2C%20stale-while-revalidate%3D60';
    expect((await get(q)).xcache).toBe('MISS');
    await sleep(1100);
    expect((await get(q)).xcache).toBe('STALE');
    const fresh = await eventually(async () => {
      const r = await get(q);
      return r.xcache === 'HIT' && r;
    });
    expect(fresh.body).toBe('body 2');
    // The refresh went where the client's own request goes: the same origin as the miss.
    expect([a.hits('/hash-swr'), b.hits('/hash-swr')].sort()).toEqual([0, 2]);
    expect((await u.stats()).workerRestarts).toBe(0);
  });
});
