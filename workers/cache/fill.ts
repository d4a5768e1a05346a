// One upstream response on its way into the cache, and the requests waiting for it.
//
// A fill has a leader (the exchange whose upstream request it is; null for background
// refreshes and warming) and waiters (concurrent misses for the same key, coalesced).
// stream-back calls the on* hooks as the leader's response arrives. Every path ends in
// exactly one `settle`: waiters are served from the entry, released to go upstream
// themselves (not cacheable, too large, the leader's client left), or given the error.
import type { Dispatcher } from 'undici';
import { E } from '../../src/shared/errors';
import { Exchange, Phase } from '../exchange';
import { continueFrom, CACHE_LOOKUP, CACHE_RESUME } from '../pipeline';
import { respondError } from '../respond';
import { noteAnswer, noteAttemptFailed } from '../retry';
import { refuseBadStatusLine, upstreamErrorId } from '../stages/stream-back';
import { redispatch, releaseBackend } from '../stages/upstream';
import { withoutConditionals, type WorkerCache } from './cache';
import { emptyFacts, emptyFreshness, NO_DIRECTIVES, notModifiedMatches, staleOnErrorAllows, storability, type Directives, type Freshness, type ResponseFacts } from './policy';
import { ageMs, serveEntry } from './serve';
import { connectionNamed, RESPONSE_HOP_FIELDS, statusLine } from '../http-fields';
import { entrySize, type CacheEntry } from './store';

/** Response fields never stored: hop-by-hop, and those uWS or the cache write themselves. */
const NOT_STORED = new Set([...RESPONSE_HOP_FIELDS, 'age', 'x-cache', 'via']);

export class CacheFill {
  readonly waiters: Exchange[] = [];
  /** Aborts a leaderless (background) request; set by its handler's onConnect. */
  abort: ((err?: Error) => void) | null = null;
  settled = false;
  /** The leader's request fields as the client sent them (its x.headers now carry the cache's validators). */
  leaderHeaders: readonly string[] | null = null;
  /** When the request went upstream, for the response's age (RFC 9111 §4.2.3). A leader that
   * first waited on L2 counts that wait too: at most --cache-l2-timeout of age, the safe side. */
  requestTime = Date.now();
  /** When the response head arrived. */
  private responseTime = 0;
  private status = 0;
  private capturing = false;
  private names: string[] = [];
  private values: Buffer[] = [];
  private facts: ResponseFacts | null = null;
  private fresh: Freshness | null = null;
  private statusText = '';
  private body: Buffer | null = null;
  private chunks: Buffer[] | null = null;
  private received = 0;
  private expected = -1;

  constructor(
    readonly cache: WorkerCache,
    readonly key: string,
    readonly primary: string,
    readonly target: string,
    readonly leader: Exchange | null,
    /** The stored entry this request revalidates, may fall back to (stale-if-error), or replaces
     * (dropped, from L1 and L2, when the new answer may not be stored). */
    public stale: CacheEntry | null,
    public revalidating: boolean,
    readonly request: Readonly<Directives>,
    readonly hasAuthorization: boolean,
  ) {}

  // ---- hooks, in the order undici calls them ----

  /** True when the fill answered the leader from the cache itself (304 refresh, stale-if-error):
   * the caller must then ignore the rest of this response. */
  onHeaders(status: number, statusText: string, raw: Buffer[]): boolean {
    if (this.settled) return false;
    const now = Date.now();
    this.status = status;
    this.responseTime = now;
    this.scan(status, raw);
    const stale = this.stale;
    if (status === 304 && stale !== null && this.revalidating) {
      if (!notModifiedMatches(this.facts!, stale.etag, stale.lastModified, stale.vary)) {
        this.notModifiedForAnother(stale);
        return true;
      }
      this.cache.stats.revalidated++;
      this.settleRevalidated(stale, now);
      return true;
    }
    if (status >= 500 && stale !== null && this.staleOnError(stale, now, -1)) {
      this.abortUpstream();
      return true;
    }
    const fresh = emptyFreshness();
    const why = storability(this.facts!, this.request, this.hasAuthorization, this.cache.options, fresh);
    if (why !== null || this.expected > this.cache.options.maxEntry) {
      // The resource changed into something not storable: the old copy must not be served again.
      // A 5xx says nothing of the resource (RFC 9111 §4.3.3): the entry stays, for the requests
      // that may have it stale on an error (one that asked for fresh got the error).
      if (stale !== null && status < 500) this.dropEntry(stale);
      this.release();
      return false;
    }
    this.fresh = fresh;
    this.statusText = statusText;
    this.capturing = true;
    if (this.expected >= 0) this.body = Buffer.allocUnsafe(this.expected);
    else this.chunks = [];
    return false;
  }

  onData(chunk: Buffer): void {
    if (!this.capturing) return;
    const end = this.received + chunk.length;
    if (end > this.cache.options.maxEntry || (this.expected >= 0 && end > this.expected)) {
      // Too large to keep: the leader streams on uncached; waiters fetch for themselves. A chunked
      // body (no Content-Length, so onHeaders could not tell) that outgrew --cache-max-entry is
      // the resource now, and it may not be stored: the old copy goes too (L1 and L2), as when a
      // Content-Length says so up front; left, it would be served again in place of the new one.
      if (this.stale !== null && end > this.cache.options.maxEntry) this.dropEntry(this.stale);
      this.dropCapture();
      this.release();
      return;
    }
    // Copied: undici may hand out views over buffers it reuses.
    if (this.body !== null) chunk.copy(this.body, this.received);
    else this.chunks!.push(Buffer.from(chunk));
    this.received = end;
  }

  onComplete(): void {
    if (this.settled) return;
    if (!this.capturing || (this.expected >= 0 && this.received !== this.expected)) {
      this.dropCapture();
      this.release();
      return;
    }
    const body = this.body ?? (this.chunks!.length === 1 ? this.chunks![0] : Buffer.concat(this.chunks!, this.received));
    this.dropCapture();
    const entry = this.buildEntry(body);
    if (!this.cache.store.set(entry)) {
      // Within --cache-max-entry but, fields and key counted, larger than the whole store: the
      // new answer cannot be kept, and the old copy is outdated by it (L1 and L2, as when the
      // answer may not be stored at all), or it is served on in place of the new resource.
      if (this.stale !== null) this.dropEntry(this.stale);
      this.release();
      return;
    }
    this.cache.stats.stored++;
    if (this.cache.l2 !== null) this.cache.l2.set(entry);
    this.settleWithEntry(entry, 'HIT', false);
  }

  /** True when the fill answered the leader (stale-if-error, or a 304 undici rejected). */
  onError(err: Error & { code?: string }): boolean {
    if (this.settled) return false;
    const stale = this.stale;
    // undici 7 rejects a 304 that carries a Content-Length (it expects that many body bytes
    // on a bodiless status); the head was already a valid 304, so it is one.
    if (this.status === 304 && err.code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' && stale !== null && this.revalidating) {
      this.settleRevalidated(stale, Date.now());
      return true;
    }
    const leader = this.leader;
    const leaderGone = leader !== null && (leader.clientGone || leader.phase === Phase.Done);
    const errorId = this.status === 0 ? upstreamErrorId(err) || E.UPSTREAM_RESET : 0;
    if (this.status === 0 && stale !== null && !leaderGone && this.staleOnError(stale, Date.now(), errorId)) return true;
    this.dropCapture();
    // Before the head: the origin failed, and waiters get the same answer. After it, or when
    // the leader's own client left (that aborts the request), waiters try for themselves.
    if (this.status === 0 && !leaderGone) this.fail(errorId);
    else this.release(leaderGone);
    return false;
  }

  // ---- L2 (Redis) outcome, before the leader goes upstream ----

  /** L2 had an entry fresh for the leader's request: it answers the leader, and each waiter
   * whose own directives find it fresh (no-cache, max-age, min-fresh are that request's say, not
   * the leader's). The others look up again: the entry is in L1 by then, so the lookup judges
   * them as any L1 hit (stale-while-revalidate, max-stale, else the first revalidates it and the
   * rest wait for that). */
  resolveFromL2(entry: CacheEntry): void {
    if (!this.settled) this.settleWithEntry(entry, 'HIT', true, entry, true);
  }

  /** L2 had a stale entry the leader's request takes (max-stale): it answers the leader only. The
   * waiters, who may not take it, look up again (the entry is in L1 by then). */
  resolveStaleFromL2(entry: CacheEntry): void {
    if (this.settled) return;
    this.release(true);
    this.serveLeader(entry, 'STALE', Date.now());
  }

  /** The leader's client left while L2 was asked: a waiter takes over. */
  leaderLeftBeforeUpstream(): void {
    this.release(true);
  }

  /** Waiters whose client left need nothing more from the fill: dropped, they are not held for
   * as long as it lasts. Before, every request that gave up on a long fill (an origin trickling
   * a large body) stayed in the list until its end (15,000 of them: +19 MB). Returns how many
   * still wait. */
  dropGone(): number {
    let kept = 0;
    for (const w of this.waiters) if (!w.clientGone && w.phase !== Phase.Done) this.waiters[kept++] = w;
    this.waiters.length = kept;
    return kept;
  }

  /** The leader was answered with a gateway error before (or instead of) an upstream response. */
  onLeaderError(id: number): void {
    if (!this.settled) this.fail(id);
  }

  // ---- settling: exactly once ----

  private finishSettle(): void {
    this.settled = true;
    if (this.cache.inflight.get(this.key) === this) this.cache.inflight.delete(this.key);
    if (this.leader !== null) this.leader.cacheFill = null;
  }

  /** A 304 answered the revalidation: refresh the entry, serve the leader (with any cookie the
   * 304 set for it), and the waiters only if the refreshed response may still be shared. */
  private settleRevalidated(stale: CacheEntry, now: number): void {
    const r = this.refresh(stale);
    if (r.shared) {
      this.settleWithEntry(stale, 'REVALIDATED', true, r.forLeader);
      return;
    }
    // The 304 made the response private/no-store (or otherwise unstorable): it answers the
    // request that revalidated it, never the other clients coalesced on it. They go upstream.
    this.release();
    this.serveLeader(r.forLeader, 'REVALIDATED', now);
  }

  /** The 304 is for another representation than the entry (its validator or Vary differs): it
   * must not refresh it (RFC 9111 §4.3.4), and the entry is outdated, so it goes (L1 and L2).
   * The leader asks again without validators, as a plain miss, and its waiters wait for that
   * answer; a background refresh just ends (the next request fetches). */
  private notModifiedForAnother(stale: CacheEntry): void {
    this.dropEntry(stale);
    this.stale = null;
    this.revalidating = false;
    const leader = this.leader;
    if (leader === null) {
      this.release();
      return;
    }
    this.requestTime = Date.now();
    // No answer to the new send yet: an error before its head is the origin failing (every
    // waiter gets it, as onError does for a first send), not a response cut after its head.
    this.status = 0;
    redispatch(leader, withoutConditionals(leader.headers));
  }

  /** The origin failed (a 5xx, or no response; `errorId` -1 or the gateway error). Each request
   * that may have the stale entry instead, by its own directives (RFC 9111 §4.2.4, RFC 5861 §4),
   * gets it: a waiter's say is its own, not the leader's. True when the leader did: the fill is
   * settled, and the waiters that may not have it go upstream themselves (after a 5xx) or get
   * the error. False otherwise: the leader (if any) takes the origin's answer, and only the
   * waiters served stale have left the fill. */
  private staleOnError(stale: CacheEntry, now: number, errorId: number): boolean {
    const leader = this.leader;
    const age = ageMs(stale, now);
    const stats = this.cache.stats;
    const leaderToo = leader !== null && staleOnErrorAllows(stale, this.request, age);
    if (leaderToo) {
      this.finishSettle();
      stats.staleIfError++;
      this.serveLeader(stale, 'STALE', now);
    }
    let kept = 0;
    for (const w of this.waiters) {
      if (w.clientGone || w.phase === Phase.Done) continue;
      // The waiter's key must be the entry's (an L2 entry may name a Vary the lookup did not know).
      if (staleOnErrorAllows(stale, w.cacheDirectives ?? NO_DIRECTIVES, age) && this.cache.keyWithVary(w.headers, stale.primary, stale.vary) === stale.key) {
        stats.staleIfError++;
        serveEntry(w, stale, 'STALE', now);
      } else if (!leaderToo) this.waiters[kept++] = w;
      else if (errorId < 0) continueFrom(w, CACHE_RESUME);
      else respondError(w, errorId);
    }
    this.waiters.length = kept;
    return leaderToo;
  }

  /** `judgeEach`: a waiter gets the entry only if its own directives find it fresh (no-cache,
   * max-age, min-fresh are its say, not the leader's); the others look up again. */
  private settleWithEntry(entry: CacheEntry, label: string, serveLeader: boolean, leaderEntry: CacheEntry = entry, judgeEach = false): void {
    this.finishSettle();
    const now = Date.now();
    if (serveLeader) this.serveLeader(leaderEntry, label, now);
    for (const w of this.waiters) {
      if (w.clientGone || w.phase === Phase.Done) continue;
      // A Vary first learnt from this response may put a waiter on another variant.
      if (this.cache.keyFor(w.headers, entry.primary) !== entry.key) continueFrom(w, CACHE_RESUME);
      else if (judgeEach && !this.cache.isFresh(entry, w.cacheDirectives ?? NO_DIRECTIVES, now)) continueFrom(w, CACHE_LOOKUP);
      else serveEntry(w, entry, label, now);
    }
    this.waiters.length = 0;
  }

  /** The leader (if the fill has one) gets `entry`, judged by the fields its client sent. */
  private serveLeader(entry: CacheEntry, label: string, now: number): void {
    const leader = this.leader;
    if (leader !== null) serveEntry(leader, entry, label, now, this.leaderHeaders ?? leader.headers);
  }

  /** Waiters go upstream on their own; or, when only the leader's client left (`lookAgain`),
   * they look up again: the first leads a new fill and the others wait for it. */
  private release(lookAgain = false): void {
    if (this.settled) return;
    this.finishSettle();
    const from = lookAgain ? CACHE_LOOKUP : CACHE_RESUME;
    for (const w of this.waiters) if (!w.clientGone && w.phase !== Phase.Done) continueFrom(w, from);
    this.waiters.length = 0;
  }

  private fail(id: number): void {
    this.finishSettle();
    for (const w of this.waiters) respondError(w, id === 0 ? E.UPSTREAM_RESET : id);
    this.waiters.length = 0;
  }

  // ---- helpers ----

  private abortUpstream(): void {
    const abort = this.leader !== null ? this.leader.abortUpstream : this.abort;
    if (abort !== null) abort();
  }

  /** An entry known to be outdated leaves L1 and L2: left in Redis, it comes back to every
   * process (this one too, once L1 evicts or forgets it) that misses L1. */
  private dropEntry(e: CacheEntry): void {
    this.cache.store.delete(e.key);
    if (this.cache.l2 !== null) this.cache.l2.delete(e.key);
  }

  private dropCapture(): void {
    this.capturing = false;
    this.body = null;
    this.chunks = null;
  }

  /** One pass over the raw head: the facts the policy needs, and the fields worth storing. */
  private scan(status: number, raw: Buffer[]): void {
    this.expected = -1;
    const f = emptyFacts(status, this.responseTime);
    f.requestTime = this.requestTime;
    const names: string[] = [];
    const values: Buffer[] = [];
    let dropNamed: string[] | null = null;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i].toString('latin1').toLowerCase();
      const v = raw[i + 1];
      switch (name) {
        case 'cache-control': f.cacheControl = f.cacheControl === null ? v.toString('latin1') : f.cacheControl + ', ' + v.toString('latin1'); break;
        // Two different Expires: joined they are no HTTP-date, so the response counts as
        // already expired (RFC 9111 §4.2.1: use the first, or consider it stale).
        case 'expires': f.expires = again(f.expires, v.toString('latin1')); break;
        // Repeated Date or Age values are all kept: the policy reads the least fresh of them
        // (the last alone could make a stale response fresh).
        case 'date': f.date = again(f.date, v.toString('latin1')); break;
        case 'age': f.age = again(f.age, v.toString('latin1')); break;
        case 'vary': f.vary = f.vary === null ? v.toString('latin1') : f.vary + ', ' + v.toString('latin1'); break;
        case 'set-cookie': f.setCookie = true; break;
        case 'etag': f.etag = v.toString('latin1'); break;
        case 'last-modified': f.lastModified = v.toString('latin1'); break;
        case 'pragma': f.pragma = v.toString('latin1'); break;
        case 'content-length': this.expected = Number(v.toString('latin1')); break;
        case 'connection':
          dropNamed = connectionNamed(v.toString('latin1'), dropNamed);
          break;
      }
      if (!NOT_STORED.has(name)) {
        names.push(name);
        values.push(Buffer.from(v));
      }
    }
    if (dropNamed !== null) {
      for (let i = names.length - 1; i >= 0; i--) {
        if (dropNamed.includes(names[i])) {
          names.splice(i, 1);
          values.splice(i, 1);
        }
      }
    }
    this.facts = f;
    this.names = names;
    this.values = values;
  }

  private buildEntry(body: Buffer): CacheEntry {
    const fresh = this.fresh!;
    const f = this.facts!;
    // The key depends on the Vary this response announced.
    const key = this.leaderHeaders !== null ? this.cache.keyWithVary(this.leaderHeaders, this.primary, fresh.vary) : this.key;
    return {
      key,
      primary: this.primary,
      target: this.target,
      status: this.status,
      statusLine: statusLine(this.status, this.statusText),
      names: this.names,
      values: this.values,
      body,
      size: entrySize(key, this.names, this.values, body),
      responseTime: this.responseTime,
      initialAgeMs: fresh.initialAgeMs,
      lifetimeMs: fresh.lifetimeMs,
      staleWhileRevalidateMs: fresh.staleWhileRevalidateMs,
      staleIfErrorMs: fresh.staleIfErrorMs,
      mustRevalidate: fresh.mustRevalidate,
      noCache: fresh.noCache,
      etag: f.etag,
      lastModified: f.lastModified,
      vary: fresh.vary,
    };
  }

  /** A 304 refreshes the stored entry: its fields replace the stored ones, freshness restarts.
   * `shared`: the refreshed response may still answer other requests (false: it was dropped).
   * `forLeader`: what the revalidating request gets (the entry plus the 304's Set-Cookie). */
  private refresh(e: CacheEntry): { shared: boolean; forLeader: CacheEntry } {
    const names = this.names;
    // Set-Cookie in a 304 is the revalidating client's own cookie: merged into the shared entry it
    // would be handed to every later client (a session leak). Like a 200 with Set-Cookie, it is
    // kept out of the store unless --cache-set-cookie; only the revalidating request gets it.
    const keepCookies = this.cache.options.setCookie;
    let cookies: Buffer[] | null = null;
    for (let i = 0; i < names.length; i++) {
      const n = names[i];
      if (n === 'set-cookie' && !keepCookies) {
        (cookies ??= []).push(this.values[i]);
        continue;
      }
      for (let j = e.names.length - 1; j >= 0; j--) {
        if (e.names[j] === n) {
          e.names.splice(j, 1);
          e.values.splice(j, 1);
        }
      }
    }
    for (let i = 0; i < names.length; i++) {
      if (names[i] === 'set-cookie' && !keepCookies) continue;
      e.names.push(names[i]);
      e.values.push(this.values[i]);
    }
    let forLeader = e;
    if (cookies !== null) {
      forLeader = { ...e, names: e.names.concat(cookies.map(() => 'set-cookie')), values: e.values.concat(cookies) };
    }
    const merged = emptyFacts(e.status, this.responseTime);
    merged.requestTime = this.requestTime;
    merged.cacheControl = headerText(e, 'cache-control');
    merged.expires = headerText(e, 'expires');
    merged.etag = headerText(e, 'etag');
    merged.lastModified = headerText(e, 'last-modified');
    merged.vary = headerText(e, 'vary');
    merged.date = this.facts!.date;
    merged.age = this.facts!.age;
    const fresh = emptyFreshness();
    if (storability(merged, NO_DIRECTIVES, false, { ...this.cache.options, setCookie: true }, fresh) !== null) {
      this.dropEntry(e);
      return { shared: false, forLeader };
    }
    e.responseTime = this.responseTime;
    e.initialAgeMs = fresh.initialAgeMs;
    e.lifetimeMs = fresh.lifetimeMs;
    e.staleWhileRevalidateMs = fresh.staleWhileRevalidateMs;
    e.staleIfErrorMs = fresh.staleIfErrorMs;
    e.mustRevalidate = fresh.mustRevalidate;
    e.noCache = fresh.noCache;
    e.etag = merged.etag;
    e.lastModified = merged.lastModified;
    // Back in (it may have been evicted meanwhile), as the most recently used. Out first, then its
    // size recounted: the 304's fields may have grown it, and an entry kept at its old size let
    // the store hold more than --cache-size (delete must subtract the size it was added with).
    this.cache.store.delete(e.key);
    (e as { size: number }).size = entrySize(e.key, e.names, e.values, e.body);
    this.cache.store.set(e);
    if (this.cache.l2 !== null) this.cache.l2.set(e);
    return { shared: true, forLeader };
  }
}

/** A field that has one value, seen again: the same value stands, another is kept beside it. */
function again(seen: string | null, text: string): string {
  return seen === null || seen === text ? text : seen + ', ' + text;
}

function headerText(e: CacheEntry, name: string): string | null {
  let out: string | null = null;
  for (let i = 0; i < e.names.length; i++) {
    if (e.names[i] === name) out = out === null ? e.values[i].toString('latin1') : out + ', ' + e.values[i].toString('latin1');
  }
  return out;
}

/** undici handler for requests no client waits on directly: background refreshes, warming.
 * `x` carries the backend accounting (held by holdBackend before dispatch): the request
 * feeds passive health and gives back its in-flight slot like any proxied attempt. */
export class BackgroundHandler implements Dispatcher.DispatchHandler {
  private answered = false;

  constructor(
    private readonly fill: CacheFill,
    private readonly x: Exchange,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    this.fill.abort = abort;
  }

  onHeaders(status: number, rawHeaders: Buffer[], _resume: () => void, statusText: string): boolean {
    if (refuseBadStatusLine(status, statusText, this.fill.abort)) return false;
    if (status < 200) return true;
    this.answered = true;
    noteAnswer(this.x, status);
    this.fill.onHeaders(status, statusText, rawHeaders);
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.fill.onData(chunk);
    return true;
  }

  onComplete(): void {
    releaseBackend(this.x);
    this.fill.onComplete();
  }

  onError(err: Error): void {
    // After a head, the answer was already counted (as for a client's request).
    if (!this.answered) noteAttemptFailed(this.x);
    releaseBackend(this.x);
    this.fill.onError(err);
  }
}
