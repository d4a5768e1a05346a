import { describe, expect, it } from 'vitest';
import { formatBytes, formatDuration, parseDuration, parseSize } from '../../../src/shared/units';

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['5s', 5000],
    ['1.5m', 90_000],
    ['1h', 3_600_000],
    ['0', 0],
    ['250', 250],
    ['  2s  ', 2000],
    ['5 s', 5000],
    ['5S', 5000],
    ['0.5s', 500],
  ])('%j -> %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it('takes bare numbers as milliseconds', () => {
    expect(parseDuration(750)).toBe(750);
    expect(parseDuration(0)).toBe(0);
    expect(parseDuration(1.4)).toBe(1);
  });

  it.each([
    ['5 parsecs'],
    ['-1s'],
    [''],
    ['   '],
    ['1e3s'],
    ['1e3'],
    ['5d'],
    ['s'],
    ['5s5'],
    ['1.s'],
    ['.5s'],
    ['0x10'],
    [null],
    [undefined],
    [{}],
    [{ ms: 5 }],
    [['5s']],
    [true],
    [-1],
    [Number.NaN],
    [Number.POSITIVE_INFINITY],
  ])('%j -> undefined', (input) => {
    expect(parseDuration(input)).toBeUndefined();
  });
});

describe('parseSize', () => {
  it.each([
    ['16kb', 16 * 1024],
    ['1mb', 1024 * 1024],
    ['2g', 2 * 1024 ** 3],
    ['512b', 512],
    ['512', 512],
    ['0', 0],
    ['1.5kb', 1536],
    ['1KB', 1024],
    ['4k', 4096],
    ['3kib', 3072],
    ['1gb', 1024 ** 3],
    ['10 mb', 10 * 1024 * 1024],
  ])('%j -> %d bytes', (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });

  it('takes bare integers as bytes', () => {
    expect(parseSize(4096)).toBe(4096);
    expect(parseSize(0)).toBe(0);
  });

  it.each([
    ['5 parsecs'],
    ['-1s'],
    ['-1kb'],
    [''],
    ['1e3s'],
    ['1e3'],
    ['16tb'],
    ['kb'],
    ['1.5.kb'],
    [null],
    [undefined],
    [{}],
    [[16]],
    [false],
    [-1],
    [1.5],
    [Number.NaN],
    ['99999999999999999999gb'],
  ])('%j -> undefined', (input) => {
    expect(parseSize(input)).toBeUndefined();
  });
});

describe('formatBytes / formatDuration', () => {
  it('uses the largest exact unit', () => {
    expect(formatBytes(16 * 1024)).toBe('16kb');
    expect(formatBytes(10 * 1024 * 1024)).toBe('10mb');
    expect(formatBytes(2 * 1024 ** 3)).toBe('2gb');
    expect(formatBytes(1500)).toBe('1500b');
    expect(formatDuration(5000)).toBe('5s');
    expect(formatDuration(1500)).toBe('1500ms');
  });

  it('round-trips through the parsers', () => {
    for (const n of [0, 512, 1024, 98_304, 10 * 1024 * 1024]) expect(parseSize(formatBytes(n))).toBe(n);
    for (const ms of [0, 250, 5000, 60_000]) expect(parseDuration(formatDuration(ms))).toBe(ms);
  });
});
