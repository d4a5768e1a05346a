// The lean upstream client: one pool of keep-alive HTTP/1.1 connections per backend, per
// worker, speaking plain TCP through node:net. It replaces undici on the hot path for http://
// backends without pipelining: the same dispatch/handler contract (undici's raw handler
// interface, so stream-back and the cache do not know which client serves them) and the
// same error codes, at a fraction of the per-request cost (measured in native-bench).
//
// Why it is cheaper: the request head is written as one latin1 string (one syscall, with a
// small body in the same buffer), the response is parsed in place by response-parser.ts with
// header values left as Buffer views, and timeouts are deadlines swept by one interval per
// pool instead of a timer per request.
import net from 'node:net';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { ResponseParser, type ResponseSink } from './response-parser';

export interface Http1PoolOptions {
  readonly connections: number;
  readonly connectTimeout: number;
  readonly headersTimeout: number;
  /** 0 disables it. */
  readonly bodyTimeout: number;
  readonly keepAliveTimeout: number;
  readonly maxHeaderSize: number;
  /** What every socket reads into, shared by all pools of the thread (see READ below). */
  readonly readBuffer: Buffer;
}

/** Errors carry undici's codes, so workers/stages/stream-back.ts maps both clients alike. */
export class UpstreamError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'UpstreamError';
  }
}

type Handler = Dispatcher.DispatchHandler;

/** A request body at most this large leaves in the same write as the head. */
const INLINE_BODY = 64 * 1024;
/** Backends often close idle connections at exactly their advertised Keep-Alive timeout:
 * stop reusing a connection this long before that. */
const KEEP_ALIVE_MARGIN_MS = 1000;
/** Methods that may be sent again after a stale keep-alive connection (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
/** How a stale connection fails: closed or reset by the backend (not a timeout). */
const STALE_CLOSE = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

// READ: every backend socket of the thread reads into one buffer (node:net `onread`,
// --upstream-read-buffer). A Buffer allocated per read is external memory to V8, and at
// 64 KiB responses that churn drove major GCs into ~25% of the worker's CPU (perf). A larger
// buffer means fewer reads, callbacks and client writes per body (1 MiB: 573 -> 433 µs of CPU
// going from 64 to 256 KiB). The parser copies what it keeps; handlers use body chunks
// synchronously (stream-back copies an unsent tail, at most one read's worth, the cache its
// capture).

class PendingRequest {
  conn: Connection | null = null;
  /** onComplete or onError was delivered (or the request was aborted): nothing more is. */
  settled = false;
  /** Already re-sent once after meeting a stale keep-alive connection. */
  replayed = false;
  readonly abort: (err?: Error) => void;

  constructor(readonly pool: Http1Pool, readonly opts: Dispatcher.DispatchOptions, readonly handler: Handler) {
    this.abort = (err) => pool.abortRequest(this, err ?? new UpstreamError('UND_ERR_ABORTED', 'request aborted'));
  }
}

export class Http1Pool {
  readonly host: string;
  readonly port: number;
  private readonly idle: Connection[] = [];
  private readonly queue: PendingRequest[] = [];
  private readonly all = new Set<Connection>();
  private sweeper: NodeJS.Timeout | null = null;
  private readonly sweepEvery: number;
  private closing = false;
  private closedWaiters: (() => void)[] = [];

  constructor(origin: string, readonly options: Http1PoolOptions) {
    const url = new URL(origin);
    this.host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    this.port = url.port === '' ? 80 : Number(url.port);
    // Deadlines are checked by a sweep, so they fire up to one period late: an eighth of
    // the shortest timeout keeps that within 12.5%.
    const shortest = Math.min(...[options.connectTimeout, options.headersTimeout, options.bodyTimeout, options.keepAliveTimeout].filter((t) => t > 0));
    this.sweepEvery = Math.max(5, Math.min(500, Math.floor(shortest / 8)));
  }

  dispatch(opts: Dispatcher.DispatchOptions, handler: Handler): boolean {
    const req = new PendingRequest(this, opts, handler);
    if (this.closing) {
      process.nextTick(() => this.settleWithError(req, new UpstreamError('UND_ERR_CLOSED', 'the pool is closed')));
      return false;
    }
    handler.onConnect!(req.abort);
    if (!req.settled) this.assign(req);
    return true;
  }

  /** Graceful: queued and running requests finish, then every connection is closed. */
  close(): Promise<void> {
    this.closing = true;
    for (const c of this.idle) c.destroy();
    this.idle.length = 0;
    if (this.all.size === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.closedWaiters.push(resolve));
  }

  abortRequest(req: PendingRequest, err: Error): void {
    if (req.settled) return;
    const conn = req.conn;
    if (conn !== null) conn.cut(req);
    else {
      const at = this.queue.indexOf(req);
      if (at >= 0) this.queue.splice(at, 1);
    }
    this.settleWithError(req, err);
  }

  settleWithError(req: PendingRequest, err: Error): void {
    if (req.settled) return;
    req.settled = true;
    req.handler.onError!(err);
  }

  /** The request met a keep-alive connection the backend closed as the request went out: it
   * goes once more, on a new connection (the idle ones are likely just as stale). */
  replay(req: PendingRequest): void {
    req.replayed = true;
    if (this.all.size < this.options.connections) this.connect(req);
    else this.queue.unshift(req);
  }

  private assign(req: PendingRequest): void {
    let conn = this.idle.pop();
    // Skipped: an idle connection past its keep-alive deadline (the backend may be closing it;
    // the sweep may not have reached it yet), and one already destroyed whose 'close' (which
    // takes it out of the pool) has not been emitted yet.
    while (conn !== undefined && (conn.closed || conn.deadline <= performance.now())) {
      conn.destroy();
      conn = this.idle.pop();
    }
    if (conn !== undefined) conn.start(req);
    else if (this.all.size < this.options.connections) this.connect(req);
    else this.queue.push(req);
  }

  private connect(req: PendingRequest): void {
    const conn = new Connection(this, req);
    this.all.add(conn);
    if (this.sweeper === null) this.sweeper = setInterval(sweep, this.sweepEvery, this).unref();
  }

  /** The connection finished a response and can carry another request. */
  release(conn: Connection, keepAliveHint: number): void {
    const next = this.queue.shift();
    if (next !== undefined) {
      conn.start(next);
      return;
    }
    let keep = this.options.keepAliveTimeout;
    if (keepAliveHint >= 0) keep = Math.min(keep, keepAliveHint * 1000 - KEEP_ALIVE_MARGIN_MS);
    if (this.closing || keep <= 0) {
      conn.destroy();
      return;
    }
    conn.deadline = performance.now() + keep;
    this.idle.push(conn);
  }

  /** Socket closed (by either side): forget the connection; a queued request gets a new one. */
  forget(conn: Connection): void {
    if (!this.all.delete(conn)) return;
    const at = this.idle.indexOf(conn);
    if (at >= 0) this.idle.splice(at, 1);
    const next = this.queue.shift();
    if (next !== undefined) this.connect(next);
    else if (this.all.size === 0) {
      if (this.sweeper !== null) clearInterval(this.sweeper);
      this.sweeper = null;
      if (this.closing) for (const resolve of this.closedWaiters.splice(0)) resolve();
    }
  }

  sweepNow(): void {
    const now = performance.now();
    for (const conn of this.all) if (conn.deadline !== 0 && conn.deadline <= now) conn.onDeadline();
  }
}

function sweep(pool: Http1Pool): void {
  pool.sweepNow();
}

const enum Wait {
  Connect,
  Headers,
  Body,
  Idle,
}

class Connection implements ResponseSink {
  private readonly socket: net.Socket;
  private readonly parser: ResponseParser;
  private req: PendingRequest | null;
  /** performance.now() past which the current wait has failed; 0 = none. */
  deadline = 0;
  private waiting = Wait.Connect;
  private connected = false;
  /** A response completed on this connection before: it was idle in the pool. */
  private reused = false;
  private bodyDone = true;
  private body: Readable | null = null;
  private readonly resumeReading = (): void => this.resume();

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
    this.connected = true;
    this.socket.setKeepAlive(true, 60_000);
    const req = this.req;
    if (req !== null) this.start(req);
    else {
      // Its request was aborted while connecting: the connection serves the next one.
      this.waiting = Wait.Idle;
      this.pool.release(this, -1);
    }
  }

  start(req: PendingRequest): void {
    this.req = req;
    req.conn = this;
    if (!this.connected) return; // onConnect starts it
    this.parser.reset(req.opts.method === 'HEAD');
    this.waiting = Wait.Headers;
    this.deadline = 0;
    this.writeRequest(req.opts);
    if (this.bodyDone) this.startHeadersWait();
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
      this.bodyDone = true;
      this.socket.write(head + '\r\n', 'latin1');
    } else if (Buffer.isBuffer(body)) {
      this.bodyDone = true;
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

  /** A streamed request body, with backpressure both ways (request-body.ts pauses the client). */
  private streamBody(body: Readable, chunked: boolean): void {
    this.bodyDone = false;
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
        socket.once('drain', () => body.resume());
      }
    };
    const onEnd = (): void => {
      if (this.body !== body) return;
      if (chunked) socket.write('0\r\n\r\n', 'latin1');
      this.detachBody();
      this.bodyDone = true;
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

  /** Stop sending the body: what the client still sends is dropped. */
  private detachBody(): void {
    const body = this.body;
    if (body === null) return;
    this.body = null;
    body.removeAllListeners('data');
  }

  // ---- the response (ResponseSink) ----

  onHead(status: number, statusText: string, rawHeaders: Buffer[]): boolean {
    const handler = this.req!.handler;
    if (status < 200) {
      // Interim (100, 103): reported, never a reason to pause; the final head follows.
      handler.onHeaders!(status, rawHeaders, this.resumeReading, statusText);
      return true;
    }
    this.waiting = Wait.Body;
    const bodyTimeout = this.pool.options.bodyTimeout;
    this.deadline = bodyTimeout > 0 ? performance.now() + bodyTimeout : 0;
    return this.delivered(handler.onHeaders!(status, rawHeaders, this.resumeReading, statusText));
  }

  onBody(chunk: Buffer): boolean {
    const bodyTimeout = this.pool.options.bodyTimeout;
    if (bodyTimeout > 0) this.deadline = performance.now() + bodyTimeout;
    return this.delivered(this.req!.handler.onData!(chunk));
  }

  onEnd(reusable: boolean): void {
    this.deadline = 0;
    if (!this.bodyDone) {
      // The backend answered before reading the whole body (an early 413, say): the
      // connection is out of step with the body, so it is not reused.
      this.detachBody();
      this.bodyDone = true;
      reusable = false;
    }
    this.complete(reusable);
  }

  /** Handler said stop (its client is slow): stop reading, and the body wait with it. */
  private delivered(keepGoing: boolean): boolean {
    if (!keepGoing) {
      this.socket.pause();
      this.deadline = 0;
    }
    return keepGoing;
  }

  private resume(): void {
    if (this.req === null) return;
    const bodyTimeout = this.pool.options.bodyTimeout;
    if (this.waiting === Wait.Body && bodyTimeout > 0) this.deadline = performance.now() + bodyTimeout;
    this.socket.resume();
    this.guard(() => this.parser.resume());
  }

  private complete(reusable: boolean): void {
    const req = this.req!;
    this.req = null;
    req.conn = null;
    req.settled = true;
    this.reused = true;
    if (reusable && !this.socket.destroyed) {
      this.waiting = Wait.Idle;
      this.pool.release(this, this.parser.keepAliveHint);
    } else {
      this.destroy();
    }
    req.handler.onComplete!([]);
  }

  // ---- the socket ----

  private onSocketData(chunk: Buffer): boolean {
    if (this.req === null || this.parser.idle) {
      // Bytes nobody asked for (no pipelining here): the connection cannot be trusted.
      this.destroy();
      return false;
    }
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
    this.req = null;
    this.detachBody();
    this.destroy();
    if (req === null || req.settled) return;
    req.conn = null;
    if (this.reused && !this.parser.started && !req.replayed && STALE_CLOSE.has((err as UpstreamError).code) && replayable(req.opts)) {
      this.pool.replay(req);
      return;
    }
    this.pool.settleWithError(req, err);
  }

  /** The request was aborted by its owner: drop the connection with it. */
  cut(req: PendingRequest): void {
    if (this.req !== req) return;
    this.req = null;
    req.conn = null;
    this.detachBody();
    this.destroy();
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
  return IDEMPOTENT.has(opts.method) && (opts.body == null || Buffer.isBuffer(opts.body));
}
