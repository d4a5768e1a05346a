import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, E, ERRORS, errorSpec } from '../../../src/shared/errors';

const README = path.resolve(__dirname, '../../../README.md');

describe('ERRORS table', () => {
  it('has unique codes that all start with UGATE_ERR_', () => {
    const codes = ERRORS.map((e) => e.code);
    expect(new Set(codes).size).toBe(codes.length);
    for (const c of codes) expect(c).toMatch(/^UGATE_ERR_[A-Z0-9_]+$/);
  });

  it('starts with NONE (id 0) and maps every other entry to a 4xx/5xx status', () => {
    expect(ERRORS[0].code).toBe('UGATE_ERR_NONE');
    expect(E.NONE).toBe(0);
    for (const e of ERRORS) {
      if (e.code === 'UGATE_ERR_NONE') continue;
      expect(e.status, e.code).toBeGreaterThanOrEqual(400);
      expect(e.status, e.code).toBeLessThan(600);
    }
  });

  it('gives every error a non-empty reason and a known source', () => {
    for (const e of ERRORS) {
      if (e.code === 'UGATE_ERR_NONE') continue;
      expect(e.reason.trim().length, e.code).toBeGreaterThan(0);
      expect(['client', 'upstream', 'internal']).toContain(e.source);
    }
  });

  it('pins the statuses clients rely on', () => {
    expect(ERRORS[E.NO_ROUTE].status).toBe(404);
    expect(ERRORS[E.BODY_TOO_LARGE].status).toBe(413);
    expect(ERRORS[E.HEADERS_TOO_LARGE].status).toBe(431);
    expect(ERRORS[E.UPSTREAM_CONNECT].status).toBe(502);
    expect(ERRORS[E.NO_BACKEND].status).toBe(503);
    expect(ERRORS[E.UPSTREAM_HEADERS_TIMEOUT].status).toBe(504);
    expect(ERRORS[E.INTERNAL].status).toBe(500);
  });

  it('E maps each short name to its index in ERRORS', () => {
    const e = E as Record<string, number>;
    expect(Object.keys(e)).toHaveLength(ERRORS.length);
    ERRORS.forEach((spec, i) => {
      const short = spec.code.slice('UGATE_ERR_'.length);
      expect(e[short], short).toBe(i);
    });
    expect(Object.isFrozen(E)).toBe(true);
  });

  it('errorSpec returns the entry, and INTERNAL for unknown ids', () => {
    expect(errorSpec(E.NO_ROUTE).code).toBe('UGATE_ERR_NO_ROUTE');
    expect(errorSpec(9999).code).toBe('UGATE_ERR_INTERNAL');
    expect(errorSpec(-1).code).toBe('UGATE_ERR_INTERNAL');
  });
});

describe('ConfigError', () => {
  it('carries the field and prefixes the message with it', () => {
    const err = new ConfigError('headers-timeout', '"x" is not a duration');
    expect(err).toBeInstanceOf(Error);
    expect(err.field).toBe('headers-timeout');
    expect(err.code).toBe('UGATE_ERR_CONFIG');
    expect(err.message).toBe('headers-timeout: "x" is not a duration');
  });
});

describe('README documents the error codes', () => {
  // Expected to fail until README.md exists and lists every code.
  it('mentions every code except NONE and INTERNAL', () => {
    expect(existsSync(README), 'README.md exists').toBe(true);
    const text = readFileSync(README, 'utf8');
    const missing = ERRORS.map((e) => e.code)
      .filter((c) => c !== 'UGATE_ERR_NONE' && c !== 'UGATE_ERR_INTERNAL')
      .filter((c) => !new RegExp(`\\b${c}\\b`).test(text));
    expect(missing).toEqual([]);
  });
});
