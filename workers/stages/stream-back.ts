// Stage "stream-back": the backend's response, written to the client as it arrives.
//
// uWS rules that shape this file:
// - Writes outside a uWS callback must be corked, or each write is its own syscall.
// - `write()` (chunked) buffers what the socket refuses and returns false; `tryEnd()` (known
//   length) does not buffer the rest, so the unsent tail is kept and re-sent from onWritable.
// - After onAborted fires, or after the response is ended, `res` must not be touched.
//
// The status line and headers are held back until the first body bytes (or the end), so a
// small response leaves in one write. Bodies that start late still get their head at once,
// flushed from setImmediate.
import { E } from '../../src/shared/errors';
import { Exchange, Phase } from '../exchange';
import { endBodiless } from '../end-bodiless';
import { connectionNamed, equalsLower, forwardableStatus, RESPONSE_HOP_FIELDS, statusLine, statusLineOut, VIA } from '../http-fields';
import { respondError } from '../respond';
import { failAttempt, noteAnswer } from '../retry';
import { ParseError } from '../upstream-pool/response-parser';
import { record } from './record';

/** undici's dispatch handler (the raw interface: response headers stay unparsed Buffers). */
export class UpstreamHandler {
  /** `attempt`: which dispatch of the exchange this handler serves (retries make new ones). */
  constructor(private readonly x: Exchange, private readonly attempt = 1) {}

  onConnect(abort: (err?: Error) => void): void {
    if (this.x.phase === Phase.Done || this.x.attempts !== this.attempt) abort();
    else this.x.abortUpstream = abort;
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    const x = this.x;
    if (x.phase === Phase.Done || x.attempts !== this.attempt) return false;
    if (refuseBadStatusLine(status, statusText, x.abortUpstream)) return false;
    // 1xx are not forwarded: uWS already answered 100-continue to the client.
    if (status < 200) return true;
    noteAnswer(x, status);
    // A cache revalidation answered by 304, or a 5xx answered from a stale entry: done here.
    if (x.cacheFill !== null && x.cacheFill.onHeaders(status, statusText, rawHeaders)) return true;
    x.status = status;
    x.statusText = statusText;
    x.rawHeaders = rawHeaders;
    x.resumeUpstream = resume;
    scanResponseHead(x, rawHeaders);
    x.phase = Phase.Streaming;
    x.headPending = true;
    if (!isBodiless(x)) scheduleHeadFlush(x);
    return true;
  }

  onData(chunk: Buffer): boolean {
    const x = this.x;
    // An attempt the cache sent again (upstream.redispatch): read on and dropped.
    if (x.attempts !== this.attempt) return true;
    if (x.cacheFill !== null) x.cacheFill.onData(chunk);
    if (x.phase !== Phase.Streaming) return false;
    x.bytesOut += chunk.length;
    writing = x;
    writingChunk = chunk;
    x.res.cork(writeChunkCorked);
    writingChunk = null;
    return !x.blocked;
  }

  onComplete(): void {
    const x = this.x;
    if (x.attempts !== this.attempt) return;
    if (x.cacheFill !== null) x.cacheFill.onComplete();
    if (x.phase !== Phase.Streaming) return;
    if (x.unsent !== null) return; // tryEnd finishes it from onWritable
    writing = x;
    x.res.cork(endCorked);
  }

  onError(err: Error & { code?: string }): void {
    const x = this.x;
    if (x.attempts !== this.attempt) return;
    if (x.phase === Phase.Done) {
      // The client left (or was answered): a cache fill it led still hands over to a waiter.
      if (x.cacheFill !== null) x.cacheFill.onError(err);
      return;
    }
    if (x.phase === Phase.Waiting) {
      const id = upstreamErrorId(err);
      // Nothing reached the client yet: count the failure, and maybe re-send elsewhere;
      // failing that, stale-if-error may answer from the cache.
      if (failAttempt(x, id)) return;
      if (x.cacheFill !== null && x.cacheFill.onError(err)) return;
      respondError(x, id);
      return;
    }
    // A revalidation's 304 (which undici may reject) or stale-if-error: the cache answers.
    if (x.cacheFill !== null && x.cacheFill.onError(err)) return;
    // undici 7 checks Content-Length against the body for every status but HEAD, so a valid
    // bodiless 304 that reports the entity's length arrives here: finish it as the 304 it is.
    if (x.status === 304 && x.headPending && err.code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
      this.onComplete();
      return;
    }
    if (x.headPending && x.bytesOut === 0) {
      respondError(x, upstreamErrorId(err));
      return;
    }
    // Part of the body already left: cut the connection so the client can tell the response
    // is incomplete. Never end it as if it were whole.
    cutResponse(x);
  }
}

/** The response head (and maybe body) went out: no other answer can replace it, so the client's
 * connection is cut, and the client sees an incomplete response, never a fake complete one. */
export function cutResponse(x: Exchange): void {
  x.phase = Phase.Done;
  x.res.close();
  record(x);
}

/** uWS onAborted: the client went away. */
export function onClientAborted(x: Exchange): void {
  x.clientGone = true;
  if (x.phase === Phase.Done) return;
  x.phase = Phase.Done;
  if (x.abortUpstream !== null) x.abortUpstream();
  if (x.body !== null) x.body.destroy();
  x.status = 499;
  record(x);
}

// ---- corked writers: module-level functions and cursors, no closure per call ----
let writing: Exchange;
let writingChunk: Buffer | null = null;

function writeChunkCorked(): void {
  const x = writing;
  const chunk = writingChunk!;
  const res = x.res;
  if (x.headPending) writeHead(x);
  if (x.responseLength >= 0) {
    const [ok, done] = res.tryEnd(chunk, x.responseLength);
    if (done) finish(x);
    else if (!ok) {
      // uWS's write offset counts body bytes, and every earlier chunk was taken whole (the
      // backend is paused while a tail is unsent), so the offset before this chunk is known
      // without asking uWS on every write.
      const before = x.bytesOut - chunk.length;
      const taken = res.getWriteOffset() - before;
      // Only the tail uWS did not take is kept, copied: the chunk is lent for this call
      // (the lean client reads every backend socket into one reused buffer).
      x.unsent = Buffer.from(chunk.subarray(taken));
      x.unsentOffset = before + taken;
      block(x);
    }
  } else if (!res.write(chunk)) {
    block(x);
  }
}

function endCorked(): void {
  const x = writing;
  const res = x.res;
  if (x.headPending) writeHead(x);
  if (isBodiless(x)) {
    // HEAD and 304 keep the Content-Length the backend reported; 204 carries none.
    endBodiless(res, x.status === 204 ? -1 : x.responseLength);
  } else if (x.responseLength > 0) {
    // Known length fully sent already ends the response in tryEnd (finish ran there).
    return;
  } else {
    res.end();
  }
  finish(x);
}

function block(x: Exchange): void {
  x.blocked = true;
  if (!x.writableRegistered) {
    x.writableRegistered = true;
    x.res.onWritable((offset) => onClientWritable(x, offset));
  }
}

function onClientWritable(x: Exchange, offset: number): boolean {
  if (x.phase !== Phase.Streaming) return true;
  if (x.unsent !== null) {
    const [ok, done] = x.res.tryEnd(x.unsent.subarray(offset - x.unsentOffset), x.responseLength);
    if (done) {
      x.unsent = null;
      finish(x);
      // The backend connection was paused on this last chunk, its response complete but for
      // the parser's onEnd: resumed, it completes and goes back to the pool (left paused, it
      // would be lost to the pool for good).
      if (x.resumeUpstream !== null) x.resumeUpstream();
      return true;
    }
    if (!ok) return false;
    x.unsent = null;
  }
  x.blocked = false;
  if (x.resumeUpstream !== null) x.resumeUpstream();
  return true;
}

function finish(x: Exchange): void {
  x.phase = Phase.Done;
  record(x);
}

// ---- the response head ----

function writeHead(x: Exchange): void {
  x.headPending = false;
  const res = x.res;
  res.writeStatus(statusLineOut(statusLine(x.status, x.statusText)));
  const h = x.rawHeaders!;
  const dropNamed = x.responseDropNamed;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i];
    if (SKIP_LENGTHS[name.length] === 1 && isSkippedResponseHeader(name)) continue;
    if (dropNamed !== null && dropNamed.includes(name.toString('latin1').toLowerCase())) continue;
    res.writeHeader(name, h[i + 1]);
  }
  res.writeHeader('via', VIA);
  if (x.stickyCookie !== null) res.writeHeader('set-cookie', x.stickyCookie);
  if (x.cacheStatus !== null) res.writeHeader('x-cache', x.cacheStatus);
  if (x.worker.draining) res.writeHeader('connection', 'close');
}

const SKIP_LENGTHS = new Uint8Array(32);
for (const s of RESPONSE_HOP_FIELDS) SKIP_LENGTHS[s.length] = 1;

function isSkippedResponseHeader(name: Buffer): boolean {
  for (let i = 0; i < RESPONSE_HOP_FIELDS.length; i++) {
    const field = RESPONSE_HOP_FIELDS[i];
    if (name.length === field.length && equalsLower(name, 0, field)) return true;
  }
  return false;
}


/** Content-Length, and the fields a Connection header names (hop-by-hop, RFC 9110 §7.6.1). */
function scanResponseHead(x: Exchange, h: Buffer[]): void {
  x.responseLength = -1;
  x.responseDropNamed = null;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i];
    if (name.length === 14 && equalsLower(name, 0, 'content-length')) x.responseLength = Number(h[i + 1].toString('latin1'));
    else if (name.length === 10 && equalsLower(name, 0, 'connection')) x.responseDropNamed = connectionNamed(h[i + 1].toString('latin1'), x.responseDropNamed);
  }
}

function isBodiless(x: Exchange): boolean {
  return x.status === 204 || x.status === 304 || x.method === 'HEAD';
}

// ---- heads of responses whose body has not started yet ----
const pendingHeads: Exchange[] = [];
let flushScheduled = false;

function scheduleHeadFlush(x: Exchange): void {
  pendingHeads.push(x);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushPendingHeads);
  }
}

function flushPendingHeads(): void {
  flushScheduled = false;
  for (let i = 0; i < pendingHeads.length; i++) {
    const x = pendingHeads[i];
    if (x.headPending && x.phase === Phase.Streaming) x.res.cork(() => writeHead(x));
  }
  pendingHeads.length = 0;
}

/** A status line either client delivered that no client of ugate may get (forwardableStatus):
 * the attempt is aborted with a parse error, so the upstream client calls the handler's
 * onError with it, once, as it does for its own parse errors (502
 * UGATE_ERR_UPSTREAM_BAD_RESPONSE, no retry, the connection dropped). True when refused. */
export function refuseBadStatusLine(status: number, statusText: string, abort: ((err?: Error) => void) | null): boolean {
  if (forwardableStatus(status, statusText)) return false;
  abort?.(new ParseError('HPE_INVALID_STATUS', `invalid status line from the backend (status ${status})`));
  return true;
}

export function upstreamErrorId(err: Error & { code?: string }): number {
  // undici's parser errors carry no code, only their class name.
  if (err.name === 'HTTPParserError') return E.UPSTREAM_BAD_RESPONSE;
  switch (err.code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return E.UPSTREAM_CONNECT_TIMEOUT;
    case 'UND_ERR_HEADERS_TIMEOUT':
      return E.UPSTREAM_HEADERS_TIMEOUT;
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EAI_AGAIN':
      return E.UPSTREAM_CONNECT;
    case 'UND_ERR_SOCKET':
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_CLOSED':
      return E.UPSTREAM_RESET;
    case 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH':
      return E.BODY_LENGTH_MISMATCH;
    case 'UND_ERR_INVALID_ARG':
      return E.BAD_REQUEST;
    default:
      return err.code !== undefined && err.code.startsWith('HPE_') ? E.UPSTREAM_BAD_RESPONSE : E.UPSTREAM_RESET;
  }
}
