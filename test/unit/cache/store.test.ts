// The L1 store: LRU order, byte bound, eviction counts, Vary index, purge.
import { describe, expect, it } from 'vitest';
import { entrySize, LruStore, type CacheEntry } from '../../../workers/cache/store';

function entry(target: string, bodyBytes: number, vary: string[] = [], key = 'h\n' + target): CacheEntry {
  const body = Buffer.alloc(bodyBytes, 1);
  const names = ['content-type'];
  const values = [Buffer.from('text/plain')];
  return {
    key, primary: 'h\n' + target, target, status: 200, statusLine: '200 OK', names, values, body,
    size: entrySize(key, names, values, body), responseTime: Date.now(), initialAgeMs: 0, lifetimeMs: 60_000,
    staleWhileRevalidateMs: 0, staleIfErrorMs: 0, mustRevalidate: false, noCache: false, etag: null, lastModified: null, vary,
  };
}

describe('LruStore', () => {
  it('keeps the total under maxBytes, evicting the least recently used first', () => {
    const one = entry('/a', 1000).size;
    const store = new LruStore(one * 3);
    store.set(entry('/a', 1000));
    store.set(entry('/b', 1000));
    store.set(entry('/c', 1000));
    expect(store.entries).toBe(3);
    expect(store.get('h\n/a')).toBeDefined(); // /a is now the most recent; /b the oldest
    store.set(entry('/d', 1000));
    expect(store.get('h\n/b')).toBeUndefined();
    expect(store.get('h\n/a')).toBeDefined();
    expect(store.get('h\n/c')).toBeDefined();
    expect(store.get('h\n/d')).toBeDefined();
    expect(store.evictions).toBe(1);
    expect(store.bytes).toBeLessThanOrEqual(one * 3);
  });

  it('evicts as many entries as a large one needs, and refuses one larger than the store', () => {
    const small = entry('/s1', 100).size;
    const store = new LruStore(small * 10);
    for (let i = 0; i < 10; i++) store.set(entry(`/s${i}`, 100));
    expect(store.entries).toBe(10);
    expect(store.set(entry('/big', small * 5))).toBe(true);
    expect(store.evictions).toBeGreaterThanOrEqual(5);
    expect(store.bytes).toBeLessThanOrEqual(small * 10);
    expect(store.set(entry('/huge', small * 11))).toBe(false);
    expect(store.get('h\n/big')).toBeDefined();
  });

  it('replacing an entry does not double-count its bytes', () => {
    const store = new LruStore(1_000_000);
    store.set(entry('/a', 500));
    const before = store.bytes;
    store.set(entry('/a', 500));
    expect(store.bytes).toBe(before);
    expect(store.entries).toBe(1);
    store.delete('h\n/a');
    expect(store.bytes).toBe(0);
  });

  it('remembers the Vary names per resource while any variant is stored', () => {
    const store = new LruStore(1_000_000);
    expect(store.varyOf('h\n/v')).toEqual([]);
    store.set(entry('/v', 10, ['accept-language'], 'h\n/v\naccept-language:en'));
    store.set(entry('/v', 10, ['accept-language'], 'h\n/v\naccept-language:fr'));
    expect(store.varyOf('h\n/v')).toEqual(['accept-language']);
    store.delete('h\n/v\naccept-language:en');
    expect(store.varyOf('h\n/v')).toEqual(['accept-language']);
    store.delete('h\n/v\naccept-language:fr');
    expect(store.varyOf('h\n/v')).toEqual([]);
  });

  it('deletes every variant of one resource', () => {
    const store = new LruStore(1_000_000);
    store.set(entry('/v', 10, ['accept'], 'h\n/v\naccept:a'));
    store.set(entry('/v', 10, ['accept'], 'h\n/v\naccept:b'));
    store.set(entry('/w', 10));
    expect(store.deleteResource('h\n/v')).toBe(2);
    expect(store.deleteResource('h\n/nothing')).toBe(0);
    expect(store.entries).toBe(1);
    expect(store.varyOf('h\n/v')).toEqual([]);
  });

  it('purges by exact URL or by prefix, every variant', () => {
    const store = new LruStore(1_000_000);
    store.set(entry('/p/a?x=1', 10));
    store.set(entry('/p/a', 10));
    store.set(entry('/p/b', 10, ['accept'], 'h\n/p/b\naccept:a'));
    store.set(entry('/p/b', 10, ['accept'], 'h\n/p/b\naccept:b'));
    store.set(entry('/q', 10));
    expect(store.purge({ url: '/p/a' })).toBe(1);
    expect(store.get('h\n/p/a?x=1')).toBeDefined();
    expect(store.purge({ prefix: '/p/' })).toBe(3);
    expect(store.entries).toBe(1);
    expect(store.get('h\n/q')).toBeDefined();
  });
});
