// The L1 bound is in bytes of memory: entrySize must count what an entry really holds of the
// heap (its body and fields, and the JS objects around them), measured here on entries shaped
// as the cache fill builds them (fields and body copied into their own Buffers) in a real LRU.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { entrySize, LruStore, type CacheEntry } from '../../../workers/cache/store';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const FIELDS: [string, string][] = [
  ['content-type', 'application/json'],
  ['cache-control', 'public, max-age=60'],
  ['etag', '"e12345"'],
  ['vary', 'accept-encoding'],
  ['x-request-id', 'abcdef0123456789'],
  ['last-modified', 'Mon, 23 Nov 2026 01:00:00 GMT'],
];

function entry(i: number, fields: number, bodyBytes: number): CacheEntry {
  const target = `/api/items?id=${i}`;
  const primary = `api.example.com:8080\n${target}`;
  const key = primary + '\naccept-encoding=gzip, br';
  const names: string[] = [];
  const values: Buffer[] = [];
  for (let f = 0; f < fields; f++) {
    names.push(FIELDS[f][0]);
    values.push(Buffer.from(Buffer.from(FIELDS[f][1], 'latin1')));
  }
  const body = Buffer.from(Buffer.alloc(bodyBytes, i & 0xff));
  return {
    key, primary, target, status: 200, statusLine: '200 OK', names, values, body,
    size: entrySize(key, names, values, body), responseTime: Date.now(), initialAgeMs: 0, lifetimeMs: 60_000,
    staleWhileRevalidateMs: 0, staleIfErrorMs: 0, mustRevalidate: false, noCache: false, etag: `"e${i}"`, lastModified: null, vary: ['accept-encoding'],
  };
}

function used(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

describe('entrySize against the memory entries really take', () => {
  // Small answers are where a fixed cost per entry matters: with the old 256 B + 32 B per field
  // these counted 0.34-0.41 of what they held, so --cache-size 1gb could hold ~3 GB.
  for (const [fields, bodyBytes] of [[2, 20], [4, 100], [6, 100], [6, 1000], [6, 8000]]) {
    it(`${fields} fields, ${bodyBytes} B body: counted within 0.8-1.5x of the heap held`, () => {
      const n = 20_000;
      const store = new LruStore(Number.MAX_SAFE_INTEGER);
      const before = used();
      let counted = 0;
      for (let i = 0; i < n; i++) {
        const e = entry(i, fields, bodyBytes);
        counted += e.size;
        store.set(e);
      }
      const held = used() - before;
      expect(store.entries).toBe(n);
      expect(counted / held).toBeGreaterThan(0.8);
      expect(counted / held).toBeLessThan(1.5);
    });
  }
});
