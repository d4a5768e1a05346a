// A worker's response cache: the L1 store, the fills in flight (coalescing), the counters.
// One per worker thread; nothing here is shared with another thread.
import type { Dispatcher } from 'undici';
import type { CacheConfig } from '../../src/config/config';
import type { CacheTelemetry } from '../../src/shared/telemetry-frame';
import { Exchange } from '../exchange';
import { balance, pickBackend } from '../stages/balance';
import { route } from '../stages/route';
import { holdBackend, pushForwarded } from '../stages/upstream';
import type { WorkerState } from '../worker-state';
import { E } from '../../src/shared/errors';
import { continueFrom, CACHE_RESUME } from '../pipeline';
import { respondError } from '../respond';
import { VIA } from '../http-fields';
import { BackgroundHandler, CacheFill } from './fill';
import { maxStaleAllows, NO_DIRECTIVES, type Directives } from './policy';
import { RedisL2 } from './redis-store';
import { ageMs } from './serve';
import { entrySize, LruStore, type CacheEntry, type CacheStore } from './store';

export interface CacheOptions {
  readonly maxEntry: number;
  readonly defaultTtlMs: number;
  readonly setCookie: boolean;
}


export class WorkerCache {
  readonly store: CacheStore;
  readonly options: CacheOptions;
  /** Full key → the fill whose response will answer it. */
  readonly inflight = new Map<string, CacheFill>();
  readonly stats = { hits: 0, l2Hits: 0, misses: 0, stale: 0, staleIfError: 0, revalidated: 0, coalesced: 0, stored: 0, purged: 0, l2Errors: 0 };
  private evictionsReported = 0;
  /** Shared L2 (Redis), or null. */
  readonly l2: RedisL2 | null;

  constructor(readonly config: CacheConfig, workerIndex = 0) {
    this.store = new LruStore(config.size);
    this.options = { maxEntry: config.maxEntry, defaultTtlMs: config.defaultTtlMs, setCookie: config.setCookie };
    this.l2 = config.redis === null ? null : new RedisL2(config.redis, config.l2TimeoutMs, this.stats, `worker ${workerIndex}`);
  }

  close(): void {
    if (this.l2 !== null) this.l2.close();
  }

  /** Fresh enough for this request's directives (request no-cache, max-age, min-fresh)? */
  isFresh(e: CacheEntry, d: Readonly<Directives>, now: number): boolean {
    const age = ageMs(e, now);
    if (e.noCache || age >= e.lifetimeMs || d.noCache) return false;
    // max-age=0 is how clients ask for an end-to-end check, even of a response 0 s old.
    if (d.maxAge === 0 || (d.maxAge > 0 && age > d.maxAge * 1000)) return false;
    return !(d.minFresh >= 0 && e.lifetimeMs - age < d.minFresh * 1000);
  }

  /** L1 missed and `fill` leads: ask L2 first. The leader is parked until the answer (or the
   * timeout), then served from L2, or sent upstream (revalidating L2's stale copy if it can). */
  async lookupL2(fill: CacheFill): Promise<void> {
    const x = fill.leader!;
    const headers = fill.leaderHeaders!;
    let found: CacheEntry | null = null;
    try {
      found = await this.l2!.get(fill.key, fill.primary, this.store.varyOf(fill.primary).length > 0, (names) => this.keyWithVary(headers, fill.primary, names));
    } catch {
      found = null;
    }
    if (fill.settled) return;
    if (x.clientGone) {
      fill.leaderLeftBeforeUpstream();
      return;
    }
    try {
      this.afterL2(fill, found, Date.now());
    } catch (err) {
      // A bug must not leave the leader and its waiters parked forever.
      process.stderr.write(`${new Date().toISOString()} error cache L2 resume: ${(err as Error).stack ?? err}\n`);
      respondError(x, E.INTERNAL);
    }
  }

  private afterL2(fill: CacheFill, found: CacheEntry | null, now: number): void {
    const x = fill.leader!;
    const headers = fill.leaderHeaders!;
    // A body over this process's --cache-max-entry (stored by a process with a larger limit)
    // counts as a miss: not put in L1, not served or revalidated from memory; the response
    // streams through uncached, as any too-large one does.
    if (found !== null && found.body.length <= this.options.maxEntry && this.keyWithVary(headers, fill.primary, found.vary) === found.key) {
      (found as { size: number }).size = entrySize(found.key, found.names, found.values, found.body);
      if (this.isFresh(found, fill.request, now)) {
        this.store.set(found);
        this.stats.hits++;
        this.stats.l2Hits++;
        fill.resolveFromL2(found);
        return;
      }
      if (maxStaleAllows(found, fill.request, ageMs(found, now))) {
        // Stale, but the leader's client takes it (max-stale); in L1 now, where each waiter
        // looks it up again by its own directives.
        this.store.set(found);
        this.stats.stale++;
        this.stats.l2Hits++;
        fill.resolveStaleFromL2(found);
        return;
      }
      // Not fresh for this request: the fill knows it (to fall back to on an origin error, and to
      // drop from L2 if the new answer may not be stored), and revalidates it if it can.
      fill.stale = found;
      if (found.etag !== null || found.lastModified !== null) {
        fill.revalidating = true;
        pushValidators(x.headers, found);
      }
    }
    if (fill.request.onlyIfCached) {
      this.notCachedAfterL2(fill);
      return;
    }
    continueFrom(x, CACHE_RESUME);
  }

  /** An only-if-cached leader found nothing usable in L2 either: 504, without going upstream.
   * Its waiters did not ask that: they look up again, and the first leads a fill of its own. */
  private notCachedAfterL2(fill: CacheFill): void {
    fill.leaderLeftBeforeUpstream();
    respondError(fill.leader!, E.NOT_CACHED);
  }

  /** The full key of `x`'s request: primary key plus the values of the fields the resource varies on. */
  keyFor(headers: readonly string[], primary: string): string {
    return this.keyWithVary(headers, primary, this.store.varyOf(primary));
  }

  keyWithVary(headers: readonly string[], primary: string, vary: readonly string[]): string {
    if (vary.length === 0) return primary;
    let key = primary;
    for (let i = 0; i < vary.length; i++) key += '\n' + vary[i] + ':' + joinedField(headers, vary[i]);
    return key;
  }

  /** stale-while-revalidate: refresh `e` once, without a client waiting on it. */
  refreshInBackground(x: Exchange, e: CacheEntry): void {
    if (this.inflight.has(e.key)) return;
    // The backend the client's request would get (hash and sticky keys are the client's).
    const backend = pickBackend(x);
    if (backend === null) return;
    const headers = withoutConditionals(x.headers);
    pushValidators(headers, e);
    // The X-Forwarded-* fields the client's own request would carry: without them an origin behind
    // a TLS terminator (X-Forwarded-Proto: https) answered the refresh as plain http, e.g. with a
    // cacheable 301 to https that then replaced the entry for every client (a redirect loop).
    pushForwarded(x, headers);
    const fill = new CacheFill(this, e.key, e.primary, e.target, null, e, true, NO_DIRECTIVES, false);
    this.inflight.set(e.key, fill);
    // Its own exchange: the client's is answered from the stale entry right after this.
    const bx = backgroundExchange(x.worker);
    bx.route = x.route;
    bx.backend = backend;
    fetchInBackground(bx, { path: e.target, method: 'GET', headers }, fill);
  }

  /** --cache-warm: fetch each path into this worker's cache, as a request for `host` would. */
  warm(state: WorkerState, defaultHost: string): void {
    for (const item of this.config.warm) {
      let host = defaultHost;
      let target = item;
      if (item.startsWith('http://')) {
        const u = new URL(item);
        host = u.host;
        target = u.pathname + u.search;
      }
      const x = backgroundExchange(state);
      x.method = 'GET';
      x.host = host;
      x.target = target;
      x.headers.push('host', host);
      if (route(x) !== 0 || balance(x) !== 0) continue;
      const primary = primaryKey(host, target);
      if (this.inflight.has(primary) || this.store.get(primary) !== undefined) continue;
      const fill = new CacheFill(this, primary, primary, target, null, null, false, NO_DIRECTIVES, false);
      this.inflight.set(primary, fill);
      fetchInBackground(x, { path: target, method: 'GET', headers: ['host', host, 'via', VIA] }, fill);
    }
  }

  purge(match: { url?: string; prefix?: string }): number {
    const n = this.store.purge(match);
    this.stats.purged += n;
    return n;
  }

  /** Counters since the last call (deltas), plus the store's current size and the requests
   * waiting on fills (whose clients left are dropped here, every telemetry interval). */
  takeTelemetry(): CacheTelemetry {
    let waiting = 0;
    for (const fill of this.inflight.values()) waiting += fill.dropGone();
    const s = this.stats;
    const evictions = this.store.evictions - this.evictionsReported;
    this.evictionsReported = this.store.evictions;
    const t: CacheTelemetry = {
      hits: s.hits, l2Hits: s.l2Hits, misses: s.misses, stale: s.stale + s.staleIfError, revalidated: s.revalidated, coalesced: s.coalesced,
      stored: s.stored, purged: s.purged, l2Errors: s.l2Errors, evictions, bytes: this.store.bytes, entries: this.store.entries, waiting,
    };
    s.hits = s.l2Hits = s.misses = s.stale = s.staleIfError = s.revalidated = s.coalesced = s.stored = s.purged = s.l2Errors = 0;
    return t;
  }
}

/** The exchange of a request no client waits on. No uWS response behind it: x.peer reads ''
 * (marked as without a client), so hashing on the client IP hashes the empty key. */
function backgroundExchange(worker: WorkerState): Exchange {
  const x = new Exchange(null as never, worker);
  x.clientGone = true;
  return x;
}

/** A request no client waits on, counted on x.backend like any proxied attempt (in flight,
 * half-open probe, passive health, EWMA): otherwise least-conn would not see it, and a failing
 * backend would never be ejected or its circuit opened by it. */
function fetchInBackground(x: Exchange, opts: Dispatcher.DispatchOptions, fill: CacheFill): void {
  holdBackend(x);
  x.backend!.pool.dispatch(opts, new BackgroundHandler(fill, x));
}

export function primaryKey(host: string, target: string): string {
  return host.toLowerCase() + '\n' + target;
}

/** A request field's value (repeats joined with ", "), "" when absent. */
function joinedField(h: readonly string[], name: string): string {
  let out = '';
  for (let i = 0; i < h.length; i += 2) if (h[i] === name) out = out === '' ? h[i + 1].trim() : out + ', ' + h[i + 1].trim();
  return out;
}

/** Ask the backend whether the stored entry is still current (RFC 9110 §13.1). */
export function pushValidators(headers: string[], e: CacheEntry): void {
  if (e.etag !== null) headers.push('if-none-match', e.etag);
  if (e.lastModified !== null) headers.push('if-modified-since', e.lastModified);
}

/** The client's fields minus its validators: the cache asks with its own, or for the full body. */
export function withoutConditionals(h: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < h.length; i += 2) {
    const n = h[i];
    if (n === 'if-none-match' || n === 'if-modified-since' || n === 'if-match' || n === 'if-unmodified-since' || n === 'if-range') continue;
    out.push(n, h[i + 1]);
  }
  return out;
}
