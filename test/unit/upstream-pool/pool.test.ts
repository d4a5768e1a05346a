// The lean upstream client's pool (workers/upstream-pool), in process, against a raw backend on
// loopback: bytes the backend sends after a complete response that nobody asked for must never
// become the answer to the next request on that connection. The handler below is the dispatch
// contract stream-back implements; it pauses where the test says, as a slow client would.
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Http1Pool, type Http1PoolOptions } from '../../../workers/upstream-pool/pool';
import { onRequestHeads } from '../../helpers/raw';

const EVIL = 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL';

interface Answer {
  status: number;
  body: string;
  error: string | null;
}

/** A dispatch handler that collects the answer; `pauseAtEnd`: returns false from onData once
 * `bodyLength` bytes have come (a client too slow to take the last chunk), and keeps the
 * resume function for the test. */
function collect(opts: { pauseAtEnd?: number } = {}) {
  let status = 0;
  let body = '';
  let resume: (() => void) | null = null;
  let settle!: (a: Answer) => void;
  const done = new Promise<Answer>((r) => (settle = r));
  let reachedEnd!: () => void;
  const atEnd = new Promise<void>((r) => (reachedEnd = r));
  const handler = {
    onConnect() {},
    onHeaders(s: number, _raw: Buffer[], res: () => void) {
      status = s;
      resume = res;
      return true;
    },
    onData(chunk: Buffer) {
      body += chunk.toString('latin1');
      if (opts.pauseAtEnd !== undefined && body.length === opts.pauseAtEnd) {
        reachedEnd();
        return false;
      }
      return true;
    },
    onComplete() {
      settle({ status, body, error: null });
    },
    onError(err: Error & { code?: string }) {
      settle({ status, body, error: err.code ?? err.message });
    },
  };
  return { handler, done, atEnd, resume: () => resume!() };
}

/** A raw backend: `answer(path, socket)` writes whatever it likes; requests are recorded with
 * the number of the connection they came on. */
async function rawBackend(answer: (path: string, sock: Socket) => void) {
  const seen: { path: string; conn: number }[] = [];
  const sockets = new Set<Socket>();
  let conns = 0;
  const server: Server = createServer((sock) => {
    const conn = ++conns;
    sockets.add(sock);
    sock.on('error', () => {});
    sock.once('close', () => sockets.delete(sock));
    onRequestHeads(sock, (path) => {
      seen.push({ path, conn });
      answer(path, sock);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  return { port, seen, close };
}

function ok(body: string): string {
  return `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
}

function pool(port: number, readBufferSize = 64 * 1024): Http1Pool {
  const options: Http1PoolOptions = {
    connections: 1,
    connectTimeout: 2000,
    headersTimeout: 2000,
    bodyTimeout: 2000,
    keepAliveTimeout: 10_000,
    maxHeaderSize: 64 * 1024,
    pipelining: 1,
    readBuffer: Buffer.alloc(readBufferSize),
  };
  return new Http1Pool(`http://127.0.0.1:${port}`, options);
}

const get = (path: string) => ({ method: 'GET', path, headers: ['host', 'backend'] });

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

/** A raw backend answering the paths in `special` as they say and any other with "real PATH",
 * and a pool of one connection to it; both closed after the test. */
async function backendWithPool(special: Record<string, (sock: Socket) => void>, readBufferSize?: number) {
  const backend = await rawBackend((path, sock) => (special[path] ?? ((s: Socket) => s.write(ok(`real ${path}`))))(sock));
  const p = pool(backend.port, readBufferSize);
  cleanup.push(backend.close, () => p.close());
  return { backend, p };
}

describe('Http1Pool: unsolicited bytes after a complete response', () => {
  it('bytes arriving while the handler holds a complete response paused drop the connection: the request queued behind gets its own answer on a new one', async () => {
    let first: Socket | null = null;
    const { backend, p } = await backendWithPool({
      '/a': (sock) => {
        first = sock;
        sock.write(ok('a'.repeat(100)));
      },
    });
    const a = collect({ pauseAtEnd: 100 });
    p.dispatch(get('/a'), a.handler);
    await a.atEnd;
    // Unrequested, while the response is complete but its client has not taken it all: it lands
    // in the kernel buffer of a connection the pool would hand to the next request.
    await new Promise<void>((r) => first!.write(EVIL, () => r()));
    await new Promise((r) => setTimeout(r, 30));
    const b = collect();
    p.dispatch(get('/b'), b.handler); // queued: one connection, busy with /a
    a.resume();
    expect(await a.done).toEqual({ status: 200, body: 'a'.repeat(100), error: null });
    expect(await b.done).toEqual({ status: 200, body: 'real /b', error: null });
    expect(backend.seen).toEqual([
      { path: '/a', conn: 1 },
      { path: '/b', conn: 2 },
    ]);
  });

  it('a reset arriving while the handler holds a complete response: the response is still delivered whole, not failed', async () => {
    let first: Socket | null = null;
    let sawB!: () => void;
    const bArrived = new Promise<void>((r) => (sawB = r));
    const { backend, p } = await backendWithPool({
      '/a': (sock) => {
        first = sock;
        sock.write(ok('a'.repeat(100)));
      },
      '/b': (sock) => {
        sawB();
        sock.write(ok('real /b'));
      },
    });
    const a = collect({ pauseAtEnd: 100 });
    p.dispatch(get('/a'), a.handler);
    await a.atEnd;
    const b = collect();
    p.dispatch(get('/b'), b.handler); // queued: one connection, held by /a
    // A backend closing the connection abortively (RST) while ugate's client is slow: every
    // byte of /a had been read. /b reaching the backend on a new connection shows the pool has
    // seen the reset and forgotten the connection.
    first!.resetAndDestroy();
    await bArrived;
    a.resume();
    expect(await a.done).toEqual({ status: 200, body: 'a'.repeat(100), error: null });
    expect(await b.done).toEqual({ status: 200, body: 'real /b', error: null });
    expect(backend.seen.map((s) => s.conn)).toEqual([1, 2]);
  });

  it('a chunked response whose end was read but held while its handler paused: not followed on that connection, since bytes may wait unread', async () => {
    let first: Socket | null = null;
    const { backend, p } = await backendWithPool({
      '/c': (sock) => {
        first = sock;
        sock.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
      },
    });
    // Paused on the only chunk: its terminator is held by the parser, the socket is paused.
    const c = collect({ pauseAtEnd: 5 });
    p.dispatch(get('/c'), c.handler);
    await c.atEnd;
    await new Promise<void>((r) => first!.write(EVIL, () => r()));
    await new Promise((r) => setTimeout(r, 30));
    const b = collect();
    p.dispatch(get('/b'), b.handler);
    c.resume();
    expect(await c.done).toEqual({ status: 200, body: 'hello', error: null });
    expect(await b.done).toEqual({ status: 200, body: 'real /b', error: null });
    expect(backend.seen.map((s) => s.conn)).toEqual([1, 2]);
  });

  it('a response that ends exactly where a full read ends is not followed on that connection: what the kernel already holds behind it is never the next answer', async () => {
    // A 64-byte read buffer and an answer of exactly 128 bytes followed, in the same write, by
    // an unrequested one: the read that completes /a is full, and libuv reads again at once.
    const bodyA = 'a'.repeat(89);
    const answerA = ok(bodyA);
    expect(answerA.length).toBe(128);
    const { backend, p } = await backendWithPool({ '/a': (sock) => sock.write(answerA + EVIL) }, 64);
    const a = collect();
    const b = collect();
    p.dispatch(get('/a'), a.handler);
    p.dispatch(get('/b'), b.handler); // queued behind /a
    expect((await a.done).body).toBe(bodyA);
    expect(await b.done).toEqual({ status: 200, body: 'real /b', error: null });
    expect(backend.seen.map((s) => s.conn)).toEqual([1, 2]);
  });

  it('unsolicited bytes in the read that completes a response, and while idle: the connection is dropped, the next request gets its own answer', async () => {
    const { backend, p } = await backendWithPool({
      '/same-read': (sock) => sock.write(ok('x') + EVIL),
      '/idle': (sock) => {
        sock.write(ok('y'));
        setTimeout(() => sock.write(EVIL), 20);
      },
    });
    for (const path of ['/same-read', '/idle']) {
      const first = collect();
      p.dispatch(get(path), first.handler);
      expect((await first.done).error).toBeNull();
      await new Promise((r) => setTimeout(r, 60));
      const next = collect();
      p.dispatch(get(`/after${path}`), next.handler);
      expect(await next.done).toEqual({ status: 200, body: `real /after${path}`, error: null });
    }
    // /same-read on 1 (dropped), its follower on 2, /idle on 2 again (dropped), its follower on 3.
    expect(backend.seen.map((s) => s.conn)).toEqual([1, 2, 2, 3]);
  });
});
