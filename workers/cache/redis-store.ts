// L2: entries shared through Redis by every worker and every ugate process.
//
// Redis must never make a request fail or wait long: every read races a short timer
// (--cache-l2-timeout) and counts as a miss when it loses; while the connection is down,
// commands fail at once (no offline queue) and ioredis reconnects in the background; a Redis
// that stops answering without closing is taken as down (socketTimeout), so commands cannot pile up.
// Failures are counted (ugate_cache_l2_errors_total) and logged at most once per interval.
import Redis from 'ioredis';
import { Packr } from 'msgpackr';
import { log } from '../../src/log';
import type { CacheEntry } from './store';

const ENTRY_PREFIX = 'ugate:c:';
const VARY_PREFIX = 'ugate:v:';
const FORMAT = 1;
/** Kept this long past the end of its usefulness, so a stale entry can still be revalidated. */
const KEEP_FOR_REVALIDATION_S = 60;
const LOG_INTERVAL_MS = 10_000;
/** A Redis that sends nothing back for this long (or 4 × --cache-l2-timeout, if longer) while
 * commands wait is taken as down: the connection is dropped, what waited fails, and ioredis
 * reconnects. */
const DEAD_AFTER_MS = 1000;

const packr = new Packr({ useRecords: false });

export interface L2Stats {
  l2Errors: number;
}

export class RedisL2 {
  private readonly redis: Redis;
  private lastLog = 0;
  private suppressed = 0;

  constructor(url: string, private readonly timeoutMs: number, private readonly stats: L2Stats, private readonly who: string) {
    this.redis = new Redis(url, {
      // Fail fast while disconnected instead of queueing: the request goes on with L1 only.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 1000,
      retryStrategy: (times) => Math.min(100 * times, 2000),
      lazyConnect: false,
      // A Redis that stalls without closing (hung, or a network that drops packets) keeps the
      // connection up, and every command sent meanwhile waited on it for good, a SET holding its
      // whole entry: a worker grew by each cache miss's body (8,000 misses of 20 KB: +390 MB)
      // until Redis answered again, if ever.
      socketTimeout: Math.max(DEAD_AFTER_MS, 4 * timeoutMs),
    });
    this.redis.on('error', (err: Error) => this.failed('connection', err));
  }

  /** The entry stored under `key`, or (for a resource whose variants L1 does not know) under the
   * key its Vary names give; null on a miss, an error or a timeout. */
  async get(key: string, primary: string, varyKnown: boolean, keyForVary: (names: string[]) => string): Promise<CacheEntry | null> {
    try {
      if (varyKnown || key !== primary) return await this.getEntry(key);
      const [raw, vary] = await this.withTimeout(this.redis.mgetBuffer(ENTRY_PREFIX + key, VARY_PREFIX + primary));
      if (raw !== null) return decodeEntry(raw);
      if (vary === null) return null;
      const names = JSON.parse(vary.toString('utf8')) as string[];
      return names.length === 0 ? null : await this.getEntry(keyForVary(names));
    } catch (err) {
      this.failed('get', err as Error);
      return null;
    }
  }

  private async getEntry(key: string): Promise<CacheEntry | null> {
    const raw = await this.withTimeout(this.redis.getBuffer(ENTRY_PREFIX + key));
    return raw === null ? null : decodeEntry(raw);
  }

  /** Fire and forget: L1 already has the entry. */
  set(e: CacheEntry): void {
    const ttl = Math.ceil((e.lifetimeMs + Math.max(e.staleWhileRevalidateMs, e.staleIfErrorMs)) / 1000) + KEEP_FOR_REVALIDATION_S;
    const m = this.redis.multi();
    m.set(ENTRY_PREFIX + e.key, encodeEntry(e), 'EX', ttl);
    if (e.vary.length > 0) m.set(VARY_PREFIX + e.primary, JSON.stringify(e.vary), 'EX', ttl);
    m.exec().catch((err: Error) => this.failed('set', err));
  }

  /** Fire and forget: an entry known to be outdated. */
  delete(key: string): void {
    this.redis.del(ENTRY_PREFIX + key).catch((err: Error) => this.failed('delete', err));
  }

  /** Fire and forget, after an unsafe method on the resource: its plain entry and its Vary
   * names go, so this worker's next lookup (L1 no longer knows the names either) misses L2 too
   * instead of bringing the old copy back. Commands run in order on this connection, so a
   * later GET from this worker sees the deletion. */
  deleteResource(primary: string): void {
    this.redis.del(ENTRY_PREFIX + primary, VARY_PREFIX + primary).catch((err: Error) => this.failed('delete', err));
  }

  close(): void {
    this.redis.disconnect();
  }

  private withTimeout<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      p.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (err) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  private failed(op: string, err: Error): void {
    this.stats.l2Errors++;
    const now = Date.now();
    if (now - this.lastLog < LOG_INTERVAL_MS) {
      this.suppressed++;
      return;
    }
    const more = this.suppressed > 0 ? ` (${this.suppressed} more since the last report)` : '';
    this.lastLog = now;
    this.suppressed = 0;
    log('warn', `${this.who}: L2 cache (Redis) ${op} failed: ${err.message}; serving from L1 only${more}`);
  }
}

function encodeEntry(e: CacheEntry): Buffer {
  return packr.pack([
    FORMAT, e.key, e.primary, e.target, e.status, e.statusLine, e.names, e.values, e.body, e.responseTime, e.initialAgeMs,
    e.lifetimeMs, e.staleWhileRevalidateMs, e.staleIfErrorMs, e.mustRevalidate, e.noCache, e.etag, e.lastModified, e.vary,
  ]);
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function decodeEntry(raw: Buffer): CacheEntry | null {
  const a = packr.unpack(raw) as unknown[];
  if (!Array.isArray(a) || a[0] !== FORMAT) return null;
  const body = asBuffer(a[8] as Uint8Array);
  return {
    key: a[1] as string,
    primary: a[2] as string,
    target: a[3] as string,
    status: a[4] as number,
    statusLine: a[5] as string,
    names: a[6] as string[],
    values: (a[7] as Uint8Array[]).map(asBuffer),
    body,
    size: 0, // set by the caller before it goes into L1
    responseTime: a[9] as number,
    initialAgeMs: a[10] as number,
    lifetimeMs: a[11] as number,
    staleWhileRevalidateMs: a[12] as number,
    staleIfErrorMs: a[13] as number,
    mustRevalidate: a[14] as boolean,
    noCache: a[15] as boolean,
    etag: a[16] as string | null,
    lastModified: a[17] as string | null,
    vary: a[18] as string[],
  };
}

/** Redis glob with the pattern characters of `s` escaped. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

/** Purge matching entries from Redis (main thread, for POST /cache/purge). Returns how many. */
export async function purgeRedis(url: string, match: { url?: string; prefix?: string }, timeoutMs = 5000): Promise<number> {
  const redis = new Redis(url, { enableOfflineQueue: true, maxRetriesPerRequest: 1, connectTimeout: 1000, retryStrategy: () => null, lazyConnect: true });
  redis.on('error', () => {});
  const deadline = Date.now() + timeoutMs;
  try {
    await redis.connect();
    const patterns =
      match.url !== undefined
        ? [`${ENTRY_PREFIX}*\n${globEscape(match.url)}`, `${ENTRY_PREFIX}*\n${globEscape(match.url)}\n*`]
        : [`${ENTRY_PREFIX}*\n${globEscape(match.prefix ?? '/')}*`];
    let removed = 0;
    for (const pattern of patterns) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
        cursor = next;
        if (keys.length > 0) removed += await redis.del(...keys);
      } while (cursor !== '0' && Date.now() < deadline);
    }
    return removed;
  } finally {
    redis.disconnect();
  }
}
