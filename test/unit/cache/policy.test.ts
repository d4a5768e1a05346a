// RFC 9111 storability and freshness, without sockets.
import { describe, expect, it } from 'vitest';
import {
  emptyDirectives, emptyFacts, emptyFreshness, etagMatches, maxStaleAllows, notModifiedMatches, notModifiedSince, parseCacheControl, parseVary, staleOnErrorAllows,
  storability, type ResponseFacts,
} from '../../../workers/cache/policy';

const opts = { defaultTtlMs: 0, setCookie: false };

function facts(over: Partial<ResponseFacts>): ResponseFacts {
  return { ...emptyFacts(200), ...over };
}

function check(f: Partial<ResponseFacts>, o: { auth?: boolean; req?: string; defaultTtlMs?: number; setCookie?: boolean } = {}) {
  const fresh = emptyFreshness();
  const req = o.req ? parseCacheControl(o.req) : emptyDirectives();
  const why = storability(facts(f), req, o.auth ?? false, { defaultTtlMs: o.defaultTtlMs ?? 0, setCookie: o.setCookie ?? false }, fresh);
  return { why, fresh };
}

describe('parseCacheControl', () => {
  it('reads directives with and without arguments, quoted or not, any case', () => {
    const d = parseCacheControl('Public, MAX-AGE=60, s-maxage="120", no-cache="set-cookie", stale-while-revalidate=5 ,stale-if-error=9, must-revalidate');
    expect(d).toMatchObject({ public: true, maxAge: 60, sMaxAge: 120, noCache: true, staleWhileRevalidate: 5, staleIfError: 9, mustRevalidate: true });
    expect(parseCacheControl('private, no-store')).toMatchObject({ private: true, noStore: true, maxAge: -1 });
    expect(parseCacheControl('max-age=abc').maxAge).toBe(0);
    expect(parseCacheControl('').maxAge).toBe(-1);
  });

  it('a seconds directive repeated with another value counts as 0 (stale), with the same value as given', () => {
    expect(parseCacheControl('max-age=0, max-age=60').maxAge).toBe(0);
    expect(parseCacheControl('max-age=60, max-age=600').maxAge).toBe(0);
    expect(parseCacheControl('max-age=60, public, max-age=60').maxAge).toBe(60);
    expect(parseCacheControl('s-maxage=5, s-maxage=50').sMaxAge).toBe(0);
    expect(parseCacheControl('stale-while-revalidate=5, stale-if-error=9, stale-while-revalidate=50, stale-if-error=90')).toMatchObject({ staleWhileRevalidate: 0, staleIfError: 0 });
    expect(check({ cacheControl: 'max-age=0, max-age=60' }).why).toBe('expired');
  });

  it('max-stale: no value is any staleness; a bad value, an empty one or two different ones count as 0', () => {
    expect(parseCacheControl('max-stale').maxStale).toBe(Infinity);
    expect(parseCacheControl('max-stale=30').maxStale).toBe(30);
    expect(parseCacheControl('max-stale="30"').maxStale).toBe(30);
    expect(parseCacheControl('max-stale=').maxStale).toBe(0);
    expect(parseCacheControl('max-stale=soon').maxStale).toBe(0);
    expect(parseCacheControl('max-stale, max-stale=30').maxStale).toBe(0);
    expect(parseCacheControl('no-cache').maxStale).toBe(-1);
  });
});

describe('storability', () => {
  it('stores explicit freshness; s-maxage wins over max-age, max-age over Expires', () => {
    expect(check({ cacheControl: 'max-age=60' })).toMatchObject({ why: null, fresh: { lifetimeMs: 60_000 } });
    expect(check({ cacheControl: 'max-age=60, s-maxage=5' }).fresh).toMatchObject({ lifetimeMs: 5000, mustRevalidate: true });
    const date = new Date().toUTCString();
    const expires = new Date(Date.now() + 30_000).toUTCString();
    const r = check({ cacheControl: 'max-age=10', expires, date });
    expect(r.fresh.lifetimeMs).toBe(10_000);
    const e = check({ expires, date });
    expect(e.why).toBeNull();
    expect(e.fresh.lifetimeMs).toBeGreaterThan(25_000);
  });

  it('refuses no-store, private, Vary: *, Set-Cookie and statuses not cacheable by default', () => {
    expect(check({ cacheControl: 'no-store, max-age=60' }).why).toBe('no-store');
    expect(check({ cacheControl: 'private, max-age=60' }).why).toBe('private');
    expect(check({ cacheControl: 'max-age=60', vary: 'Accept, *' }).why).toBe('vary *');
    expect(check({ cacheControl: 'max-age=60', setCookie: true }).why).toBe('set-cookie');
    expect(check({ cacheControl: 'max-age=60', setCookie: true }, { setCookie: true }).why).toBeNull();
    expect(check({ status: 500, cacheControl: 'max-age=60' }).why).toBe('status');
    expect(check({ status: 206, cacheControl: 'max-age=60' }).why).toBe('status');
    expect(check({ status: 404, cacheControl: 'max-age=60' }).why).toBeNull();
    expect(check({ cacheControl: 'max-age=60' }, { req: 'no-store' }).why).toBe('request no-store');
  });

  it('stores answers to Authorization only with public, s-maxage or must-revalidate', () => {
    expect(check({ cacheControl: 'max-age=60' }, { auth: true }).why).toBe('authorization');
    expect(check({ cacheControl: 'public, max-age=60' }, { auth: true }).why).toBeNull();
    expect(check({ cacheControl: 's-maxage=60' }, { auth: true }).why).toBeNull();
    expect(check({ cacheControl: 'max-age=60, must-revalidate' }, { auth: true }).why).toBeNull();
  });

  it('without freshness: stored only with a validator (always revalidated) or a default TTL', () => {
    expect(check({}).why).toBe('no freshness');
    expect(check({}, { defaultTtlMs: 5000 }).fresh.lifetimeMs).toBe(5000);
    expect(check({ etag: '"a"' })).toMatchObject({ why: null, fresh: { lifetimeMs: 0 } });
    expect(check({ cacheControl: 'max-age=0' }).why).toBe('expired');
    expect(check({ expires: '0' }).why).toBe('expired');
    expect(check({ cacheControl: 'no-cache, max-age=60', etag: '"a"' }).fresh).toMatchObject({ lifetimeMs: 0, noCache: true });
  });

  it('reads Age, stale-while-revalidate, stale-if-error and Vary', () => {
    const { fresh } = check({ cacheControl: 'max-age=60, stale-while-revalidate=30, stale-if-error=300', age: '7', vary: 'Accept-Encoding, accept-language' });
    expect(fresh).toMatchObject({ initialAgeMs: 7000, staleWhileRevalidateMs: 30_000, staleIfErrorMs: 300_000, vary: ['accept-encoding', 'accept-language'] });
  });
});

describe('initial age (RFC 9111 §4.2.3)', () => {
  const at = Date.UTC(2025, 0, 1, 12, 0, 0, 500);
  const ago = (s: number) => new Date(at - 500 - s * 1000).toUTCString();
  const age = (over: Partial<ResponseFacts>) => check({ cacheControl: 'max-age=60', requestTime: at, responseTime: at, ...over }).fresh.initialAgeMs;

  it('is the larger of the apparent age (arrival minus Date) and Age plus the request\'s time', () => {
    expect(age({ date: ago(100) })).toBe(100_000);
    expect(age({ date: ago(100), age: '7' })).toBe(100_000);
    expect(age({ date: ago(3), age: '7' })).toBe(7000);
    // The time the request took counts with Age (response_delay).
    expect(age({ date: ago(0), age: '7', requestTime: at - 2000 })).toBe(9000);
    expect(age({ requestTime: at - 250 })).toBe(250);
  });

  it('a Date of this second, in the future (origin clock ahead), absent or invalid adds nothing', () => {
    expect(age({ date: ago(0) })).toBe(0);
    expect(age({ date: ago(-30) })).toBe(0);
    expect(age({})).toBe(0);
    expect(age({ date: 'yesterday' })).toBe(0);
  });

  it('a repeated Age counts with its largest value; values that are not delta-seconds are ignored', () => {
    expect(age({ age: '100, 5' })).toBe(100_000);
    expect(age({ age: '5, 100' })).toBe(100_000);
    expect(age({ age: 'soon, 7' })).toBe(7000);
    expect(age({ age: 'soon' })).toBe(0);
  });

  it('a repeated Date counts with the value that leaves the least freshness', () => {
    // max-age: the earlier Date, the larger apparent age.
    expect(age({ date: `${ago(100)}, ${ago(0)}` })).toBe(100_000);
    expect(age({ date: `${ago(0)}, ${ago(100)}` })).toBe(100_000);
    // Expires: the later Date, the shorter lifetime (Expires - Date), whichever line came last.
    const expires = new Date(at - 500 + 60_000).toUTCString();
    for (const date of [`${ago(0)}, ${ago(100)}`, `${ago(100)}, ${ago(0)}`]) {
      const f = check({ expires, date, age: '30', requestTime: at, responseTime: at }).fresh;
      expect(f.lifetimeMs - f.initialAgeMs, date).toBe(30_000);
    }
  });
});

describe('validators', () => {
  it('If-None-Match uses weak comparison and lists; * matches any ETag', () => {
    expect(etagMatches('"a"', '"a"')).toBe(true);
    expect(etagMatches('W/"a"', '"a"')).toBe(true);
    expect(etagMatches('"x", "a"', 'W/"a"')).toBe(true);
    expect(etagMatches('"b"', '"a"')).toBe(false);
    expect(etagMatches('*', '"a"')).toBe(true);
    expect(etagMatches('*', null)).toBe(false);
  });

  it('If-Modified-Since compares dates', () => {
    const lm = new Date(Date.now() - 60_000).toUTCString();
    expect(notModifiedSince(new Date().toUTCString(), lm)).toBe(true);
    expect(notModifiedSince(new Date(Date.now() - 120_000).toUTCString(), lm)).toBe(false);
    expect(notModifiedSince('garbage', lm)).toBe(false);
    expect(notModifiedSince(lm, null)).toBe(false);
  });

  it('a 304 refreshes the entry only when its ETag (else Last-Modified) and Vary are the entry\'s', () => {
    const lm = new Date(Date.UTC(2020, 0, 1)).toUTCString();
    const match = (f: Partial<ResponseFacts>, etag: string | null, lastModified: string | null = null, vary: string[] = []) =>
      notModifiedMatches(facts({ status: 304, ...f }), etag, lastModified, vary);
    expect(match({ etag: '"a"' }, '"a"')).toBe(true);
    expect(match({ etag: '"b"' }, '"a"')).toBe(false);
    expect(match({ etag: '"a"' }, null, lm)).toBe(false);
    // Weak comparison, as for If-None-Match: W/"a" and "a" are the same version.
    expect(match({ etag: '"a"' }, 'W/"a"')).toBe(true);
    expect(match({ etag: 'W/"a"' }, '"a"')).toBe(true);
    // Without an ETag, Last-Modified decides (as a date).
    expect(match({ lastModified: lm }, '"a"', new Date(Date.UTC(2020, 0, 1)).toUTCString())).toBe(true);
    expect(match({ lastModified: new Date(Date.UTC(2021, 0, 1)).toUTCString() }, null, lm)).toBe(false);
    expect(match({ lastModified: lm }, '"a"', null)).toBe(false);
    // Neither: the answer to the validators ugate sent.
    expect(match({}, '"a"', lm)).toBe(true);
    // Vary: absent keeps the entry's; present must name the same fields.
    expect(match({ etag: '"a"', vary: 'Accept-Encoding' }, '"a"', null, ['accept-encoding'])).toBe(true);
    expect(match({ etag: '"a"' }, '"a"', null, ['accept-encoding'])).toBe(true);
    expect(match({ etag: '"a"', vary: 'Accept-Language' }, '"a"', null, [])).toBe(false);
    expect(match({ etag: '"a"', vary: 'accept-encoding, accept-language' }, '"a"', null, ['accept-encoding'])).toBe(false);
    expect(match({ etag: '"a"', vary: '*' }, '"a"', null, [])).toBe(false);
  });

  it('parseVary', () => {
    expect(parseVary(null)).toEqual([]);
    expect(parseVary('B, a, b')).toEqual(['a', 'b']);
    expect(parseVary('*')).toBeNull();
  });
});

describe('stale on an origin error (RFC 9111 §4.2.4, RFC 5861 §4)', () => {
  // Stored with max-age=10, stale-if-error=60; asked 30 s old (20 s stale).
  const entry = { lifetimeMs: 10_000, staleIfErrorMs: 60_000, mustRevalidate: false, noCache: false };
  const allows = (req: string, e: Partial<typeof entry> = {}, ageS = 30) => staleOnErrorAllows({ ...entry, ...e }, parseCacheControl(req), ageS * 1000);

  it('within the origin\'s stale-if-error, for a request that did not ask for fresh', () => {
    expect(allows('')).toBe(true);
    expect(allows('', {}, 71)).toBe(false);
    expect(allows('', { staleIfErrorMs: 0 })).toBe(false);
  });

  it('not for a request with no-cache, max-age or min-fresh', () => {
    for (const req of ['no-cache', 'max-age=0', 'max-age=3600', 'min-fresh=1']) expect(allows(req), req).toBe(false);
  });

  it('the request\'s own stale-if-error permits it and bounds it, whatever else the request or the origin said', () => {
    expect(allows('no-cache, stale-if-error=60')).toBe(true);
    expect(allows('stale-if-error=60', { staleIfErrorMs: 0 })).toBe(true);
    expect(allows('stale-if-error=10')).toBe(false);
  });

  it('a request max-stale permits it within its bound, and past it refuses even the origin\'s stale-if-error', () => {
    expect(allows('max-stale')).toBe(true);
    expect(allows('max-stale=25')).toBe(true);
    expect(allows('max-stale=5')).toBe(false);
    expect(allows('max-stale=5, stale-if-error=60')).toBe(true);
  });

  it('never when the response forbids stale', () => {
    expect(allows('stale-if-error=60', { mustRevalidate: true })).toBe(false);
    expect(allows('', { noCache: true })).toBe(false);
  });
});

describe('max-stale (RFC 9111 §5.2.1.2)', () => {
  // Stored with max-age=10; asked 30 s old (20 s stale).
  const entry = { lifetimeMs: 10_000, staleIfErrorMs: 0, mustRevalidate: false, noCache: false };
  const allows = (req: string, e: Partial<typeof entry> = {}, ageS = 30) => maxStaleAllows({ ...entry, ...e }, parseCacheControl(req), ageS * 1000);

  it('takes staleness up to its value, any without one', () => {
    expect(allows('max-stale')).toBe(true);
    expect(allows('max-stale=20')).toBe(true);
    expect(allows('max-stale=19')).toBe(false);
    expect(allows('')).toBe(false);
  });

  it('not with request no-cache or min-fresh; a request max-age still bounds the age', () => {
    expect(allows('max-stale, no-cache')).toBe(false);
    expect(allows('max-stale, min-fresh=1')).toBe(false);
    expect(allows('max-stale, max-age=30')).toBe(true);
    expect(allows('max-stale, max-age=29')).toBe(false);
  });

  it('never for a response that forbids stale (must-revalidate, proxy-revalidate, s-maxage, no-cache)', () => {
    expect(allows('max-stale', { mustRevalidate: true })).toBe(false);
    expect(allows('max-stale', { noCache: true })).toBe(false);
    // What the stored entry's flag is made of.
    for (const cc of ['max-age=10, must-revalidate', 'max-age=10, proxy-revalidate', 's-maxage=10']) expect(check({ cacheControl: cc }).fresh.mustRevalidate, cc).toBe(true);
  });
});
