// The client's address as text, from the uWS response. Read lazily (Exchange.peer): it costs a
// getpeername syscall and an ArrayBuffer per call, and cache hits and gateway errors never
// need it; only X-Forwarded-For, trusted-proxy checks and hashing on the IP do.
import type { HttpResponse } from 'uWebSockets.js';

// IPv4 peers come as 4 raw bytes; their text form is cached (bounded) so the common case
// costs a lookup instead of a text conversion per request.
const ipv4Text = new Map<number, string>();

export function peerAddress(res: HttpResponse): string {
  const raw = res.getRemoteAddress();
  if (raw.byteLength === 4) {
    const b = new Uint8Array(raw);
    const key = ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
    let text = ipv4Text.get(key);
    if (text === undefined) {
      text = `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
      if (ipv4Text.size >= 4096) ipv4Text.clear();
      ipv4Text.set(key, text);
    }
    return text;
  }
  const text = Buffer.from(res.getRemoteAddressAsText()).toString('latin1');
  // An IPv4 client on a dual-stack socket shows up IPv4-mapped.
  return text.startsWith('0000:0000:0000:0000:0000:ffff:') ? text.slice(30) : text.startsWith('::ffff:') ? text.slice(7) : text;
}
