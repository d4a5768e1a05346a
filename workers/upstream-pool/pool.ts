// The lean upstream client: one pool of keep-alive HTTP/1.1 connections per backend, per
// worker, speaking plain TCP through node:net. It replaces undici on the hot path for http://
// backends: the same dispatch/handler contract (undici's raw handler
// interface, so stream-back and the cache do not know which client serves them) and the
// same error codes, at a fraction of the per-request cost (measured in native-bench).
//
// Why it is cheaper: the request head is written as one latin1 string (one syscall, with a
// small body in the same buffer), the response is parsed in place by response-parser.ts with
// header values left as Buffer views, sockets read into one shared buffer, and timeouts are
// deadlines swept by one interval per pool instead of a timer per request.
//
// This file: the pool (idle stack, FIFO queue, limits, sweeping, where a pipelined request
// goes). connection.ts: one socket, one request at a time or a pipeline of them.
import type { Dispatcher } from 'undici';
import { isIdempotent } from '../http-fields';
import { Connection, UpstreamError } from './connection';

export interface Http1PoolOptions {
  readonly connections: number;
  readonly connectTimeout: number;
  readonly headersTimeout: number;
  /** 0 disables it. */
  readonly bodyTimeout: number;
  readonly keepAliveTimeout: number;
  readonly maxHeaderSize: number;
  /** Requests in flight on one connection (--pipelining); 1 = none behind another. */
  readonly pipelining: number;
  /** What every socket reads into, shared by all pools of the thread (connection.ts). */
  readonly readBuffer: Buffer;
}

// One per worker thread, shared by all its lean pools (connection.ts says why). A reload with
// another --upstream-read-buffer makes a new one for new pools; kept pools keep theirs.
let readBuffer: Buffer | null = null;

export function sharedReadBuffer(size: number): Buffer {
  if (readBuffer === null || readBuffer.length !== size) readBuffer = Buffer.allocUnsafe(size);
  return readBuffer;
}

export type Handler = Dispatcher.DispatchHandler;

/** Backends often close idle connections at exactly their advertised Keep-Alive timeout:
 * stop reusing a connection this long before that. */
const KEEP_ALIVE_MARGIN_MS = 1000;

export class PendingRequest {
  conn: Connection | null = null;
  /** onComplete or onError was delivered (or the request was aborted): nothing more is. */
  settled = false;
  /** Already re-sent once (after a stale keep-alive connection, a broken pipeline, or a late
   * answer ahead of it): never pipelined again. */
  replayed = false;
  /** performance.now() when it was written behind another (pipelining; connection.moveLate). */
  sentAt = 0;
  /** Bodyless and idempotent: may share a connection with other requests in flight. */
  readonly bodylessIdempotent: boolean;
  readonly abort: (err?: Error) => void;

  constructor(readonly pool: Http1Pool, readonly opts: Dispatcher.DispatchOptions, readonly handler: Handler) {
    this.abort = (err) => pool.abortRequest(this, err ?? new UpstreamError('UND_ERR_ABORTED', 'request aborted'));
    this.bodylessIdempotent = opts.body == null && isIdempotent(opts.method);
  }

  /** A re-sent request goes alone: if pipelining broke it once, it does not risk that again. */
  get pipelinable(): boolean {
    return this.bodylessIdempotent && !this.replayed;
  }
}

export class Http1Pool {
  readonly host: string;
  readonly port: number;
  private readonly idle: Connection[] = [];
  private readonly queue: PendingRequest[] = [];
  private readonly all = new Set<Connection>();
  /** Connections in `all` that will be dropped at their turn (connection.ts, dropsAtTurn): they
   * take no new request, so they do not count toward --pool-connections (hasRoom()). */
  private leaving = 0;
  /** Pipelining: the connection the last pipelinable request went to. Later ones join it while
   * it has room, so one turn's requests share a write (connection.ts) instead of spreading one
   * per idle connection. */
  private filling: Connection | null = null;
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
    this.resend([req]);
  }

  /** Sent again, in their order and ahead of the queue: they have waited already. */
  resend(reqs: PendingRequest[]): void {
    let i = 0;
    for (; i < reqs.length && this.hasRoom(); i++) this.connect(reqs[i]);
    if (i < reqs.length) this.queue.unshift(...reqs.slice(i));
  }

  private assign(req: PendingRequest): void {
    // Not past a queue: a request waiting there (a POST, a re-send) goes first, or a stream of
    // pipelinable requests could keep every connection busy and it would never get one.
    const pipelined = this.options.pipelining > 1 && req.pipelinable && this.queue.length === 0;
    if (pipelined && this.filling !== null && this.filling.canTake()) {
      this.filling.start(req);
      return;
    }
    let conn = this.idle.pop();
    // Skipped: an idle connection past its keep-alive deadline (the backend may be closing it;
    // the sweep may not have reached it yet), and one already destroyed whose 'close' (which
    // takes it out of the pool) has not been emitted yet.
    while (conn !== undefined && (conn.closed || conn.deadline <= performance.now())) {
      conn.destroy();
      conn = this.idle.pop();
    }
    if (conn !== undefined) conn.start(req);
    else if (this.hasRoom()) conn = this.connect(req);
    else if (pipelined && (conn = this.withRoom()) !== undefined) conn.start(req);
    else this.queue.push(req);
    if (pipelined && conn !== undefined) this.filling = conn;
  }

  /** Another connection may be opened: fewer than --pool-connections, not counting those that
   * will be dropped at their turn. A request moved off one (or queued while it still serves
   * the answers ahead of the drop) would otherwise wait for that very connection to go, which
   * an endless event stream ahead never lets happen: with --pool-connections 1 it had nowhere
   * else to go. The backend may so see one connection more per connection being dropped. */
  private hasRoom(): boolean {
    return this.all.size - this.leaving < this.options.connections;
  }

  /** A connection will be dropped at its turn: queued requests may have the room it frees. */
  dropping(): void {
    this.leaving++;
    while (this.queue.length > 0 && this.hasRoom()) this.connect(this.queue.shift()!);
  }

  /** Every connection is open: the one with the shortest pipeline that has room. */
  private withRoom(): Connection | undefined {
    let best: Connection | undefined;
    for (const conn of this.all) if (conn.canTake() && (best === undefined || conn.inFlight < best.inFlight)) best = conn;
    return best;
  }

  private connect(req: PendingRequest): Connection {
    const conn = new Connection(this, req);
    this.all.add(conn);
    if (this.sweeper === null) this.sweeper = setInterval(sweep, this.sweepEvery, this).unref();
    return conn;
  }

  /** The connection finished a response and can carry another request. */
  release(conn: Connection, keepAliveHint: number): void {
    const next = this.queue.shift();
    if (next !== undefined) {
      conn.start(next);
      this.room(conn);
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

  /** A pipelining connection has room again: queued requests that may share it go. */
  room(conn: Connection): void {
    while (this.queue.length > 0 && this.queue[0].pipelinable && conn.canTake()) conn.start(this.queue.shift()!);
  }

  /** Socket closed (by either side): forget the connection; a queued request gets a new one. */
  forget(conn: Connection): void {
    if (this.filling === conn) this.filling = null;
    if (!this.all.delete(conn)) return;
    // A dropped connection gave its room to the queue when it was marked (dropping()).
    if (conn.dropsAtTurn) this.leaving--;
    const at = this.idle.indexOf(conn);
    if (at >= 0) this.idle.splice(at, 1);
    if (this.queue.length > 0 && this.hasRoom()) this.connect(this.queue.shift()!);
    else if (this.all.size === 0) {
      if (this.sweeper !== null) clearInterval(this.sweeper);
      this.sweeper = null;
      if (this.closing) for (const resolve of this.closedWaiters.splice(0)) resolve();
    }
  }

  sweepNow(): void {
    const now = performance.now();
    for (const conn of this.all) {
      if (conn.deadline !== 0 && conn.deadline <= now) conn.onDeadline();
      conn.moveLate(now);
    }
  }

  /** Holds the place of a request moved off a pipelining connection: settled, never sent. */
  placeHolder(): PendingRequest {
    const held = new PendingRequest(this, PLACE_HELD, NO_HANDLER);
    held.settled = true;
    return held;
  }
}

const PLACE_HELD: Dispatcher.DispatchOptions = { method: 'GET', path: '/' };
const NO_HANDLER: Handler = {};

function sweep(pool: Http1Pool): void {
  pool.sweepNow();
}
