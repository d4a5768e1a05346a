// Stage "validate": refuse what must never reach a backend — oversized heads, CONNECT, a
// missing, repeated or invalid Host, request-smuggling shapes, targets that are not
// origin-form or carry a fragment, bad bytes in field values (400, 431, 501).
import { E } from '../../src/shared/errors';
import type { Exchange } from '../exchange';
import { fieldBytes } from '../http-fields';

// Visible ASCII except "#": a fragment is never part of a request-target (RFC 9112 §3.2).
// Forwarded, "/index.html#.png" is one path to ugate's routes and cache and another to the
// backend (the HAProxy CVE-2023-45539 shape); it used to pass, as did a DEL byte.
const TARGET_OK = /^\/[\x21\x24-\x7e]*$/;
// Host is uri-host [ ":" port ] (RFC 9112 §3.2, RFC 3986 §3.2.2): an IP literal in brackets,
// or a reg-name of unreserved, pct-encoded and sub-delims characters. Anything else (spaces,
// "/", "@", a non-numeric port, non-ASCII, DEL) is a 400 by RFC 9112 §3.2; it used to be
// routed on and forwarded, Host and X-Forwarded-Host alike. Empty is valid.
const HOST_OK = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?$/;
/** The last Host that passed HOST_OK: most requests of a worker repeat it, and a string
 * compare is cheaper than the regex on every request. */
let hostPassed = '';

export function validate(x: Exchange): number {
  const targetOk = TARGET_OK.test(x.target);
  // accept.ts counted the target in characters: add what its UTF-8 bytes take beyond that.
  if (!targetOk) x.headerBytes += Buffer.byteLength(x.target, 'utf8') - x.target.length;
  if (x.headerBytes > x.worker.config.maxHeaderSize) return E.HEADERS_TOO_LARGE;
  // CONNECT asks for a tunnel (RFC 9110 §9.3.6), which ugate does not make; uWS passes only its
  // (invalid) origin-form. It used to be forwarded, and a backend's 2xx to it means the
  // connection has become a tunnel, which the upstream client does not expect.
  if (x.method === 'CONNECT') return E.UNSUPPORTED_METHOD;
  if (x.hostCount === 0) return E.MISSING_HOST;
  if (x.hostCount > 1) return E.DUPLICATE_HOST;
  if (x.host !== hostPassed) {
    if (!HOST_OK.test(x.host)) return E.BAD_HOST;
    hostPassed = x.host;
  }
  if (!targetOk && !reencodeTarget(x)) return E.BAD_TARGET;
  if (x.contentLength === -2) return E.BAD_CONTENT_LENGTH;
  if (x.transferEncoding !== null) {
    // uWS itself drops requests carrying both Content-Length and Transfer-Encoding; keep the
    // check here too so the rule does not depend on the front end.
    if (x.contentLength !== -1) return E.BAD_CONTENT_LENGTH;
    if (x.transferEncoding.trim().toLowerCase() !== 'chunked') return E.UNSUPPORTED_TRANSFER_CODING;
  }
  if (x.badHeader || (x.nonAsciiHeader && !reencodeHeaders(x))) return E.BAD_HEADER;
  return 0;
}

// uWS hands us UTF-8-decoded strings; undici writes the head as latin1. Bytes outside
// ASCII are re-encoded so the backend receives exactly the bytes the client sent.
// Invalid UTF-8 already became U+FFFD in uWS and cannot be recovered: refuse it.
function reencodeTarget(x: Exchange): boolean {
  if (x.target.charCodeAt(0) !== 47 || /[\s\x00-\x1f\x7f#\ufffd]/.test(x.target)) return false;
  x.target = Buffer.from(x.target, 'utf8').toString('latin1');
  return true;
}

function reencodeHeaders(x: Exchange): boolean {
  const h = x.headers;
  for (let i = 1; i < h.length; i += 2) {
    const bytes = fieldBytes(h[i]);
    if (bytes === null) return false;
    h[i] = bytes;
  }
  return true;
}
