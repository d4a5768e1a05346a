// A worker's response cache: the L1 store, the fills in flight (coalescing), the counters.
// One per worker thread; nothing here is shared with another thread.
import type { CacheConfig } from '../../src/config/config';
import type { CacheTelemetry } from '../../src/shared/telemetry-frame';
import { Exchange } from '../exchange';
import { balance } from '../stages/balance';
import { route } from '../stages/route';
import type { WorkerState } from '../worker-state';
import { BackgroundHandler, CacheFill } from './fill';
import { emptyDirectives } from './policy';
import { ageMs } from './serve';
import { LruStore, type CacheEntry, type CacheStore } from './store';

export interface CacheOptions {
  readonly maxEntry: number;
  readonly defaultTtlMs: number;
  readonly setCookie: boolean;
}

const VIA = '1.1 ugate';

export class WorkerCache {
  readonly store: CacheStore;
  readonly options: CacheOptions;
  /** Full key → the fill whose response will answer it. */
  readonly inflight = new Map<string, CacheFill>();
  readonly stats = { hits: 0, misses: 0, stale: 0, staleIfError: 0, revalidated: 0, coalesced: 0, stored: 0, purged: 0, l2Errors: 0 };
  private evictionsReported = 0;

  constructor(readonly config: CacheConfig) {
    this.store = new LruStore(config.size);
    this.options = { maxEntry: config.maxEntry, defaultTtlMs: config.defaultTtlMs, setCookie: config.setCookie };
  }

  /** The full key of `x`'s request: primary key plus the values of the fields the resource varies on. */
  keyFor(headers: readonly string[], primary: string): string {
    return this.keyWithVary(headers, primary, this.store.varyOf(primary));
  }

  keyWithVary(headers: readonly string[], primary: string, vary: readonly string[]): string {
    if (vary.length === 0) return primary;
    let key = primary;
    for (let i = 0; i < vary.length; i++) key += '\n' + vary[i] + ':' + requestHeader(headers, vary[i]);
    return key;
  }

  staleOnErrorAllowed(e: CacheEntry, now: number): boolean {
    return !e.mustRevalidate && e.staleIfErrorMs > 0 && ageMs(e, now) < e.lifetimeMs + e.staleIfErrorMs;
  }

  /** stale-while-revalidate: refresh `e` once, without a client waiting on it. */
  refreshInBackground(x: Exchange, e: CacheEntry): void {
    if (this.inflight.has(e.key)) return;
    if (balance(x) !== 0) return;
    const headers = withoutConditionals(x.headers);
    if (e.etag !== null) headers.push('if-none-match', e.etag);
    if (e.lastModified !== null) headers.push('if-modified-since', e.lastModified);
    headers.push('via', VIA);
    const fill = new CacheFill(this, e.key, e.primary, e.target, null, e, true, emptyDirectives(), false);
    this.inflight.set(e.key, fill);
    x.backend!.pool.dispatch({ path: e.target, method: 'GET', headers }, new BackgroundHandler(fill));
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
      const x = new Exchange(null as never, state);
      x.method = 'GET';
      x.host = host;
      x.target = target;
      x.headers.push('host', host);
      if (route(x) !== 0 || balance(x) !== 0) continue;
      const primary = primaryKey(host, target);
      if (this.inflight.has(primary) || this.store.get(primary) !== undefined) continue;
      const fill = new CacheFill(this, primary, primary, target, null, null, false, emptyDirectives(), false);
      this.inflight.set(primary, fill);
      x.backend!.pool.dispatch({ path: target, method: 'GET', headers: ['host', host, 'via', VIA] }, new BackgroundHandler(fill));
    }
  }

  purge(match: { url?: string; prefix?: string }): number {
    const n = this.store.purge(match);
    this.stats.purged += n;
    return n;
  }

  /** Counters since the last call (deltas), plus the store's current size. */
  takeTelemetry(): CacheTelemetry {
    const s = this.stats;
    const evictions = this.store.evictions - this.evictionsReported;
    this.evictionsReported = this.store.evictions;
    const t: CacheTelemetry = {
      hits: s.hits, misses: s.misses, stale: s.stale + s.staleIfError, revalidated: s.revalidated, coalesced: s.coalesced,
      stored: s.stored, purged: s.purged, l2Errors: s.l2Errors, evictions, bytes: this.store.bytes, entries: this.store.entries,
    };
    s.hits = s.misses = s.stale = s.staleIfError = s.revalidated = s.coalesced = s.stored = s.purged = s.l2Errors = 0;
    return t;
  }
}

export function primaryKey(host: string, target: string): string {
  return host.toLowerCase() + '\n' + target;
}

/** A request field's value (repeats joined with ", "), "" when absent. */
export function requestHeader(h: readonly string[], name: string): string {
  let out = '';
  for (let i = 0; i < h.length; i += 2) if (h[i] === name) out = out === '' ? h[i + 1].trim() : out + ', ' + h[i + 1].trim();
  return out;
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
