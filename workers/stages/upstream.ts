// Stage "upstream": build the backend request (hop-by-hop fields out, X-Forwarded-* and Via in)
// and dispatch it on the backend's undici pool.
import type { Dispatcher } from 'undici';
import { noteDispatch, noteRelease } from '../../src/shared/backend-table';
import { E } from '../../src/shared/errors';
import type { Exchange } from '../exchange';
import { Phase } from '../exchange';
import { RequestBody } from '../request-body';
import { respondError } from '../respond';
import { connectionNamed, VIA } from '../http-fields';
import { cutResponse, UpstreamHandler } from './stream-back';

export function upstream(x: Exchange): void {
  if (x.connection !== null) dropConnectionNamed(x);
  const headers = x.headers;
  pushForwarded(x, headers);

  if (x.contentLength >= 0) headers.push('content-length', String(x.contentLength));
  if (x.contentLength > 0 || x.transferEncoding !== null) {
    // Dispatch waits for the first body chunk: a body that arrives whole in it (most small
    // bodies) goes to undici as one Buffer, skipping the stream machinery. Nothing is held
    // back that the backend could already use.
    x.res.onData((chunk, isLast) => onClientData(x, chunk, isLast));
    return;
  }
  dispatch(x, null);
}

function dispatch(x: Exchange, body: Buffer | RequestBody | null): void {
  const opts: Dispatcher.DispatchOptions = {
    path: x.target,
    method: x.method as Dispatcher.HttpMethod,
    headers: x.headers,
    body,
  };
  x.dispatchOptions = opts;
  x.phase = Phase.Waiting;
  x.worker.inFlight++;
  x.worker.retryBudget.noteRequest(x.startedAt);
  dispatchAttempt(x);
}

/** Send the request to x.backend, holding an in-flight slot in the shared table until the
 * attempt ends (releaseBackend). Retries (workers/retry.ts) come back here. */
export function dispatchAttempt(x: Exchange): void {
  x.attempts++;
  holdBackend(x);
  x.backend!.pool.dispatch(x.dispatchOptions!, new UpstreamHandler(x, x.attempts));
}

/** Send the request once more to the same backend, with other fields: the cache asks again
 * without its validators after a 304 that was not for its entry. A new attempt: the handler
 * of the one before ignores whatever of its response is still to come. */
export function redispatch(x: Exchange, headers: string[]): void {
  releaseBackend(x);
  x.abortUpstream = null;
  x.redispatches++;
  x.headers = headers;
  x.dispatchOptions = { ...x.dispatchOptions!, headers };
  dispatchAttempt(x);
}

/** Count a request about to go to x.backend in the shared table: in flight (least-conn sees
 * it), a half-open circuit's probe slot, the start of the EWMA sample. Every request sent
 * upstream holds one, cache background fetches too; releaseBackend gives it back. */
export function holdBackend(x: Exchange): void {
  const b = x.backend!;
  x.probe = noteDispatch(b.state, b.row, b.own);
  x.backendHeld = true;
  x.dispatchedAt = performance.now();
}

export function releaseBackend(x: Exchange): void {
  if (!x.backendHeld) return;
  x.backendHeld = false;
  const b = x.backend!;
  noteRelease(b.state, b.row, x.probe, b.own);
}

function onClientData(x: Exchange, chunk: ArrayBuffer, isLast: boolean): void {
  x.bytesIn += chunk.byteLength;
  if (isLast) x.bodyComplete = true;
  const max = x.route!.config.maxBodySize;
  if (max > 0 && x.bytesIn > max) {
    // Chunked bodies have no declared length: the limit is enforced while streaming.
    // Answer first: aborting may call the handler's onError synchronously, which would
    // otherwise answer 502 for what is the client's 413. A backend that answered early has its
    // head out already: a 413 written then went into the body (its status line and fields as
    // body bytes, then a proper end), so the connection is cut instead.
    if (x.phase === Phase.Streaming && !x.headPending) cutResponse(x);
    else respondError(x, E.BODY_TOO_LARGE);
    if (x.abortUpstream !== null) x.abortUpstream();
    if (x.body !== null) x.body.destroy();
    return;
  }
  if (x.dispatchOptions === null) {
    if (x.phase === Phase.Done) return;
    if (isLast) {
      // Copied through a view: small bodies land in Node's pooled slab instead of a fresh
      // ArrayBuffer (external memory that V8 has to account and collect).
      dispatch(x, Buffer.from(new Uint8Array(chunk)));
      return;
    }
    x.body = new RequestBody(x);
    dispatch(x, x.body);
  }
  x.body!.pushChunk(chunk, isLast);
}

/** X-Forwarded-* and Via as the backend gets them for `x`'s request (also used by the cache's
 * background refreshes, which must ask as the client's request would). */
export function pushForwarded(x: Exchange, headers: string[]): void {
  // Reading the client's address is not free (workers/peer.ts): only when something needs it.
  const proxies = x.worker.trustedProxies;
  const trusted = proxies.size > 0 && proxies.has(x.peer);
  if (x.worker.config.forwardedFor) headers.push('x-forwarded-for', trusted && x.forwardedFor !== null ? x.forwardedFor + ', ' + x.peer : x.peer);
  else if (trusted && x.forwardedFor !== null) headers.push('x-forwarded-for', x.forwardedFor);
  headers.push('x-forwarded-proto', trusted && x.forwardedProto !== null ? x.forwardedProto : 'http');
  headers.push('x-forwarded-host', trusted && x.forwardedHost !== null ? x.forwardedHost : x.host);
  headers.push('via', x.via === null ? VIA : x.via + ', ' + VIA);
}

// Fields named in Connection are hop-by-hop too (RFC 9110 §7.6.1). Except Host: every
// HTTP/1.1 request must carry it (RFC 9112 §3.2), so a client's "Connection: host" must not
// send the backend a request without one (it used to: the backend then answered for its
// default virtual host, or 400). Content-Length and the X-Forwarded-* and Via ugate writes
// are added after this, so naming them removes nothing that ugate itself sends.
export function dropConnectionNamed(x: Exchange): void {
  const drop = connectionNamed(x.connection!, null);
  // Done once: the cache lookup may have dropped them already (its key must not see them).
  x.connection = null;
  if (drop === null) return;
  const kept: string[] = [];
  const h = x.headers;
  for (let i = 0; i < h.length; i += 2) if (h[i] === 'host' || !drop.includes(h[i])) kept.push(h[i], h[i + 1]);
  x.headers = kept;
}
