// Stage "accept": copy everything needed out of the uWS request, synchronously.
// uWS MUST-rule: `req` is invalid once the handler returns, and `res.onAborted` must be
// registered before any asynchronous step, or uWS aborts the process on client disconnect.
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { Exchange } from '../exchange';
import { fieldBytes, NON_ASCII_VALUE } from '../http-fields';
import type { WorkerState } from '../worker-state';
import { onClientAborted } from './stream-back';

// req.forEach takes a callback; a module-level function plus this cursor avoids a
// closure allocation per request.
let current: Exchange;

export function accept(res: HttpResponse, req: HttpRequest, worker: WorkerState): Exchange {
  const x = new Exchange(res, worker);
  res.onAborted(() => onClientAborted(x));
  x.method = req.getCaseSensitiveMethod();
  const query = req.getQuery();
  // getQuery() is undefined without "?" and "" for a bare "?": keep the target byte-for-byte.
  x.target = query === undefined ? req.getUrl() : req.getUrl() + '?' + query;
  // "GET /x HTTP/1.1\r\n" plus the blank line that ends the block. A target with bytes outside
  // ASCII counts in characters here; validate.ts adds the difference when it meets one.
  x.headerBytes = x.method.length + x.target.length + 13;
  current = x;
  req.forEach(collectHeader);
  return x;
}

function collectHeader(name: string, value: string): void {
  const x = current;
  // --max-header-size is in bytes; uWS hands over UTF-8-decoded strings, whose length counts
  // a 3-byte character as one (that let a head up to three times the limit through).
  const nonAscii = NON_ASCII_VALUE.test(value);
  x.headerBytes += name.length + (nonAscii ? Buffer.byteLength(value, 'utf8') : value.length) + 4;
  // Header names arrive lower-cased from uWS.
  switch (name) {
    case 'host':
      x.hostCount++;
      x.host = value;
      x.headers.push(name, value);
      return;
    case 'content-length':
      noteContentLength(x, value);
      return;
    case 'transfer-encoding':
      x.transferEncoding = x.transferEncoding === null ? value : x.transferEncoding + ', ' + value;
      return;
    case 'connection':
      x.connection = x.connection === null ? ownValue(x, value) : x.connection + ', ' + ownValue(x, value);
      return;
    // Hop-by-hop (RFC 9110 §7.6.1) and Expect: uWS already answered 100-continue itself.
    case 'keep-alive':
    case 'proxy-connection':
    case 'proxy-authorization':
    case 'te':
    case 'trailer':
    case 'upgrade':
    case 'expect':
      return;
    case 'x-forwarded-for':
      x.forwardedFor = x.forwardedFor === null ? ownValue(x, value) : x.forwardedFor + ', ' + ownValue(x, value);
      return;
    case 'x-forwarded-proto':
      x.forwardedProto = ownValue(x, value);
      return;
    case 'x-forwarded-host':
      x.forwardedHost = ownValue(x, value);
      return;
    case 'via':
      x.via = x.via === null ? ownValue(x, value) : x.via + ', ' + ownValue(x, value);
      return;
    default:
      if (nonAscii) x.nonAsciiHeader = true;
      x.headers.push(name, value);
  }
}

// Fields ugate keeps aside and writes itself (Via, X-Forwarded-*, Connection) get the same
// rule as forwarded ones (fieldBytes). Before, they skipped it: a DEL in Via reached the
// backend, and UTF-8 in Via was sent as latin1 garbage.
function ownValue(x: Exchange, v: string): string {
  const bytes = fieldBytes(v);
  if (bytes !== null) return bytes;
  x.badHeader = true;
  return v;
}

function noteContentLength(x: Exchange, value: string): void {
  // Identical repeats may be folded (RFC 9112 §6.3); differing ones are a smuggling shape.
  const n = /^\s*\d{1,15}\s*$/.test(value) ? Number(value) : -2;
  if (x.contentLength === -1) x.contentLength = n;
  else if (x.contentLength !== n) x.contentLength = -2;
}
