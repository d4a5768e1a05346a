// The undici Pool for what the lean client does not serve (https:// backends, and
// --upstream-client undici), with ugate's timeouts kept on Node's own timers.
//
// undici runs its connect, headers and body timeouts on a coarse timer wheel (half-second
// ticks, lib/util/timers.js): a 200 ms --headers-timeout answered its 504 after 1.0 s, and
// every timeout could fire up to a second late, slowing failover by as much. Here undici's own
// are off and each is a native timer: per connection attempt, and per request while it waits
// for its head or between two reads of its body. This path is not the lean client's hot path,
// so a timer per request is affordable.
import type { Socket } from 'node:net';
import { buildConnector, errors, Pool, type Dispatcher } from 'undici';

export interface UndiciPoolOptions {
  readonly connections: number;
  readonly pipelining: number;
  readonly connectTimeout: number;
  readonly headersTimeout: number;
  readonly bodyTimeout: number;
  readonly keepAliveTimeout: number;
  readonly maxHeaderSize: number;
}

export class UndiciPool extends Pool {
  private readonly headersTimeout: number;
  private readonly bodyTimeout: number;

  constructor(origin: string, o: UndiciPoolOptions) {
    // A request's abort destroys its connection, and with --pipelining the requests ahead of it
    // on that connection too: only undici knows which one is being answered, so there it keeps
    // the headers timeout, coarse as it is.
    const ownHeadersTimeout = o.pipelining > 1 ? 0 : o.headersTimeout;
    super(origin, {
      connections: o.connections,
      pipelining: o.pipelining,
      connect: timedConnector(o.connectTimeout),
      headersTimeout: o.headersTimeout - ownHeadersTimeout,
      bodyTimeout: 0,
      keepAliveTimeout: o.keepAliveTimeout,
      keepAliveMaxTimeout: o.keepAliveTimeout,
      maxHeaderSize: o.maxHeaderSize,
    });
    this.headersTimeout = ownHeadersTimeout;
    this.bodyTimeout = o.bodyTimeout;
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (this.headersTimeout === 0 && this.bodyTimeout === 0) return super.dispatch(opts, handler);
    return super.dispatch(opts, new TimedHandler(handler as Handler, this.headersTimeout, this.bodyTimeout) as Dispatcher.DispatchHandler);
  }
}

/** undici's connector without its timeout, and ours around it: at the deadline the socket is
 * destroyed with undici's own error, which its connector hands to the pool as it would. */
function timedConnector(timeout: number): buildConnector.connector {
  const connect = buildConnector({ timeout: 0 });
  if (timeout === 0) return connect;
  return (opts, callback) => {
    let timer: NodeJS.Timeout | null = null;
    // The connector returns the socket it is connecting (undici's types say void; the tests
    // of the connect timeout fail if that ever changes).
    const socket = connect(opts, (err, connected) => {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      callback(err as Error, connected as never);
    }) as unknown as Socket;
    timer = setTimeout(() => {
      timer = null;
      socket.destroy(new errors.ConnectTimeoutError(`connect timeout (${opts.hostname}:${opts.port}, ${timeout} ms)`));
    }, timeout);
    return socket;
  };
}

/** The legacy handler interface that undici calls (and stream-back and the cache implement). */
interface Handler {
  onConnect(abort: (err?: Error) => void, context?: object): void;
  onHeaders(status: number, headers: Buffer[], resume: () => void, statusText: string): boolean;
  onData(chunk: Buffer): boolean;
  onComplete(trailers: Buffer[] | null): void;
  onError(err: Error): void;
  onUpgrade?(status: number, headers: Buffer[] | null, socket: unknown): void;
  onRequestSent?(): void;
  onBodySent?(chunk: unknown): void;
}

/** Wraps a request's handler with its headers timeout (from the end of the request body, as
 * undici counts it, until the final head) and its body timeout (between two reads; not while
 * the handler holds the body paused for a slow client). */
class TimedHandler implements Handler {
  private abort: ((err?: Error) => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private headed = false;
  /** Completed or failed: a late resume() arms nothing. */
  private ended = false;

  constructor(private readonly inner: Handler, private readonly headersTimeout: number, private readonly bodyTimeout: number) {}

  onConnect(abort: (err?: Error) => void, context?: object): void {
    this.abort = abort;
    this.inner.onConnect(abort, context);
  }

  onBodySent(chunk: unknown): void {
    this.inner.onBodySent?.(chunk);
  }

  onRequestSent(): void {
    // A backend may answer before the upload ends: its head is in, nothing to wait for.
    if (!this.headed) this.arm(this.headersTimeout, false);
    this.inner.onRequestSent?.();
  }

  onHeaders(status: number, headers: Buffer[], resume: () => void, statusText: string): boolean {
    this.stop();
    if (status < 200) {
      // An interim answer: the final head gets a fresh wait.
      this.arm(this.headersTimeout, false);
      return this.inner.onHeaders(status, headers, resume, statusText);
    }
    this.headed = true;
    const go = this.inner.onHeaders(status, headers, () => this.resumed(resume), statusText);
    if (go) this.arm(this.bodyTimeout, true);
    return go;
  }

  onData(chunk: Buffer): boolean {
    const go = this.inner.onData(chunk);
    if (!go) this.stop();
    else if (this.timer !== null) this.timer.refresh();
    return go;
  }

  onComplete(trailers: Buffer[] | null): void {
    this.ended = true;
    this.stop();
    this.inner.onComplete(trailers);
  }

  onError(err: Error): void {
    this.ended = true;
    this.stop();
    this.inner.onError(err);
  }

  onUpgrade(status: number, headers: Buffer[] | null, socket: unknown): void {
    this.stop();
    this.inner.onUpgrade?.(status, headers, socket);
  }

  private resumed(resume: () => void): void {
    if (!this.ended) this.arm(this.bodyTimeout, true);
    resume();
  }

  private arm(ms: number, body: boolean): void {
    this.stop();
    if (ms === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.abort?.(body ? new errors.BodyTimeoutError() : new errors.HeadersTimeoutError());
    }, ms);
    // As undici's were: a request still waiting does not by itself keep a stopping worker up.
    this.timer.unref();
  }

  private stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
