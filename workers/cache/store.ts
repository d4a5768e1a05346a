// Cache stores behind one interface. L1 is an in-memory LRU bounded by bytes, one per worker.
// A Map keeps insertion order, so "touch" is delete + set and the oldest key is the first one:
// O(1) per operation without a hand-made linked list.

/** One stored response. Headers are already filtered (no hop-by-hop, Date, Content-Length, Age). */
export interface CacheEntry {
  /** Full key: primary key plus the values of the Vary fields. */
  readonly key: string;
  /** host + "\n" + target: what Vary variants share. */
  readonly primary: string;
  /** Path and query, for purges. */
  readonly target: string;
  status: number;
  /** "200 OK": what uWS writeStatus takes. */
  statusLine: string;
  /** Response field names, lower-case, and their raw values (bytes kept as the origin sent them). */
  names: string[];
  values: Buffer[];
  readonly body: Buffer;
  /** Bytes counted against the store's limit. */
  readonly size: number;
  /** Date.now() when the response (or its last revalidation) arrived. */
  responseTime: number;
  initialAgeMs: number;
  lifetimeMs: number;
  staleWhileRevalidateMs: number;
  staleIfErrorMs: number;
  mustRevalidate: boolean;
  noCache: boolean;
  etag: string | null;
  lastModified: string | null;
  readonly vary: readonly string[];
}

export interface CacheStore {
  get(key: string): CacheEntry | undefined;
  set(entry: CacheEntry): boolean;
  delete(key: string): boolean;
  /** Vary field names last seen for a primary key ([] when the resource does not vary). */
  varyOf(primary: string): readonly string[];
  /** Removes entries whose target equals `url` (exact) or starts with `prefix`. Returns how many. */
  purge(match: { url?: string; prefix?: string }): number;
  /** Removes every variant of one resource (host + target). Returns how many. */
  deleteResource(primary: string): number;
  readonly bytes: number;
  readonly entries: number;
  evictions: number;
}

const NO_VARY: readonly string[] = [];

export class LruStore implements CacheStore {
  private readonly map = new Map<string, CacheEntry>();
  /** Per resource: the Vary names of its latest response and the keys of its stored variants. */
  private readonly varyIndex = new Map<string, { names: readonly string[]; keys: Set<string> }>();
  bytes = 0;
  evictions = 0;

  constructor(readonly maxBytes: number) {}

  get entries(): number {
    return this.map.size;
  }

  get(key: string): CacheEntry | undefined {
    const e = this.map.get(key);
    if (e !== undefined) {
      this.map.delete(key);
      this.map.set(key, e);
    }
    return e;
  }

  /** Stores the entry, evicting the least recently used ones to make room. False if it can never fit. */
  set(entry: CacheEntry): boolean {
    if (entry.size > this.maxBytes) return false;
    this.delete(entry.key);
    while (this.bytes + entry.size > this.maxBytes) {
      const oldest = this.map.keys().next().value as string;
      this.delete(oldest);
      this.evictions++;
    }
    this.map.set(entry.key, entry);
    this.bytes += entry.size;
    const v = this.varyIndex.get(entry.primary);
    if (v === undefined) this.varyIndex.set(entry.primary, { names: entry.vary, keys: new Set([entry.key]) });
    else {
      v.names = entry.vary; // the latest response's Vary decides how later requests are keyed
      v.keys.add(entry.key);
    }
    return true;
  }

  delete(key: string): boolean {
    const e = this.map.get(key);
    if (e === undefined) return false;
    this.map.delete(key);
    this.bytes -= e.size;
    const v = this.varyIndex.get(e.primary);
    if (v !== undefined) {
      v.keys.delete(key);
      if (v.keys.size === 0) this.varyIndex.delete(e.primary);
    }
    return true;
  }

  deleteResource(primary: string): number {
    const v = this.varyIndex.get(primary);
    if (v === undefined) return 0;
    let n = 0;
    for (const key of [...v.keys]) if (this.delete(key)) n++;
    return n;
  }

  varyOf(primary: string): readonly string[] {
    const v = this.varyIndex.get(primary);
    return v === undefined ? NO_VARY : v.names;
  }

  purge(match: { url?: string; prefix?: string }): number {
    let n = 0;
    for (const e of [...this.map.values()]) {
      const hit = match.url !== undefined ? e.target === match.url : match.prefix !== undefined && e.target.startsWith(match.prefix);
      if (hit && this.delete(e.key)) n++;
    }
    return n;
  }
}

/** What an entry holds of V8's heap besides its bytes: the entry object, its strings, arrays,
 * Buffer objects and Map and Vary-index slots. Measured (test/unit/cache/entry-size.test.ts):
 * ~1 KiB per entry and ~110 B per field. At 256 B and 32 B, a cache of small API answers took
 * 2.5-3x its --cache-size of heap (8 MB counted, 29 MB used), enough to run a worker out of
 * memory at a large --cache-size. */
const ENTRY_OVERHEAD = 1024;
const FIELD_OVERHEAD = 112;

/** Bytes an entry costs: body, fields, key, and the objects around them. */
export function entrySize(key: string, names: readonly string[], values: readonly Buffer[], body: Buffer): number {
  let n = body.length + key.length * 2 + ENTRY_OVERHEAD;
  for (let i = 0; i < names.length; i++) n += names[i].length + values[i].length + FIELD_OVERHEAD;
  return n;
}
