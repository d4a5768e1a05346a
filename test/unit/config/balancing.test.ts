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
    // Bounded: a 2 MB path would go in every check's request line.
    expect(fieldError(() => buildConfig({ upstream: [UP], 'health-path': '/' + 'a'.repeat(2048) }, null))).toBe('health-path: a path of 2049 characters is longer than 2048');
    expect(buildConfig({ upstream: [UP], 'health-path': '/' + 'a'.repeat(2047) }, null).routes[0].lb.healthPath).toHaveLength(2048);
    expect(fieldError(() => buildConfig({ upstream: [UP], 'retry-budget': '150' }, null))).toBe('retry-budget: 150 is above the maximum 100');
    expect(fieldError(() => buildConfig({ routes: [{ path: '/a', upstream: [UP], 'hash-key': 'x' }] }, null))).toBe(
      'routes[0].hash-key: "x" is not ip, header:NAME or cookie:NAME',
    );
    expect(fieldError(() => buildConfig({ routes: [{ path: '/a', upstream: [UP], balance: 'x' }] }, null))).toContain('routes[0].balance: "x"');
  });

  it('refuses a health-timeout not shorter than health-interval while checks are on, naming both settings', () => {
    const on = { upstream: [UP], 'health-path': '/h' };
    expect(fieldError(() => buildConfig({ ...on, 'health-interval': '1s' }, null))).toBe('health-interval: "1s" must be longer than health-timeout ("2s", the default)');
    expect(fieldError(() => buildConfig({ ...on, 'health-timeout': '5s' }, null))).toBe('health-timeout: "5s" must be shorter than health-interval ("5s", the default)');
    expect(fieldError(() => buildConfig({ ...on, 'health-timeout': '3s', 'health-interval': 2000 }, null))).toBe('health-timeout: "3s" must be shorter than health-interval (2000)');
    // Shorter by a millisecond is enough.
    expect(buildConfig({ ...on, 'health-timeout': '999ms', 'health-interval': '1s' }, null).routes[0].lb).toMatchObject({ healthTimeoutMs: 999, healthIntervalMs: 1000 });
  });

  it('per route: the route\'s own setting is named, and a top-level pair only a route puts to use names that route', () => {
    const route = (r: Record<string, unknown>) => ({ routes: [{ path: '/a', upstream: [UP], ...r }] });
    expect(fieldError(() => buildConfig({ 'health-path': '/h', ...route({ 'health-timeout': '6s' }) }, null))).toBe(
      'routes[0].health-timeout: "6s" must be shorter than health-interval ("5s", the default)',
    );
    expect(fieldError(() => buildConfig({ 'health-path': '/h', 'health-timeout': '1500ms', ...route({ 'health-interval': '1s' }) }, null))).toBe(
      'routes[0].health-interval: "1s" must be longer than health-timeout ("1500ms")',
    );
    expect(fieldError(() => buildConfig({ 'health-interval': '1s', ...route({ 'health-path': '/h' }) }, null))).toBe(
      'health-interval: "1s" must be longer than health-timeout ("2s", the default) (health checks on in routes[0])',
    );
    // A route that fixes the pair for itself is fine.
    expect(buildConfig({ 'health-path': '/h', 'health-interval': '1s', 'health-timeout': '500ms', ...route({ 'health-interval': '2s' }) }, null).routes[0].lb).toMatchObject({ healthIntervalMs: 2000, healthTimeoutMs: 500 });
  });

  it('with active checks off (health-path off, the default) the pair is not used, so not refused', () => {
    expect(buildConfig({ upstream: [UP], 'health-interval': '1s', 'health-timeout': '10s' }, null).routes[0].lb).toMatchObject({ healthPath: null, healthIntervalMs: 1000, healthTimeoutMs: 10_000 });
    expect(buildConfig({ 'health-path': '/h', routes: [{ path: '/a', upstream: [UP], 'health-path': 'off', 'health-interval': '1s' }] }, null).routes[0].lb.healthPath).toBeNull();
  });
});
