// Stage "cache-lookup": answer GET/HEAD from the worker's L1 cache, synchronously.
//
//   fresh entry                    → served here (X-Cache: HIT, Age), or 304 for a matching validator
//   stale, within s-w-r            → served (X-Cache: STALE), refreshed once in the background
//   stale, within its max-stale    → served (X-Cache: STALE), not refreshed
//   only-if-cached, none usable    → 504 UGATE_ERR_NOT_CACHED, never upstream (after L2, if any)
//   a fill for this key in flight  → the request waits for it (coalesced); TAKEN
//   otherwise                      → passes on as the leader of a new fill (X-Cache: MISS);
//                                    a stale entry's validators go upstream (revalidation)
//
// Requests with a body, Range requests and Cache-Control: no-store pass through untouched.
import { primaryKey, pushValidators, withoutConditionals } from '../cache/cache';
import { CacheFill } from '../cache/fill';
import { clientAcceptsStale, emptyDirectives, maxStaleAllows, NO_DIRECTIVES, parseCacheControl, type Directives } from '../cache/policy';
import { ageMs, serveEntry } from '../cache/serve';
import type { Exchange } from '../exchange';
import { TAKEN } from '../stage';
import { dropConnectionNamed } from './upstream';
import { E } from '../../src/shared/errors';
import { respondError } from '../respond';

/** Request fields the cache looks at; one reused object (the stage is synchronous). */
const req = { cacheControl: null as string | null, pragma: null as string | null, authorization: false, range: false };

export function cacheLookup(x: Exchange): number {
  const cache = x.worker.cache;
  if (cache === null || cache === undefined) return 0;
  const method = x.method;
  if (method !== 'GET' && method !== 'HEAD') {
    // An unsafe method may change the resource: drop the stored copy (RFC 9111 §4.4).
    if (method === 'POST' || method === 'PUT' || method === 'DELETE' || method === 'PATCH') {
      const primary = primaryKey(x.host, x.target);
      cache.store.deleteResource(primary);
      // And from L2: else the next lookup here misses L1, finds the old copy in Redis and serves it.
      if (cache.l2 !== null) cache.l2.deleteResource(primary);
    }
    return 0;
  }
  if (x.contentLength > 0 || x.transferEncoding !== null) return 0;
  // Fields the client names in Connection never reach the origin (upstream drops them): drop them
  // now, or a Vary on one would file the origin's answer to a request without it under the
  // client's value, and serve it to requests that really carry that value (cache poisoning).
  if (x.connection !== null) dropConnectionNamed(x);
  scanRequest(x.headers);
  if (req.range) return 0;
  let d: Readonly<Directives> = NO_DIRECTIVES;
  if (req.cacheControl !== null) d = parseCacheControl(req.cacheControl);
  else if (req.pragma !== null && req.pragma.toLowerCase().includes('no-cache')) {
    // HTTP/1.0 clients say Pragma: no-cache (RFC 9111 §5.4).
    const pragma = emptyDirectives();
    pragma.noCache = true;
    d = pragma;
  }
  if (d.noStore) return 0;

  const primary = primaryKey(x.host, x.target);
  const key = cache.keyFor(x.headers, primary);
  const entry = cache.store.get(key);
  const now = Date.now();
  if (entry !== undefined) {
    const age = ageMs(entry, now);
    if (cache.isFresh(entry, d, now)) {
      cache.stats.hits++;
      serveEntry(x, entry, 'HIT', now);
      return TAKEN;
    }
    // A request with no-cache, max-age or min-fresh wants a response fresh by its measure; without
    // max-stale a stale one is not what it asked for (RFC 9111 §5.2.1), and stale-while-revalidate
    // only lets the cache answer those that did not say (RFC 5861 §3).
    if (clientAcceptsStale(d) && !entry.mustRevalidate && !entry.noCache && entry.staleWhileRevalidateMs > 0 && age < entry.lifetimeMs + entry.staleWhileRevalidateMs) {
      cache.stats.stale++;
      // Refresh first: its backend is picked with the client's request, and a balancer may
      // read the client's address, which uWS forbids once the response is sent.
      cache.refreshInBackground(x, entry);
      serveEntry(x, entry, 'STALE', now);
      return TAKEN;
    }
    // The client takes this much staleness without revalidation (RFC 9111 §5.2.1.2).
    if (maxStaleAllows(entry, d, age)) {
      cache.stats.stale++;
      serveEntry(x, entry, 'STALE', now);
      return TAKEN;
    }
  }
  // only-if-cached (RFC 9111 §5.2.1.7): a stored response or 504, never the origin. An L1 entry
  // that could not answer it is the newest copy there is; with no entry, L2 is still asked (the
  // fill's leader then ends in notCachedAfterL2). It does not wait on a fill in flight either:
  // that is a trip to the origin, whose failure would answer 502, not "not cached".
  if (d.onlyIfCached && (entry !== undefined || cache.l2 === null || method === 'HEAD' || cache.inflight.has(key))) {
    cache.stats.misses++;
    respondError(x, E.NOT_CACHED);
    return TAKEN;
  }
  const pending = cache.inflight.get(key);
  if (pending !== undefined) {
    cache.stats.coalesced++;
    x.cacheStatus = 'MISS';
    // Kept for an origin error: whether this request may have a stale entry is its own say.
    x.cacheDirectives = d;
    pending.waiters.push(x);
    return TAKEN;
  }
  cache.stats.misses++;
  x.cacheStatus = 'MISS';
  // A HEAD response has no body to fill an entry with: it passes through.
  if (method === 'HEAD') return 0;

  const revalidating = entry !== undefined && (entry.etag !== null || entry.lastModified !== null);
  // The fill knows the entry: to revalidate it, to answer an origin error with it, and to drop it
  // (L1 and L2) if the new answer may not be stored.
  const fill = new CacheFill(cache, key, primary, x.target, x, entry ?? null, revalidating, d, req.authorization);
  fill.leaderHeaders = x.headers;
  // The fill asks for the full response, or with the stored validators: never with the client's
  // own (a 304 for the client's copy cannot fill the cache). The client still gets its 304 from the entry.
  const headers = withoutConditionals(x.headers);
  if (revalidating) pushValidators(headers, entry!);
  x.headers = headers;
  x.cacheFill = fill;
  cache.inflight.set(key, fill);
  if (entry === undefined && cache.l2 !== null) {
    // Parked until L2 answers (bounded by --cache-l2-timeout); onAborted is already registered.
    void cache.lookupL2(fill);
    return TAKEN;
  }
  return 0;
}

function scanRequest(h: readonly string[]): void {
  req.cacheControl = null;
  req.pragma = null;
  req.authorization = false;
  req.range = false;
  for (let i = 0; i < h.length; i += 2) {
    switch (h[i]) {
      case 'cache-control':
        req.cacheControl = req.cacheControl === null ? h[i + 1] : req.cacheControl + ', ' + h[i + 1];
        break;
      case 'pragma':
        req.pragma = h[i + 1];
        break;
      case 'authorization':
        req.authorization = true;
        break;
      case 'range':
        req.range = true;
        break;
    }
  }
}
