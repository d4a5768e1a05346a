// One suite, every balancer: the same promises whatever the algorithm.
import { describe, expect, it } from 'vitest';
import { BALANCE_ALGORITHMS } from '../../../src/config/options';
import { BK_DRAINED, BK_EJECTED_UNTIL, BK_HEALTHY } from '../../../src/shared/layout';
import { exchange, fixture, urls } from './fixtures';

/** Distinct clients, so key-based balancers (hash, sticky without cookie) spread too. */
function clients(n: number) {
  return Array.from({ length: n }, (_, i) => exchange(`10.1.${(i >> 8) & 255}.${i & 255}`));
}

describe.each(BALANCE_ALGORITHMS)('balancer %s', (algorithm) => {
  it('returns null when no backend is usable', () => {
    const f = fixture(algorithm, urls(3));
    for (const b of f.backends) Atomics.store(b.state, b.row + BK_HEALTHY, 0);
    expect(f.pick()).toBeNull();
    expect(f.balancer.pick(exchange(), [])).toBeNull();
  });

  it('spreads requests over every backend', () => {
    const f = fixture(algorithm, urls(4));
    const counts = new Map<string, number>();
    for (const x of clients(800)) {
      const b = f.pick(x)!;
      counts.set(b.config.url, (counts.get(b.config.url) ?? 0) + 1);
    }
    expect(counts.size).toBe(4);
    for (const n of counts.values()) expect(n).toBeGreaterThan(100);
  });

  it('only returns usable backends: not down, drained or ejected', () => {
    const f = fixture(algorithm, urls(4));
    const [a, b, c] = f.backends;
    Atomics.store(a.state, a.row + BK_HEALTHY, 0);
    Atomics.store(b.state, b.row + BK_DRAINED, 1);
    Atomics.store(c.state, c.row + BK_EJECTED_UNTIL, f.table.now() + 60_000);
    for (const x of clients(200)) expect(f.pick(x)).toBe(f.backends[3]);
  });

  it('uses backups only when every primary is out', () => {
    const f = fixture(algorithm, [...urls(2), 'http://10.0.0.9:80 backup']);
    for (const x of clients(200)) expect(f.pick(x)!.config.backup).toBe(false);
    for (const b of f.backends.slice(0, 2)) Atomics.store(b.state, b.row + BK_HEALTHY, 0);
    for (const x of clients(50)) expect(f.pick(x)!.config.url).toBe('http://10.0.0.9:80');
  });

  it('an ejected backend comes back when its ejection ends', () => {
    const f = fixture(algorithm, urls(2));
    const [a] = f.backends;
    Atomics.store(a.state, a.row + BK_EJECTED_UNTIL, f.table.now() - 1);
    const seen = new Set(clients(200).map((x) => f.pick(x)));
    expect(seen.has(a)).toBe(true);
  });
});
