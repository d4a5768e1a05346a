// Answers from a cache entry: status, headers and body in one corked write.
// Called both inside uWS handlers (hits) and outside them (coalesced waiters, revalidations),
// so it always corks. `res` is never touched once the client has gone (uWS rule).
import { Exchange, Phase } from '../exchange';
import { endBodiless } from '../end-bodiless';
import { statusLineOut, VIA } from '../http-fields';
import { record } from '../stages/record';
import { etagMatches, notModifiedSince } from './policy';
import type { CacheEntry } from './store';

/** Fields a 304 carries from the stored response (RFC 9110 §15.4.5). */
const NOT_MODIFIED_FIELDS = new Set(['cache-control', 'content-location', 'etag', 'expires', 'vary', 'last-modified']);

export function ageMs(e: CacheEntry, now: number): number {
  const resident = now - e.responseTime;
  return (resident > 0 ? resident : 0) + e.initialAgeMs;
}

// Module-level cursor for the corked writer: no closure per hit.
let cur: Exchange;
let curEntry: CacheEntry;
let curLabel = '';
let curAge = '';
let curNotModified = false;

/** Serve `e` to `x`, labelled X-Cache: `label`. Honours the client's If-None-Match / If-Modified-Since. */
export function serveEntry(x: Exchange, e: CacheEntry, label: string, now: number, requestHeaders: readonly string[] = x.headers): void {
  if (x.clientGone || x.phase === Phase.Done) return;
  const notModified = e.status === 200 && clientHasCurrentCopy(requestHeaders, e);
  x.status = notModified ? 304 : e.status;
  x.phase = Phase.Done;
  x.bytesOut = notModified || x.method === 'HEAD' ? 0 : e.body.length;
  cur = x;
  curEntry = e;
  curLabel = label;
  curAge = String(Math.floor(ageMs(e, now) / 1000));
  curNotModified = notModified;
  x.res.cork(writeEntryCorked);
  record(x);
}

function writeEntryCorked(): void {
  const x = cur;
  const e = curEntry;
  const res = x.res;
  const notModified = curNotModified;
  res.writeStatus(notModified ? '304 Not Modified' : statusLineOut(e.statusLine));
  const names = e.names;
  const values = e.values;
  for (let i = 0; i < names.length; i++) {
    if (notModified && !NOT_MODIFIED_FIELDS.has(names[i])) continue;
    res.writeHeader(names[i], values[i]);
  }
  res.writeHeader('age', curAge);
  res.writeHeader('x-cache', curLabel);
  res.writeHeader('via', VIA);
  if (x.worker.draining) res.writeHeader('connection', 'close');
  if (notModified || e.status === 204) endBodiless(res, -1);
  else if (x.method === 'HEAD') endBodiless(res, e.body.length);
  else res.end(e.body);
}

/** The client's validators match the entry: it gets a 304 (If-None-Match wins over If-Modified-Since). */
function clientHasCurrentCopy(h: readonly string[], e: CacheEntry): boolean {
  let ims: string | null = null;
  for (let i = 0; i < h.length; i += 2) {
    const n = h[i];
    if (n === 'if-none-match') return etagMatches(h[i + 1], e.etag);
    if (n === 'if-modified-since') ims = h[i + 1];
  }
  return ims !== null && notModifiedSince(ims, e.lastModified);
}
