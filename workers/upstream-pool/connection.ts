// One keep-alive connection of the lean upstream client (pool.ts): writes a request, feeds
// the response parser, hands the response to the dispatch handler, and goes back to its
// pool, or fails the request when the socket breaks or a deadline passes. With --pipelining
// above 1 it also carries bodyless idempotent requests written behind the one being answered
// (`behind`), answered in order.
import net from 'node:net';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Http1Pool, PendingRequest } from './pool';
import { isIdempotent } from '../http-fields';
import { ResponseParser, type ResponseSink } from './response-parser';

/** Errors carry undici's codes, so workers/stages/stream-back.ts maps both clients alike. */
export class UpstreamError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'UpstreamError';
  }
}

/** A request body at most this large leaves in the same write as the head. */
const INLINE_BODY = 64 * 1024;
/** How a stale connection fails: closed or reset by the backend (not a timeout). */
const STALE_CLOSE = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

// The read buffer: every backend socket of the thread reads into one buffer (node:net `onread`,
// --upstream-read-buffer). A Buffer allocated per read is external memory to V8, and at
// 64 KiB responses that churn drove major GCs into ~25% of the worker's CPU (perf). A larger
// buffer means fewer reads, callbacks and client writes per body (1 MiB: 573 -> 433 µs of CPU
// going from 64 to 256 KiB). The parser copies what it keeps; handlers use body chunks
// synchronously (stream-back copies an unsent tail, at most one read's worth, the cache its
// capture).

// Pipelining: the heads written during one event-loop turn (every request uWS delivered from
// one epoll wake-up) leave in one write per connection, flushed by setImmediate, which runs
// right after the poll phase of the same turn. One write and one read then carry a whole
// batch: in the floor test (a bare uWS + net proxy, native-bench upstream) that took a small
// GET from 11.3 to 6.4 µs of CPU. Without pipelining a connection carries one request per
// turn, so its head is written at once.
const unflushed: Connection[] = [];

function flushAll(): void {
  for (let i = 0; i < unflushed.length; i++) unflushed[i].flush();
  unflushed.length = 0;
}

const enum Wait {
  Connect,
  Headers,
  Body,
  Idle,
}

export class Connection implements ResponseSink {
  private readonly socket: net.Socket;
  private readonly parser: ResponseParser;
  /** The request whose response is being read (null: idle, or connecting for nobody). */
  private req: PendingRequest | null;
  /** Pipelined requests already written behind `req`, in the order of their responses. */
  private readonly behind: PendingRequest[] = [];
  /** Request heads written this turn, not yet flushed (pipelining only). */
  private out = '';
  /** performance.now() past which the current wait has failed; 0 = none. */
  deadline = 0;
  private waiting = Wait.Connect;
  /** A response completed on this connection before: it was idle in the pool. */
  private reused = false;
  /** The request body still being sent (null: none, or all of it is out). */
  private body: Readable | null = null;
  private readonly resumeReading = (): void => this.resume();
  /** A request behind was aborted or moved (moveLate): when its turn comes the connection is
   * dropped (complete()), so nothing more may join it. Set once, by markDropping(). */
  dropsAtTurn = false;
  /** Bytes may be waiting unread in the kernel: the last read filled the read buffer (libuv
   * reads again at once, after this read's callback), or the socket is paused for a slow
   * client. A response that ends then is not followed by another request on this connection
   * (complete()): bytes the backend sent after it, unasked, would be read as that request's
   * answer. */
  private unreadPossible = false;

  constructor(private readonly pool: Http1Pool, first: PendingRequest) {
    this.req = first;
    first.conn = this;
    this.parser = new ResponseParser(this, pool.options.maxHeaderSize);
    this.deadline = pool.options.connectTimeout > 0 ? performance.now() + pool.options.connectTimeout : 0;
    const socket = net.connect({
      host: pool.host,
      port: pool.port,
      onread: { buffer: pool.options.readBuffer, callback: (n: number, buf: Uint8Array) => this.onSocketData((buf as Buffer).subarray(0, n)) },
    });
    socket.setNoDelay(true);
    socket.on('connect', () => this.onConnect());
    socket.on('end', () => this.onSocketEnd());
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.onSocketClose());
    this.socket = socket;
  }

  private onConnect(): void {
    this.socket.setKeepAlive(true, 60_000);
    this.waiting = Wait.Idle;
    const req = this.req;
    this.req = null;
    if (req !== null) {
      this.start(req);
      // Requests queued while it connected may go behind the first.
      this.pool.room(this);
    }
    // Its request was aborted while connecting: the connection serves the next one.
    else this.pool.release(this, -1);
  }

  start(req: PendingRequest): void {
    req.conn = this;
    if (this.req !== null && this.waiting !== Wait.Connect) {
      // Pipelined behind the request in flight (the pool checked canTake()).
      req.sentAt = performance.now();
      this.behind.push(req);
      this.writeRequest(req.opts);
      return;
    }
    this.req = req;
    if (this.waiting === Wait.Connect) return; // onConnect starts it
    this.parser.reset(req.opts.method === 'HEAD');
    this.waiting = Wait.Headers;
    this.deadline = 0;
    this.writeRequest(req.opts);
    if (this.body === null) this.startHeadersWait();
  }

  /** Another request may be pipelined behind the ones in flight: the pool allows it, they are
   * all bodyless and idempotent (RFC 9112 §9.3.2: a non-idempotent request is never followed,
   * so a broken connection leaves only requests that are safe to send again), and the answer
   * ahead is still awaited. One whose body spans reads (large, slow, an event stream, or
   * paused by a slow client) may take long to end, and a request behind it would wait for
   * all of it: it goes elsewhere. */
  canTake(): boolean {
    const req = this.req;
    return (
      req !== null &&
      req.pipelinable &&
      this.behind.length + 1 < this.pool.options.pipelining &&
      this.waiting === Wait.Headers &&
      // A request joining behind a place that drops the connection would be written here, then
      // sent again on another connection when the drop comes: the backend would get it twice.
      !this.dropsAtTurn &&
      !this.socket.destroyed &&
      !this.parser.closing
    );
  }

  /** The headers wait starts once the whole request is sent (as undici's does): a backend
   * reading a slow upload is not late yet. */
  private startHeadersWait(): void {
    const headersTimeout = this.pool.options.headersTimeout;
    if (this.waiting === Wait.Headers && headersTimeout > 0) this.deadline = performance.now() + headersTimeout;
  }

  // ---- the request ----

  private writeRequest(opts: Dispatcher.DispatchOptions): void {
    const fields = opts.headers as string[];
    let head = `${opts.method} ${opts.path} HTTP/1.1\r\n`;
    let hasLength = false;
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i];
      if (name.length === 14 && name === 'content-length') hasLength = true;
      head += name + ': ' + fields[i + 1] + '\r\n';
    }
    const body = opts.body as Buffer | Readable | null | undefined;
    if (body == null) {
      if (this.pool.options.pipelining === 1) this.socket.write(head + '\r\n', 'latin1');
      else {
        if (this.out.length === 0 && unflushed.push(this) === 1) setImmediate(flushAll);
        this.out += head + '\r\n';
      }
    } else if (Buffer.isBuffer(body)) {
      if (!hasLength) head += 'content-length: ' + body.length + '\r\n';
      head += '\r\n';
      if (body.length <= INLINE_BODY) {
        const out = Buffer.allocUnsafe(head.length + body.length);
        out.write(head, 0, 'latin1');
        body.copy(out, head.length);
        this.socket.write(out);
      } else {
        this.socket.cork();
        this.socket.write(head, 'latin1');
        this.socket.write(body);
        this.socket.uncork();
      }
    } else {
      if (!hasLength) head += 'transfer-encoding: chunked\r\n';
      this.socket.write(head + '\r\n', 'latin1');
      this.streamBody(body, !hasLength);
    }
  }

  flush(): void {
    const out = this.out;
    this.out = '';
    if (!this.socket.destroyed) this.socket.write(out, 'latin1');
  }

  /** A streamed request body, with backpressure both ways (request-body.ts pauses the client). */
  private streamBody(body: Readable, chunked: boolean): void {
    this.body = body;
    const socket = this.socket;
    const onData = (chunk: Buffer): void => {
      if (this.body !== body) return;
      let ok: boolean;
      if (chunked) {
        socket.cork();
        socket.write(chunk.length.toString(16) + '\r\n', 'latin1');
        socket.write(chunk);
        ok = socket.write('\r\n', 'latin1');
        socket.uncork();
      } else {
        ok = socket.write(chunk);
      }
      if (!ok) {
        body.pause();
        // The backend takes no more of the upload: its headers wait runs until it does, as
        // undici's does while its socket needs a drain. Untimed, a backend that stopped reading
        // held the request, its connection and the paused client (whose leaving a paused uWS
        // socket does not report) for good.
        this.startHeadersWait();
        socket.once('drain', () => this.drained(body));
      }
    };
    const onEnd = (): void => {
      if (this.body !== body) return;
      if (chunked) socket.write('0\r\n\r\n', 'latin1');
      this.detachBody();
      this.startHeadersWait();
    };
    const onGone = (): void => {
      // Destroyed before its end: the client left mid-upload; the backend must not take a
      // truncated body as whole, so the connection goes.
      if (this.body !== body || this.req === null) return;
      this.pool.abortRequest(this.req, new UpstreamError('UND_ERR_ABORTED', 'request body ended early'));
    };
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('close', onGone);
    body.once('error', onGone);
  }

  /** The backend took the upload's backlog: the client's pace is not the backend's to answer for. */
  private drained(body: Readable): void {
    if (this.body === body && this.waiting === Wait.Headers) this.deadline = 0;
    body.resume();
  }

  /** Stop sending the body: what the client still sends is dropped. */
  private detachBody(): void {
    const body = this.body;
    if (body === null) return;
    this.body = null;
    body.removeAllListeners('data');
  }

  // ---- the response (ResponseSink) ----

  onHead(status: number, statusText: string, rawHeaders: Buffer[]): boolean {
    const req = this.req;
    // Aborted from inside a handler call of this very read: the connection is gone already.
    if (req === null) return false;
    if (status >= 200) {
      this.waiting = Wait.Body;
      const bodyTimeout = this.pool.options.bodyTimeout;
      this.deadline = bodyTimeout > 0 ? performance.now() + bodyTimeout : 0;
    }
    const keepGoing = req.handler.onHeaders!(status, rawHeaders, this.resumeReading, statusText);
    // Interim (100, 103): reported, never a reason to pause; the final head follows.
    return status < 200 || this.delivered(keepGoing);
  }

  onBody(chunk: Buffer): boolean {
    const bodyTimeout = this.pool.options.bodyTimeout;
    if (bodyTimeout > 0) this.deadline = performance.now() + bodyTimeout;
    const req = this.req;
    return req !== null && this.delivered(req.handler.onData!(chunk));
  }

  onEnd(reusable: boolean, extra: boolean): void {
    this.deadline = 0;
    if (this.body !== null) {
      // The backend answered before reading the whole body (an early 413, say): the
      // connection is out of step with the body, so it is not reused.
      this.detachBody();
      reusable = false;
    }
    this.complete(reusable, extra);
  }

  /** Handler said stop (its client is slow): stop reading, and the body wait with it. */
  private delivered(keepGoing: boolean): boolean {
    if (!keepGoing) {
      this.deadline = 0;
      // A whole body has nothing left to hold back. The socket goes on reading, so bytes the
      // backend sends meanwhile (unasked, with no request behind) drop the connection at once
      // (onSocketData) instead of waiting in the kernel to become the next request's answer.
      if (this.heldWhole()) return keepGoing;
      this.socket.pause();
      this.unreadPossible = true;
    }
    return keepGoing;
  }

  /** The response is complete but held by its handler, and no request is pipelined behind it:
   * nothing more is due on this connection until it is released. */
  private heldWhole(): boolean {
    return this.parser.bodyComplete && this.behind.length === 0;
  }

  private resume(): void {
    if (this.req === null) return;
    const bodyTimeout = this.pool.options.bodyTimeout;
    if (this.waiting === Wait.Body && bodyTimeout > 0) this.deadline = performance.now() + bodyTimeout;
    this.socket.resume();
    this.guard(() => this.parser.resume());
  }

  /** `extra`: bytes came after the response; the next pipelined response, or garbage. The
   * connection is dropped after it then, and also when more bytes may be unread (see
   * unreadPossible): HTTP/1.1 cannot tell an unrequested answer from the next one. */
  private complete(reusable: boolean, extra: boolean): void {
    const req = this.req;
    if (req === null) return; // aborted from inside a handler call: the connection is gone
    req.conn = null;
    this.reused = true;
    const open = reusable && !this.socket.destroyed;
    let next = open ? (this.behind.shift() ?? null) : null;
    // Its client left while it waited behind: its answer may never end (an event stream), so
    // rather than read it the connection goes, and the requests behind it are sent again.
    const skipped = next !== null && next.settled;
    if (skipped) next = null;
    this.req = next;
    if (next !== null) {
      // From inside the parser's onEnd: it goes on with the bytes it holds.
      this.parser.next(next.opts.method === 'HEAD');
      this.waiting = Wait.Headers;
      this.startHeadersWait();
    } else if (open && !skipped && !extra && !this.unreadPossible) {
      this.waiting = Wait.Idle;
      this.pool.release(this, this.parser.keepAliveHint);
    } else {
      this.destroy();
      this.resendBehind(skipped ? null : new UpstreamError('UND_ERR_SOCKET', 'the backend closed the connection'));
    }
    req.settled = true;
    req.handler.onComplete!([]);
    if (next !== null) this.pool.room(this);
  }

  // ---- the socket ----

  private onSocketData(chunk: Buffer): boolean {
    if (this.req === null || this.parser.idle || this.heldWhole()) {
      // Bytes nobody asked for: while idle in the pool, or after a whole response its handler
      // still holds. The connection cannot be trusted (the next request would read them),
      // unless they are a few empty lines: a backend's stray CRLF after a body.
      if (this.parser.skipTrailing(chunk)) return true;
      this.destroy();
      return false;
    }
    this.unreadPossible = chunk.length === this.pool.options.readBuffer.length;
    this.guard(() => this.parser.execute(chunk));
    return true;
  }

  private guard(parse: () => void): void {
    try {
      parse();
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private onSocketEnd(): void {
    if (this.req !== null && this.parser.eof()) return;
    this.fail(new UpstreamError('UND_ERR_SOCKET', 'other side closed'));
  }

  private onSocketClose(): void {
    // A close-delimited body paused by a slow client still has bytes to hand over on resume.
    if (this.req !== null && !this.parser.endsAtEof) this.fail(new UpstreamError('UND_ERR_SOCKET', 'other side closed'));
    this.pool.forget(this);
  }

  onDeadline(): void {
    this.deadline = 0;
    switch (this.waiting) {
      case Wait.Connect:
        this.fail(new UpstreamError('UND_ERR_CONNECT_TIMEOUT', 'connect timeout'));
        return;
      case Wait.Headers:
        this.fail(new UpstreamError('UND_ERR_HEADERS_TIMEOUT', 'headers timeout'));
        return;
      case Wait.Body:
        this.fail(new UpstreamError('UND_ERR_BODY_TIMEOUT', 'body timeout'));
        return;
      default:
        this.destroy();
    }
  }

  /** The connection broke under a request (or before it): the request fails, and the retry
   * policy (workers/retry.ts, --retries) decides whether it goes to another backend.
   *
   * One case is re-sent here, once, and does not count as a retry: a reused keep-alive
   * connection that closed before any byte of the response. The backend closed the idle
   * connection as the request went out, the race every keep-alive client has; nginx and Go's
   * net/http re-send in this case too. Only idempotent requests whose body can be sent again. */
  private fail(err: Error): void {
    const req = this.req;
    // Its response was read whole and a slow client holds it (the socket goes on reading then:
    // delivered()), so a reset now comes after it: the request keeps it, handed over in full
    // when the client resumes, as after a close (onSocketClose). What is left of a request
    // body (an early answer) has nowhere to go.
    const keepsAnswer = req !== null && this.parser.endsAtEof;
    if (!keepsAnswer) this.req = null;
    this.detachBody();
    this.destroy();
    this.resendBehind(err);
    if (keepsAnswer || req === null || req.settled) return;
    req.conn = null;
    if (this.reused && !this.parser.started && !req.replayed && STALE_CLOSE.has((err as UpstreamError).code) && replayable(req.opts)) {
      this.pool.replay(req);
      return;
    }
    this.pool.settleWithError(req, err);
  }

  /** Pipelined requests written but not answered when the connection went: bodyless and
   * idempotent, so they go again on another connection. A break of the backend's (`err`) is
   * allowed once per request (a second fails it); a connection dropped for another request's
   * client (`err` null) does not count. */
  private resendBehind(err: Error | null): void {
    const again: PendingRequest[] = [];
    for (const r of this.behind.splice(0)) {
      r.conn = null;
      if (r.settled) continue;
      if (err !== null && r.replayed) this.pool.settleWithError(r, err);
      else {
        if (err !== null) r.replayed = true;
        again.push(r);
      }
    }
    if (again.length > 0) this.pool.resend(again);
  }

  /** Requests pipelined behind an answer that outlasts --headers-timeout (an answer that
   * started in time and then streams): each has waited its whole headers timeout, counted from
   * when it was written, for no fault of its backend. It goes again on another connection,
   * alone (a re-sent request is never pipelined, so this happens to it once); its place here
   * is held, since its answer is still due here, and complete() drops the connection when
   * that turn comes. */
  moveLate(now: number): void {
    const timeout = this.pool.options.headersTimeout;
    if (timeout <= 0 || this.behind.length === 0) return;
    const late: PendingRequest[] = [];
    for (let i = 0; i < this.behind.length; i++) {
      const r = this.behind[i];
      if (r.settled) continue; // aborted, or a place held already
      if (r.sentAt + timeout > now) break; // written in order: the rest are younger
      this.behind[i] = this.pool.placeHolder();
      r.conn = null;
      r.replayed = true;
      late.push(r);
    }
    if (late.length > 0) {
      this.pool.resend(late);
      // After resend(): the room this frees goes to the moved requests, first in the queue.
      this.markDropping();
    }
  }

  private markDropping(): void {
    // A destroyed socket is on its way out of the pool (forget() on 'close', maybe already):
    // counted as leaving now, it would never be uncounted.
    if (this.dropsAtTurn || this.socket.destroyed) return;
    this.dropsAtTurn = true;
    this.pool.dropping();
  }

  /** The request was aborted by its owner. The one being answered takes the connection with
   * it (its answer may never end), and the requests pipelined behind go again; one still
   * waiting behind stays, and complete() drops the connection when its turn comes. */
  cut(req: PendingRequest): void {
    if (req !== this.req) {
      if (this.behind.includes(req)) this.markDropping();
      return;
    }
    this.req = null;
    req.conn = null;
    this.detachBody();
    this.destroy();
    this.resendBehind(null);
  }

  get inFlight(): number {
    return this.req === null ? 0 : 1 + this.behind.length;
  }

  get closed(): boolean {
    return this.socket.destroyed;
  }

  destroy(): void {
    this.deadline = 0;
    if (!this.socket.destroyed) this.socket.destroy();
  }
}

function replayable(opts: Dispatcher.DispatchOptions): boolean {
  return isIdempotent(opts.method) && (opts.body == null || Buffer.isBuffer(opts.body));
}
