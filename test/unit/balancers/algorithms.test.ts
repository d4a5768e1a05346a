// What each algorithm promises beyond the shared suite.
import { describe, expect, it } from 'vitest';
import { BK_EWMA_US, BK_HEALTHY, BK_IN_FLIGHT } from '../../../src/shared/layout';
import type { HashBalancer } from '../../../workers/balancers/hash';
import { exchange, fixture, urls } from './fixtures';

describe('weighted (smooth weighted round robin)', () => {
  it('3:1 weights give exactly 3:1 in every window of 4 (sliding, not only aligned)', () => {
    const f = fixture('weighted', ['http://10.0.0.1:80 weight=3', 'http://10.0.0.2:80 weight=1']);
    const seq = Array.from({ length: 400 }, () => f.pick()!.index);
    for (let i = 0; i + 4 <= seq.length; i++) {
      expect(seq.slice(i, i + 4).filter((b) => b === 0).length).toBe(3);
    }
  });

  it('5:1:1 is spread, not bursty (nginx: a a b a c a a)', () => {
    const f = fixture('weighted', ['http://a:1 weight=5', 'http://b:1 weight=1', 'http://c:1 weight=1']);
    const seq = Array.from({ length: 70 }, () => 'abc'[f.pick()!.index]).join('');
    expect(seq.slice(0, 7)).toBe('aabacaa');
    expect(seq.split('a').length - 1).toBe(50);
  });
});

describe('least-conn', () => {
  it('picks the backend with the fewest in flight (shared counts), relative to weight', () => {
    const f = fixture('least-conn', urls(3));
    const [a, b, c] = f.backends;
    Atomics.store(a.state, a.row + BK_IN_FLIGHT, 5);
    Atomics.store(b.state, b.row + BK_IN_FLIGHT, 1);
    Atomics.store(c.state, c.row + BK_IN_FLIGHT, 3);
    for (let i = 0; i < 10; i++) expect(f.pick()).toBe(b);
    const w = fixture('least-conn', ['http://a:1 weight=4', 'http://b:1']);
    Atomics.store(w.backends[0].state, w.backends[0].row + BK_IN_FLIGHT, 3);
    Atomics.store(w.backends[1].state, w.backends[1].row + BK_IN_FLIGHT, 1);
    expect(w.pick()).toBe(w.backends[0]); // 3/4 < 1/1
  });
});

describe('least-time (power of two choices on EWMA)', () => {
  it('sends most requests to the faster backend', () => {
    const f = fixture('least-time', urls(3));
    const [a, b, c] = f.backends;
    Atomics.store(a.state, a.row + BK_EWMA_US, 1000);
    Atomics.store(b.state, b.row + BK_EWMA_US, 50_000);
    Atomics.store(c.state, c.row + BK_EWMA_US, 50_000);
    let fast = 0;
    for (let i = 0; i < 3000; i++) if (f.pick() === a) fast++;
    // With two random choices the fastest wins every pair it is in: 2/3 of picks.
    expect(fast / 3000).toBeGreaterThan(0.55);
    expect(fast / 3000).toBeLessThan(0.8);
  });
});

describe('hash (consistent, virtual nodes)', () => {
  const keys = Array.from({ length: 4000 }, (_, i) => `user-${i}`);
  const withKey = (k: string) => exchange('127.0.0.1', ['x-user', k]);

  it('the same key always goes to the same backend; keys spread evenly', () => {
    const f = fixture('hash', urls(5), { 'hash-key': 'header:X-User' });
    const counts = [0, 0, 0, 0, 0];
    for (const k of keys) {
      const b = f.pick(withKey(k))!;
      expect(f.pick(withKey(k))).toBe(b);
      counts[b.index]++;
    }
    for (const n of counts) expect(Math.abs(n - 800)).toBeLessThan(800 * 0.3);
  });

  it('removing one of N backends moves about 1/N of the keys, and only its keys', () => {
    const N = 5;
    const f = fixture('hash', urls(N), { 'hash-key': 'header:x-user' });
    const before = keys.map((k) => f.pick(withKey(k))!);
    const gone = f.backends[2];
    Atomics.store(gone.state, gone.row + BK_HEALTHY, 0);
    const after = keys.map((k) => f.pick(withKey(k))!);
    let moved = 0;
    keys.forEach((_, i) => {
      if (before[i] !== after[i]) {
        moved++;
        expect(before[i]).toBe(gone);
      }
    });
    expect(Math.abs(moved / keys.length - 1 / N)).toBeLessThan(0.06);
    // It comes back: the same keys return to it.
    Atomics.store(gone.state, gone.row + BK_HEALTHY, 1);
    expect(keys.map((k) => f.pick(withKey(k))!)).toEqual(before);
  });

  it('reads cookie keys and falls back to the client IP', () => {
    const f = fixture('hash', urls(3), { 'hash-key': 'cookie:session' });
    const h = f.balancer as HashBalancer;
    expect(h.key(exchange('1.2.3.4', ['cookie', 'a=1; session=abc; b=2']))).toBe('abc');
    expect(h.key(exchange('1.2.3.4', ['cookie', 'sessionx=1']))).toBe('1.2.3.4');
  });
});

describe('sticky', () => {
  it('pins with a cookie, honours it, and re-pins when the pinned backend is down', () => {
    const f = fixture('sticky', urls(3));
    const first = exchange();
    const b = f.pick(first)!;
    expect(first.stickyCookie).toMatch(/^ugate_sticky=\w+/);
    const cookie = first.stickyCookie!.split(';')[0];
    for (let i = 0; i < 20; i++) {
      const x = exchange('127.0.0.1', ['cookie', `other=1; ${cookie}`]);
      expect(f.pick(x)).toBe(b);
      expect(x.stickyCookie).toBeNull();
    }
    Atomics.store(b.state, b.row + BK_HEALTHY, 0);
    const x = exchange('127.0.0.1', ['cookie', cookie]);
    const other = f.pick(x)!;
    expect(other).not.toBe(b);
    expect(x.stickyCookie).toBe(other.stickyCookie);
  });
});
