// What RFC 9111 lets a shared cache store, and for how long. Pure functions over parsed
// header values, so they are unit-tested without sockets.

/** Cache-Control directives ugate understands; -1 = absent. */
export interface Directives {
  maxAge: number;
  sMaxAge: number;
  staleWhileRevalidate: number;
  staleIfError: number;
  minFresh: number;
  /** Request max-stale: seconds of staleness the client takes; Infinity when it gave no value. */
  maxStale: number;
  noStore: boolean;
  noCache: boolean;
  private: boolean;
  public: boolean;
  mustRevalidate: boolean;
  proxyRevalidate: boolean;
  onlyIfCached: boolean;
}

export function emptyDirectives(): Directives {
  return {
    maxAge: -1, sMaxAge: -1, staleWhileRevalidate: -1, staleIfError: -1, minFresh: -1, maxStale: -1,
    noStore: false, noCache: false, private: false, public: false, mustRevalidate: false, proxyRevalidate: false, onlyIfCached: false,
  };
}

/** No directives: the usual request. Shared, never written to. */
export const NO_DIRECTIVES: Readonly<Directives> = Object.freeze(emptyDirectives());

/** Parse a Cache-Control value (request or response) into `into`. Unknown directives are ignored. */
export function parseCacheControl(value: string, into: Directives = emptyDirectives()): Directives {
  let i = 0;
  const n = value.length;
  while (i < n) {
    // One directive: token [ "=" ( token / quoted-string ) ]
    while (i < n && (value.charCodeAt(i) === 32 || value.charCodeAt(i) === 9 || value.charCodeAt(i) === 44)) i++;
    const start = i;
    while (i < n && value.charCodeAt(i) !== 61 && value.charCodeAt(i) !== 44) i++;
    const name = value.slice(start, i).trim().toLowerCase();
    // null: no "=" at all (max-stale alone means any staleness; "max-stale=" is a bad value).
    let arg: string | null = null;
    if (i < n && value.charCodeAt(i) === 61) {
      i++;
      if (value.charCodeAt(i) === 34) {
        const end = value.indexOf('"', i + 1);
        arg = value.slice(i + 1, end === -1 ? n : end);
        i = end === -1 ? n : end + 1;
        while (i < n && value.charCodeAt(i) !== 44) i++;
      } else {
        const s = i;
        while (i < n && value.charCodeAt(i) !== 44) i++;
        arg = value.slice(s, i).trim();
      }
    }
    applyDirective(into, name, arg);
  }
  return into;
}

function seconds(arg: string | null): number {
  // delta-seconds: digits only; a bad or missing value makes the directive count as 0 (the safe side).
  return arg !== null && /^\d+$/.test(arg) ? Math.min(Number(arg), 2 ** 31) : 0;
}

/** A directive's seconds, given it may have been seen before (-1: not). The same value again
 * stands; a different one gives 0. RFC 9111 §4.2.1 lets a cache use the first of conflicting
 * max-age values or consider the response stale: ugate takes stale, the reading that never keeps
 * a response longer than the origin may have meant (likewise no stale window, and for a request
 * max-age, a trip upstream). */
function secondsAgain(previous: number, value: number): number {
  return previous === -1 || previous === value ? value : 0;
}

function applyDirective(d: Directives, name: string, arg: string | null): void {
  switch (name) {
    case 'max-age': d.maxAge = secondsAgain(d.maxAge, seconds(arg)); break;
    case 's-maxage': d.sMaxAge = secondsAgain(d.sMaxAge, seconds(arg)); break;
    case 'stale-while-revalidate': d.staleWhileRevalidate = secondsAgain(d.staleWhileRevalidate, seconds(arg)); break;
    case 'stale-if-error': d.staleIfError = secondsAgain(d.staleIfError, seconds(arg)); break;
    case 'min-fresh': d.minFresh = seconds(arg); break;
    case 'max-stale': d.maxStale = secondsAgain(d.maxStale, arg === null ? Number.POSITIVE_INFINITY : seconds(arg)); break;
    case 'no-store': d.noStore = true; break;
    // no-cache="field" (qualified) is treated as plain no-cache: the conservative reading.
    case 'no-cache': d.noCache = true; break;
    case 'private': d.private = true; break;
    case 'public': d.public = true; break;
    case 'must-revalidate': d.mustRevalidate = true; break;
    case 'proxy-revalidate': d.proxyRevalidate = true; break;
    case 'only-if-cached': d.onlyIfCached = true; break;
  }
}

/** Statuses a cache may store without explicit freshness ("heuristically cacheable", RFC 9110 §15.1),
 * minus 206 (ugate does not combine ranges). Other statuses are never stored. */
const CACHEABLE_STATUS = new Set([200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]);

function isCacheableStatus(status: number): boolean {
  return CACHEABLE_STATUS.has(status);
}

/** The response fields the policy looks at, lower-case names. */
export interface ResponseFacts {
  status: number;
  cacheControl: string | null;
  expires: string | null;
  date: string | null;
  age: string | null;
  vary: string | null;
  setCookie: boolean;
  etag: string | null;
  lastModified: string | null;
  pragma: string | null;
  /** Date.now() when the request that got this response was sent, and when its head arrived. */
  requestTime: number;
  responseTime: number;
}

export function emptyFacts(status: number, now = Date.now()): ResponseFacts {
  return {
    status, cacheControl: null, expires: null, date: null, age: null, vary: null, setCookie: false, etag: null, lastModified: null, pragma: null,
    requestTime: now, responseTime: now,
  };
}

export interface StoreOptions {
  defaultTtlMs: number;
  setCookie: boolean;
}

export interface Freshness {
  /** Freshness lifetime, ms (0: stale at once, served only after revalidation). */
  lifetimeMs: number;
  /** Age the response already had when received, ms. */
  initialAgeMs: number;
  staleWhileRevalidateMs: number;
  staleIfErrorMs: number;
  /** Stale must never be served (must-revalidate, proxy-revalidate, s-maxage). */
  mustRevalidate: boolean;
  /** Every use needs revalidation (response no-cache). */
  noCache: boolean;
  /** Vary field names, lower-case, sorted; empty when none. */
  vary: string[];
}

/** Why a response is not stored, or null when it may be (with its freshness in `out`). */
export function storability(facts: ResponseFacts, request: Readonly<Directives>, hasAuthorization: boolean, opts: StoreOptions, out: Freshness): string | null {
  if (!isCacheableStatus(facts.status)) return 'status';
  if (request.noStore) return 'request no-store';
  const d = facts.cacheControl === null ? emptyDirectives() : parseCacheControl(facts.cacheControl);
  if (d.noStore) return 'no-store';
  if (d.private) return 'private';
  // RFC 9111 §3.5: a shared cache stores answers to authorized requests only when allowed explicitly.
  if (hasAuthorization && !d.public && d.sMaxAge < 0 && !d.mustRevalidate) return 'authorization';
  if (facts.setCookie && !opts.setCookie) return 'set-cookie';
  const vary = parseVary(facts.vary);
  if (vary === null) return 'vary *';
  for (let i = 0; i < vary.length; i++) if (WRITTEN_BY_UGATE.has(vary[i])) return 'vary on a field ugate writes';
  // Date is one value; given twice with different values (RFC 9111 §4.2.1 asks for the first or
  // "stale"), ugate reads the one that leaves the response least fresh: the earlier Date (the
  // larger apparent age), except under Expires, where the later one also gives the shorter
  // lifetime (Expires minus Date) and so the least freshness left.
  let dateMs = facts.date === null ? NaN : httpDateIn(facts.date, false);
  let lifetime: number;
  if (d.sMaxAge >= 0) lifetime = d.sMaxAge * 1000;
  else if (d.maxAge >= 0) lifetime = d.maxAge * 1000;
  else if (facts.expires !== null) {
    if (facts.date !== null) dateMs = httpDateIn(facts.date, true);
    const exp = parseHttpDate(facts.expires);
    // An invalid Expires (e.g. "0") means already expired (RFC 9111 §5.3).
    lifetime = Number.isNaN(exp) ? 0 : Math.max(0, exp - (Number.isNaN(dateMs) ? facts.responseTime : dateMs));
  } else if (opts.defaultTtlMs > 0) lifetime = opts.defaultTtlMs;
  else lifetime = -1;
  const noCache = d.noCache || (facts.cacheControl === null && facts.pragma !== null && /no-cache/i.test(facts.pragma));
  const hasValidator = facts.etag !== null || facts.lastModified !== null;
  // Nothing to go on: neither freshness nor a validator makes a stored copy useful.
  if (lifetime < 0 && !hasValidator) return 'no freshness';
  if (lifetime <= 0 && !hasValidator) return 'expired';
  out.lifetimeMs = noCache ? 0 : Math.max(0, lifetime);
  out.initialAgeMs = initialAgeMs(facts, dateMs);
  out.mustRevalidate = d.mustRevalidate || d.proxyRevalidate || d.sMaxAge >= 0;
  out.noCache = noCache;
  out.staleWhileRevalidateMs = d.staleWhileRevalidate > 0 ? d.staleWhileRevalidate * 1000 : 0;
  out.staleIfErrorMs = d.staleIfError > 0 ? d.staleIfError * 1000 : 0;
  out.vary = vary;
  return null;
}

/** The age a response already has on arrival: corrected_initial_age of RFC 9111 §4.2.3, as
 * written. The larger of its apparent age (our clock minus its Date, never below 0: an origin
 * clock that runs ahead gains nothing, one that lags makes its responses older, as the RFC
 * accepts) and its Age plus the time the request took. Date has whole seconds, so the arrival
 * time is cut to the second before the two are compared: else a response dated this very
 * second would already be up to 999 ms old (a max-age=1 response stale at once, half the time). */
function initialAgeMs(facts: ResponseFacts, dateMs: number): number {
  const apparent = Number.isNaN(dateMs) ? 0 : Math.max(0, Math.floor(facts.responseTime / 1000) * 1000 - dateMs);
  const corrected = ageValueMs(facts.age) + Math.max(0, facts.responseTime - facts.requestTime);
  return apparent > corrected ? apparent : corrected;
}

/** Age (RFC 9111 §5.1), ms. It is one value; repeated with different values (two field lines, or
 * one list), the largest counts: no upstream cache can make a response younger than another
 * claims it is. Values that are not delta-seconds are ignored (§5.1), and a huge one is 2^31 s (§1.2.2). */
function ageValueMs(value: string | null): number {
  if (value === null) return 0;
  let max = 0;
  for (const part of value.split(',')) {
    const t = part.trim();
    if (/^\d+$/.test(t)) max = Math.max(max, Math.min(Number(t), 2 ** 31));
  }
  return max * 1000;
}

/** What the rules for serving a stored response stale read from it (a CacheEntry has them). */
export interface StaleRules {
  readonly lifetimeMs: number;
  readonly staleIfErrorMs: number;
  readonly mustRevalidate: boolean;
  readonly noCache: boolean;
}

/** The request did not ask for a fresh response (no-cache, max-age, min-fresh: RFC 9111 §5.2.1),
 * so the origin's stale windows (stale-while-revalidate, stale-if-error) may answer it. */
export function clientAcceptsStale(d: Readonly<Directives>): boolean {
  return !d.noCache && d.maxAge < 0 && d.minFresh < 0;
}

/** May `e`, `ageMs` old, answer a request with directives `d` when the origin failed (a 5xx, or
 * no response)? RFC 9111 §4.2.4: never when the response forbids stale (no-cache,
 * must-revalidate, proxy-revalidate, s-maxage), and only when the client or the origin permits
 * it. A client that asked for fresh (no-cache, max-age, min-fresh) has not, unless it also sent
 * stale-if-error (RFC 5861 §4: a request directive too, whose scope is that request): then its
 * own value is both its permission and its bound, whatever the origin's. */
export function staleOnErrorAllows(e: StaleRules, d: Readonly<Directives>, ageMs: number): boolean {
  if (e.mustRevalidate || e.noCache) return false;
  if (d.staleIfError >= 0 && ageMs - e.lifetimeMs < d.staleIfError * 1000) return true;
  // max-stale permits stale, error or not, up to its bound: past it, the client has said no.
  if (d.maxStale >= 0) return maxStaleAllows(e, d, ageMs);
  if (d.staleIfError >= 0) return false;
  return clientAcceptsStale(d) && e.staleIfErrorMs > 0 && ageMs - e.lifetimeMs < e.staleIfErrorMs;
}

/** Does the request's max-stale (RFC 9111 §5.2.1.2) take `e`, `ageMs` old, without revalidation?
 * Within its bound (any staleness without a value); never when the response forbids stale
 * (no-cache, must-revalidate, proxy-revalidate, s-maxage: §4.2.4, §5.2.2), nor when the request
 * also says no-cache or min-fresh (it wants the origin's or a fresh answer). A request max-age
 * still bounds the age (§5.2.1.1). */
export function maxStaleAllows(e: StaleRules, d: Readonly<Directives>, ageMs: number): boolean {
  if (d.maxStale < 0 || e.mustRevalidate || e.noCache || d.noCache || d.minFresh >= 0) return false;
  if (d.maxAge >= 0 && ageMs > d.maxAge * 1000) return false;
  return ageMs - e.lifetimeMs <= d.maxStale * 1000;
}

export function emptyFreshness(): Freshness {
  return { lifetimeMs: 0, initialAgeMs: 0, staleWhileRevalidateMs: 0, staleIfErrorMs: 0, mustRevalidate: false, noCache: false, vary: [] };
}

/** Request fields ugate sets itself toward the origin (from the client's address, or the client's
 * own values only from a --trusted-proxy). They are kept out of the request fields the cache keys
 * on, so a Vary on them cannot be honoured: every client would share the first one's variant
 * (e.g. Vary: X-Forwarded-For, content chosen per client address). Such responses are not stored. */
const WRITTEN_BY_UGATE = new Set(['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'via']);

/** Vary names, lower-case and sorted; null for "Vary: *". */
export function parseVary(value: string | null): string[] | null {
  if (value === null) return [];
  const names: string[] = [];
  for (const raw of value.split(',')) {
    const n = raw.trim().toLowerCase();
    if (n === '*') return null;
    if (n !== '' && !names.includes(n)) names.push(n);
  }
  return names.sort();
}

/** If-None-Match against an ETag, weak comparison (RFC 9110 §13.1.2). */
export function etagMatches(ifNoneMatch: string, etag: string | null): boolean {
  if (ifNoneMatch.trim() === '*') return etag !== null;
  if (etag === null) return false;
  const want = weakOpaque(etag);
  for (const candidate of ifNoneMatch.split(',')) if (weakOpaque(candidate) === want) return true;
  return false;
}

function weakOpaque(tag: string): string {
  const t = tag.trim();
  return t.startsWith('W/') ? t.slice(2) : t;
}

/** May a 304 refresh the entry it revalidated (stored ETag, Last-Modified and Vary names)? Only
 * if it speaks for that representation (RFC 9111 §4.3.4): its ETag is the entry's, else its
 * Last-Modified is. ETags are compared as If-None-Match compares them (weak comparison, RFC 9110
 * §13.1.2), not strongly: nginx's gzip weakens the 200's ETag (W/"x") but not the 304's ("x"),
 * and every revalidation would fetch the body twice. A 304 with neither is taken as the answer
 * to the validators ugate sent from the entry (RFC 9110 §15.4.5 wants the ETag repeated; not
 * every origin does). A Vary in the 304 must name the fields the entry is keyed on: else it
 * speaks for another variant, and the entry's key would no longer select the right requests. */
export function notModifiedMatches(facts: ResponseFacts, etag: string | null, lastModified: string | null, vary: readonly string[]): boolean {
  if (facts.etag !== null) {
    if (etag === null || weakOpaque(facts.etag) !== weakOpaque(etag)) return false;
  } else if (facts.lastModified !== null) {
    if (lastModified === null || !sameDate(facts.lastModified, lastModified)) return false;
  }
  if (facts.vary !== null) {
    const names = parseVary(facts.vary);
    if (names === null || names.length !== vary.length) return false;
    for (let i = 0; i < names.length; i++) if (names[i] !== vary[i]) return false;
  }
  return true;
}

function sameDate(a: string, b: string): boolean {
  const ta = parseHttpDate(a);
  return Number.isNaN(ta) ? a.trim() === b.trim() : ta === parseHttpDate(b);
}

/** If-Modified-Since against Last-Modified: true when not modified since. */
export function notModifiedSince(ifModifiedSince: string, lastModified: string | null): boolean {
  if (lastModified === null) return false;
  // Not an HTTP-date: the field is ignored (RFC 9110 §13.1.3).
  const since = parseHttpDate(ifModifiedSince);
  const lm = parseHttpDate(lastModified);
  return !Number.isNaN(since) && !Number.isNaN(lm) && lm <= since;
}

/** The three HTTP-date forms (RFC 9110 §5.6.7): IMF-fixdate, obsolete RFC 850, asctime. */
const HTTP_DATE = /^(?:[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT|[A-Za-z]{6,9}, \d{2}-[A-Za-z]{3}-\d{2} \d{2}:\d{2}:\d{2} GMT|[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4})$/;

/** The same forms anywhere in a value: a Date repeated (field lines joined with ", ", or a list). */
const HTTP_DATES = new RegExp(HTTP_DATE.source.slice(1, -1), 'g');

/** The earliest HTTP-date in a value that may hold several (the latest, with `latest`); NaN
 * when there is none. */
function httpDateIn(value: string, latest: boolean): number {
  const one = parseHttpDate(value);
  if (!Number.isNaN(one)) return one;
  let out = NaN;
  for (const m of value.matchAll(HTTP_DATES)) {
    const t = parseHttpDate(m[0]);
    if (Number.isNaN(out) || (latest ? t > out : t < out)) out = t;
  }
  return out;
}

/** ms since the epoch, or NaN when `value` is not an HTTP-date. Date.parse alone is far too
 * lenient: it read "Expires: 3600" (seconds, a common mistake) as the year 3600, fresh for
 * centuries, where an invalid date must mean "already expired" (RFC 9111 §5.3). */
export function parseHttpDate(value: string): number {
  const v = value.trim();
  return HTTP_DATE.test(v) ? Date.parse(v.endsWith('GMT') ? v : v + ' GMT') : NaN;
}
