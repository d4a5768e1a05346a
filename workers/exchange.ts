// One request/response pair as it moves through the pipeline. One object per request holds
// everything the stages need, so the hot path allocates it once and passes it along.
import type { HttpResponse } from 'uWebSockets.js';
import type { Dispatcher } from 'undici';
import type { RuntimeBackend, RuntimeRoute, WorkerState } from './worker-state';
import type { RequestBody } from './request-body';
import type { CacheFill } from './cache/fill';
import type { Directives } from './cache/policy';
import { peerAddress } from './peer';

export const enum Phase {
  /** Request accepted, not yet sent upstream. */
  Pending = 0,
  /** Dispatched to the backend, waiting for its response headers. */
  Waiting = 1,
  /** Response head has been written (or is being written) to the client. */
  Streaming = 2,
  /** The client's response is complete, cut, or the client went away. */
  Done = 3,
}

export class Exchange {
  readonly res: HttpResponse;
  readonly worker: WorkerState;
  readonly startedAt: number;
  phase = Phase.Pending;
  /** The client closed the connection: `res` must never be touched again (uWS rule). */
  clientGone = false;

  // ---- copied out of the uWS request (it is invalid after the handler returns) ----
  method = '';
  /** Path and query exactly as received, what the backend gets. */
  target = '';
  host = '';
  hostCount = 0;
  /** Raw header block size (request line + fields), checked against max-header-size. */
  headerBytes = 0;
  /** -1 when absent; -2 when duplicated with differing values or not a number. */
  contentLength = -1;
  transferEncoding: string | null = null;
  connection: string | null = null;
  forwardedFor: string | null = null;
  forwardedProto: string | null = null;
  forwardedHost: string | null = null;
  via: string | null = null;
  /** Name/value pairs to forward, hop-by-hop fields already left out. */
  headers: string[] = [];
  /** A header value with bytes outside ASCII was seen (needs re-encoding for undici). */
  nonAsciiHeader = false;
  /** A Via, X-Forwarded-* or Connection value with control bytes or invalid UTF-8. */
  badHeader = false;
  private peerText: string | null = null;

  // ---- decided by the stages ----
  route: RuntimeRoute | null = null;
  backend: RuntimeBackend | null = null;
  body: RequestBody | null = null;
  /** Aborts the upstream request; set by undici's onConnect. */
  abortUpstream: ((err?: Error) => void) | null = null;
  dispatchOptions: Dispatcher.DispatchOptions | null = null;
  /** Dispatches so far (1 + retries + redispatches); also tells a handler whether its attempt is current. */
  attempts = 0;
  /** Of those, sent again by the cache (upstream.redispatch): not retries, so not counted against --retries. */
  redispatches = 0;
  /** Backends already tried by this request (null until a retry). */
  tried: RuntimeBackend[] | null = null;
  /** The current attempt holds an in-flight slot in the backend table (released once). */
  backendHeld = false;
  /** The current attempt is a half-open circuit probe. */
  probe = false;
  /** performance.now() when the current attempt was dispatched. */
  dispatchedAt = 0;
  /** Set-Cookie value the sticky balancer wants on the response, or null. */
  stickyCookie: string | null = null;

  // ---- response state ----
  status = 0;
  statusText = '';
  rawHeaders: Buffer[] | null = null;
  /** Backend's Content-Length, or -1 for a chunked / close-delimited body. */
  responseLength = -1;
  /** Response fields named by the backend's Connection header, or null (the usual case). */
  responseDropNamed: string[] | null = null;
  /** The response head is waiting to be written together with the first body bytes. */
  headPending = false;
  /** uWS could not take more; the backend is paused until onWritable. */
  blocked = false;
  /** Body bytes uWS did not accept (tryEnd mode) and their write offset. */
  unsent: Buffer | null = null;
  unsentOffset = 0;
  resumeUpstream: (() => void) | null = null;
  writableRegistered = false;
  bytesIn = 0;
  /** The client's request body has been read to its end. */
  bodyComplete = false;
  bytesOut = 0;

  // ---- response cache (workers/cache) ----
  /** This exchange leads a cache fill: its response is copied into the cache as it streams. */
  cacheFill: CacheFill | null = null;
  /** X-Cache value the head writer adds ("MISS"), or null when the cache is not involved. */
  cacheStatus: string | null = null;
  /** A request waiting on another's cache fill: its Cache-Control directives (null: none). */
  cacheDirectives: Readonly<Directives> | null = null;

  constructor(res: HttpResponse, worker: WorkerState) {
    this.res = res;
    this.worker = worker;
    this.startedAt = performance.now();
  }

  /** The client's address, read from uWS on first use (workers/peer.ts says why). */
  get peer(): string {
    if (this.peerText === null) this.peerText = this.clientGone ? '' : peerAddress(this.res);
    return this.peerText;
  }
}
