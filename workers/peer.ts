// The client's address as text, from the uWS response. Read lazily (Exchange.peer): it costs a
// getpeername syscall and an ArrayBuffer per call, and cache hits and gateway errors never
// need it; only X-Forwarded-For, trusted-proxy checks and hashing on the IP do.
import type { HttpResponse } from 'uWebSockets.js';

// IPv4 peers come as 4 raw bytes; their text form is cached (bounded) so the common case
// costs a lookup instead of a text conversion per request.
const ipv4Text = new Map<number, string>();

export function peerAddress(res: HttpResponse): string {
  return addressText(new Uint8Array(res.getRemoteAddress()));
}

/** A raw address (4 or 16 bytes, as uWS gives it) as text. */
export function addressText(b: Uint8Array): string {
  if (b.length === 4) return ipv4(b, 0);
  // An IPv4 client of a dual-stack listener ([::]) comes IPv4-mapped: ::ffff:a.b.c.d.
  if (isIpv4Mapped(b)) return ipv4(b, 12);
  return ipv6(b);
}

function ipv4(b: Uint8Array, at: number): string {
  const key = ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
  let text = ipv4Text.get(key);
  if (text === undefined) {
    text = `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
    if (ipv4Text.size >= 4096) ipv4Text.clear();
    ipv4Text.set(key, text);
  }
  return text;
}

function isIpv4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** RFC 5952 text: lower-case hex, no leading zeros, the longest run of two or more zero groups
 * (the first of equals) as "::". uWS's own text form is the full eight groups. */
function ipv6(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i] << 8) | b[i + 1]);
  let runAt = -1;
  let runLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > runLen) [runAt, runLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (from: number, to: number) => groups.slice(from, to).map((g) => g.toString(16)).join(':');
  return runAt < 0 ? hex(0, 8) : `${hex(0, runAt)}::${hex(runAt + runLen, 8)}`;
}
