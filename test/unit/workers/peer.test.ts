// The client address as X-Forwarded-For, trusted-proxy checks and IP hashing see it.
import { isIPv6 } from 'node:net';
import { describe, expect, it } from 'vitest';
import { addressText } from '../../../workers/peer';

/** Bytes of an IPv6 address written with all eight groups. */
function v6(full: string): Uint8Array {
  const b = new Uint8Array(16);
  full.split(':').forEach((g, i) => {
    const n = parseInt(g, 16);
    b[2 * i] = n >> 8;
    b[2 * i + 1] = n & 0xff;
  });
  return b;
}

describe('addressText', () => {
  it('IPv4, and IPv4-mapped IPv6 (a dual-stack listener) as dotted quads', () => {
    expect(addressText(new Uint8Array([203, 0, 113, 7]))).toBe('203.0.113.7');
    expect(addressText(v6('0:0:0:0:0:ffff:c000:0201'))).toBe('192.0.2.1');
  });

  it('IPv6 in RFC 5952 form: lower case, no leading zeros, the longest zero run (first of equals) as ::, never a single group', () => {
    const cases: [string, string][] = [
      ['0:0:0:0:0:0:0:1', '::1'],
      ['0:0:0:0:0:0:0:0', '::'],
      ['2001:0DB8:0:0:0:0:0:1', '2001:db8::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
      ['fe80:0:0:0:0:0:0:0', 'fe80::'],
      ['0:0:0:0:0:fffe:0:1', '::fffe:0:1'],
    ];
    for (const [full, text] of cases) {
      expect(addressText(v6(full)), full).toBe(text);
      expect(isIPv6(text)).toBe(true);
    }
  });
});
