// Balancing, health and retry settings: defaults, per-route overrides, errors naming the field.
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildConfig, readConfigFile } from '../../../src/config/config';
import { ConfigError } from '../../../src/shared/errors';

const UP = 'http://127.0.0.1:9000';

function fieldError(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('no error');
}

describe('balancing config', () => {
  it('the example file builds, every route with its algorithm', () => {
    const file = resolve(__dirname, '../../../config/balancing.example.yaml');
    const cfg = buildConfig(readConfigFile(file), file);
    const by = Object.fromEntries(cfg.routes.map((r) => [r.name, r]));
    expect(by.default.lb.balance).toBe('round-robin');
    expect(by.default.backends.map((b) => b.backup)).toEqual([false, false, true]);
    expect(by.weighted.backends.map((b) => b.weight)).toEqual([3, 1]);
    expect(by.api.lb).toMatchObject({ balance: 'least-conn', circuitFailures: 5, circuitCooldownMs: 10_000, healthPath: '/healthz' });
    expect(by.search.lb.balance).toBe('least-time');
    expect(by.cache.lb).toMatchObject({ balance: 'hash', hashKey: 'header:x-object-id' });
    expect(by.app.lb).toMatchObject({ balance: 'sticky', healthPath: '/status', retries: 0, retryBudgetPercent: 20 });
  });

  it('flags set every route default; durations and counts are checked', () => {
    const cfg = buildConfig({ upstream: [UP], balance: 'hash', 'hash-key': 'cookie:sid', 'health-interval': '250ms', 'max-fails': '0', 'retry-budget': '5' }, null);
    expect(cfg.routes[0].lb).toMatchObject({ balance: 'hash', hashKey: 'cookie:sid', healthIntervalMs: 250, maxFails: 0, retryBudgetPercent: 5 });
  });

  it('errors name the field and the bad value', () => {
    expect(fieldError(() => buildConfig({ upstream: [UP], balance: 'fastest' }, null))).toBe(
      'balance: "fastest" is not one of round-robin, weighted, least-conn, least-time, hash, sticky',
    );
    expect(fieldError(() => buildConfig({ upstream: [UP], 'hash-key': 'body' }, null))).toBe('hash-key: "body" is not ip, header:NAME or cookie:NAME');
    expect(fieldError(() => buildConfig({ upstream: [UP], 'health-path': 'healthz' }, null))).toContain('health-path: "healthz" must be');
    expect(fieldError(() => buildConfig({ upstream: [UP], 'retry-budget': '150' }, null))).toBe('retry-budget: 150 is above the maximum 100');
    expect(fieldError(() => buildConfig({ routes: [{ path: '/a', upstream: [UP], 'hash-key': 'x' }] }, null))).toBe(
      'routes[0].hash-key: "x" is not ip, header:NAME or cookie:NAME',
    );
    expect(fieldError(() => buildConfig({ routes: [{ path: '/a', upstream: [UP], balance: 'x' }] }, null))).toContain('routes[0].balance: "x"');
  });
});
