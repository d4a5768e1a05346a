// Streaming through ugate: large uploads and downloads arrive intact, backpressure bounds the
// gateway's memory in both directions, bodiless responses stay bodiless, and a backend that
// resets mid-body never turns into a complete-looking response.
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256, startOrigin, startRawOrigin, type Origin, type SeenRequest } from '../helpers/origin';
import { parseResponses, PseudoRandom, rawConnect } from '../helpers/stream-http';
import { eventually, startUgate, type Ugate } from '../helpers/ugate';

const MB = 1024 * 1024;
const CHUNK = 64 * 1024;

/** What the origin managed to hand to its socket for one streamed response. */
interface Download {
  total: number;
  written: number;
  /** Times res.write() returned false (the origin had to wait for 'drain'). */
  blockedWrites: number;
  sha256: string | null;
  closed: boolean;
  finished: boolean;
}

/** What the slow-reading origin consumed of one request body. */
interface SlowUpload {
  read: number;
  closed: boolean;
  complete: boolean;
  /** Set by the test: read everything that is buffered from now on. */
  fast: boolean;
}

const downloads = new Map<string, Download>();
const slowUploads = new Map<string, SlowUpload>();

/** Stream `total` pseudo-random bytes with backpressure: write until write() says stop, then wait for 'drain'. */
function streamBody(res: ServerResponse, id: string, total: number, seed: string, hash: boolean): void {
  const d: Download = { total, written: 0, blockedWrites: 0, sha256: null, closed: false, finished: false };
  downloads.set(id, d);
  const gen = new PseudoRandom(seed, CHUNK);
  const h = hash ? createHash('sha256') : null;
  res.on('close', () => {
    d.closed = true;
    d.finished = res.writableFinished;
  });
  const pump = () => {
    while (d.written < d.total) {
      if (res.destroyed) return;
      const chunk = gen.next(Math.min(CHUNK, d.total - d.written));
      h?.update(chunk);
      d.written += chunk.length;
      if (!res.write(chunk)) {
        d.blockedWrites++;
        res.once('drain', pump);
        return;
      }
    }
    if (h) d.sha256 = h.digest('hex');
    res.end();
  };
  pump();
}

function hashBody(req: IncomingMessage, s: SeenRequest, then: () => void): void {
  const h = createHash('sha256');
  req.on('data', (c: Buffer) => {
    s.bodyBytes += c.length;
    h.update(c);
  });
  req.on('end', () => {
    s.complete = true;
    s.bodySha256 = h.digest('hex');
    then();
  });
}

function originHandler(req: IncomingMessage, res: ServerResponse, s: SeenRequest): void {
  const url = new URL(req.url!, 'http://origin');
  switch (url.pathname) {
    case '/upload':
      hashBody(req, s, () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ bytes: s.bodyBytes, sha256: s.bodySha256 }));
      });
      return;
    case '/download': {
      const size = Number(url.searchParams.get('size'));
      const chunked = url.searchParams.get('chunked') === '1';
      res.writeHead(200, chunked ? { 'content-type': 'application/octet-stream' } : { 'content-type': 'application/octet-stream', 'content-length': String(size) });
      streamBody(res, url.searchParams.get('id')!, size, url.searchParams.get('seed')!, url.searchParams.get('hash') !== '0');
      return;
    }
    case '/slow-upload': {
      // Read the body a little at a time: at most ~64 KiB every 100 ms.
      const u: SlowUpload = { read: 0, closed: false, complete: false, fast: false };
      slowUploads.set(url.searchParams.get('id')!, u);
      req.pause();
      const timer = setInterval(() => {
        let n = 0;
        let c: Buffer | null;
        if (u.fast) {
          // Drain at full speed: flowing mode, not the paused 100 ms trickle.
          clearInterval(timer);
          req.on('data', (d: Buffer) => (u.read += d.length));
          req.resume();
          return;
        }
        while (n < CHUNK && (c = req.read() as Buffer | null) !== null) n += c.length;
        u.read += n;
      }, 100);
      req.on('end', () => {
        u.complete = true;
        res.end('done');
      });
      req.on('close', () => {
        u.closed = true;
        clearInterval(timer);
      });
      return;
    }
    case '/head':
      req.resume();
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '12345' });
      res.end(req.method === 'HEAD' ? undefined : Buffer.alloc(12345, 0x61));
      return;
    case '/204':
      req.resume();
      res.writeHead(204, { 'x-origin': 'no-content' });
      res.end();
      return;
    case '/304':
      req.resume();
      res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=60' });
      res.end();
      return;
    case '/304-length':
      // A 304 may carry the Content-Length the full response would have (RFC 9110 §8.6).
      req.resume();
      res.writeHead(304, { etag: '"v1"', 'content-length': '12345' });
      res.end();
      return;
    default:
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5' });
      res.end('hello');
  }
}

/** One request through node:http (fresh connection), response body hashed as it streams. */
function fetchHashed(port: number, path: string, opts: { method?: string; headers?: Record<string, string>; body?: (req: import('node:http').ClientRequest) => Promise<void> } = {}): Promise<{ status: number; headers: IncomingMessage['headers']; bytes: number; sha256: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const h = createHash('sha256');
      let bytes = 0;
      const head: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        h.update(c);
        if (bytes <= 4096) head.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, bytes, sha256: h.digest('hex'), text: Buffer.concat(head).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.body) opts.body(req).then(() => req.end(), reject);
    else req.end();
  });
}

async function expectServes(port: number): Promise<void> {
  const r = await fetchHashed(port, '/small');
  expect(r.status).toBe(200);
  expect(r.text).toBe('hello');
}

/** Sample ugate's RSS every 100 ms until stopped; returns the largest value seen. */
function sampleRss(u: Ugate): { stop(): number } {
  let max = u.rss();
  const timer = setInterval(() => {
    max = Math.max(max, u.rss());
  }, 100);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(max, u.rss());
    },
  };
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('streaming through ugate', () => {
  let origin: Origin;
  let u: Ugate;

  beforeAll(async () => {
    origin = await startOrigin(originHandler, { readBodyFirst: false });
    u = await startUgate(['--upstream', origin.url, '--max-body-size', '0']);
  });

  afterAll(async () => {
    await u?.stop();
    await origin?.close();
  });

  it('uploads 5 MB with Content-Length intact', async () => {
    const body = randomBytes(5 * MB);
    const sent = sha256(body);
    const r = await fetchHashed(u.port, '/upload?cl', {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) },
      body: async (req) => {
        req.write(body);
      },
    });
    expect(r.status).toBe(200);
    const s = origin.seen.find((x) => x.url === '/upload?cl')!;
    expect(s.headers['content-length']).toBe(String(5 * MB));
    expect(s.complete).toBe(true);
    expect(s.bodyBytes).toBe(5 * MB);
    expect(s.bodySha256).toBe(sent);
    expect(JSON.parse(r.text)).toEqual({ bytes: 5 * MB, sha256: sent });
  });

  it('uploads 5 MB with chunked transfer encoding intact', async () => {
    const body = randomBytes(5 * MB);
    const sent = sha256(body);
    const r = await fetchHashed(u.port, '/upload?chunked', {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: async (req) => {
        // Uneven pieces, respecting backpressure: no Content-Length, so node sends it chunked.
        for (let off = 0; off < body.length; off += 100_000) {
          if (!req.write(body.subarray(off, Math.min(off + 100_000, body.length)))) await new Promise((r) => req.once('drain', r));
        }
      },
    });
    expect(r.status).toBe(200);
    const s = origin.seen.find((x) => x.url === '/upload?chunked')!;
    expect(s.headers['content-length']).toBeUndefined();
    expect(s.headers['transfer-encoding']).toBe('chunked');
    expect(s.complete).toBe(true);
    expect(s.bodyBytes).toBe(5 * MB);
    expect(s.bodySha256).toBe(sent);
    expect(JSON.parse(r.text)).toEqual({ bytes: 5 * MB, sha256: sent });
  });

  for (const chunked of [false, true]) {
    it(`downloads 200 MB ${chunked ? 'chunked (no Content-Length)' : 'with Content-Length'} intact`, async () => {
      const id = `dl-${chunked ? 'chunked' : 'cl'}`;
      const size = 200 * MB;
      const r = await fetchHashed(u.port, `/download?size=${size}&seed=${id}&id=${id}${chunked ? '&chunked=1' : ''}`);
      expect(r.status).toBe(200);
      if (chunked) {
        expect(r.headers['content-length']).toBeUndefined();
        expect(r.headers['transfer-encoding']).toBe('chunked');
      } else {
        expect(r.headers['content-length']).toBe(String(size));
      }
      const d = downloads.get(id)!;
      expect(d.written).toBe(size);
      expect(d.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(r.bytes).toBe(size);
      expect(r.sha256).toBe(d.sha256);
    });
  }

  it('downloads stay intact with the smallest --upstream-read-buffer (4kb: heads and chunk framing split across reads)', async () => {
    const small = await startUgate(['--upstream', origin.url, '--upstream-read-buffer', '4kb'], { workers: 1 });
    try {
      for (const chunked of [false, true]) {
        const id = `small-buffer-${chunked ? 'chunked' : 'cl'}`;
        const r = await fetchHashed(small.port, `/download?size=${5 * MB}&seed=${id}&id=${id}${chunked ? '&chunked=1' : ''}`);
        expect(r.status).toBe(200);
        expect(r.bytes).toBe(5 * MB);
        expect(r.sha256).toBe(downloads.get(id)!.sha256);
      }
    } finally {
      await small.stop();
    }
  });

  it('keeps RSS bounded and throttles the origin while the client pauses, then reads slowly', async () => {
    // Warm-up: the code paths and buffers a streamed response uses, then the baseline.
    for (let i = 0; i < 3; i++) {
      const w = await fetchHashed(u.port, `/download?size=${16 * MB}&seed=warm&id=warm${i}&hash=0`);
      expect(w.bytes).toBe(16 * MB);
    }
    const baseline = u.rss();
    const sampler = sampleRss(u);
    const size = 1024 * MB;
    const conn = rawConnect(u.port, { keepBytes: 4096 });
    try {
      await conn.connected;
      conn.socket.write(`GET /download?size=${size}&seed=rss&id=rss&hash=0 HTTP/1.1\r\nHost: ugate.test\r\n\r\n`);
      conn.socket.pause();
      const d = await eventually(() => downloads.get('rss'));
      await eventually(() => d.blockedWrites > 0, 5000);
      // The client does not read at all for a few seconds.
      await delay(3000);
      const writtenWhilePaused = d.written;
      expect(writtenWhilePaused).toBeLessThan(200 * MB);
      expect(d.closed).toBe(false);

      // Then it reads slowly: about 512 KiB per 100 ms (~5 MB/s) for 3 s.
      let windowBytes = 0;
      const onData = (c: Buffer) => {
        windowBytes += c.length;
        if (windowBytes >= 512 * 1024) conn.socket.pause();
      };
      conn.socket.on('data', onData);
      conn.socket.resume();
      for (let tick = 0; tick < 30; tick++) {
        await delay(100);
        windowBytes = 0;
        conn.socket.resume();
      }
      conn.socket.pause();
      conn.socket.off('data', onData);
      const received = conn.received();
      const peak = sampler.stop();

      const head = conn.data().toString('latin1');
      expect(head).toMatch(/^HTTP\/1\.1 200 /);
      expect(head.toLowerCase()).toContain(`content-length: ${size}\r\n`);
      // The slow reader got something, far from everything, and the origin was held back to
      // what sits in buffers between the two.
      expect(received).toBeGreaterThan(5 * MB);
      expect(received).toBeLessThan(100 * MB);
      expect(d.written).toBeLessThan(200 * MB);
      expect(d.written - received).toBeLessThan(100 * MB);
      expect(peak - baseline).toBeLessThan(64 * MB);
    } finally {
      sampler.stop();
      conn.destroy();
    }
    // The client went away: the upstream response is abandoned and ugate keeps serving.
    const d = downloads.get('rss')!;
    await eventually(() => d.closed, 5000);
    expect(d.finished).toBe(false);
    expect(d.written).toBeLessThan(size);
    await expectServes(u.port);
  });

  it('pauses a fast uploader while the backend reads slowly, with bounded RSS', async () => {
    const baseline = u.rss();
    const sampler = sampleRss(u);
    const size = 256 * MB;
    const piece = Buffer.alloc(MB, 0x5a);
    const conn = rawConnect(u.port);
    let flushed = 0;
    let queued = 0;
    try {
      await conn.connected;
      conn.socket.write(`POST /slow-upload?id=up HTTP/1.1\r\nHost: ugate.test\r\nContent-Type: application/octet-stream\r\nContent-Length: ${size}\r\n\r\n`);
      // Push as fast as the socket takes it, for 4 s at most.
      const deadline = Date.now() + 4000;
      while (Date.now() < deadline && queued < size && !conn.isClosed()) {
        queued += piece.length;
        const more = conn.socket.write(piece, (err) => {
          if (!err) flushed += piece.length;
        });
        if (!more) {
          await Promise.race([new Promise((r) => conn.socket.once('drain', r)), delay(Math.max(0, deadline - Date.now()))]);
        }
      }
      const peak = sampler.stop();
      const up = slowUploads.get('up');
      expect(up, 'the upload reached the origin').toBeDefined();
      expect(conn.isClosed()).toBe(false);
      expect(up!.read).toBeGreaterThan(0);
      expect(up!.complete).toBe(false);
      // Without backpressure 256 MB cross loopback in well under 4 s; with it, only what
      // the buffers between client and origin hold gets through.
      expect(flushed).toBeLessThan(64 * MB);
      expect(peak - baseline).toBeLessThan(64 * MB);
    } finally {
      sampler.stop();
      conn.destroy();
    }
    // The client gave up. While its socket is paused uWS cannot see the close; once the backend
    // drains what the buffers hold, ugate reads again, sees it, and aborts the backend request
    // (documented in the README). It is aborted, never completed.
    const up = slowUploads.get('up')!;
    up.fast = true;
    await eventually(() => up.closed, 10_000);
    expect(up.complete).toBe(false);
    await expectServes(u.port);
  });

  it('HEAD reports the origin Content-Length and sends no body (next GET on the connection parses)', async () => {
    const conn = rawConnect(u.port);
    try {
      await conn.connected;
      conn.socket.write('HEAD /head HTTP/1.1\r\nHost: ugate.test\r\n\r\n');
      const first = await conn.waitFor((b) => parseResponses(b, ['HEAD']) !== null, 5000, 'the HEAD response');
      const head = parseResponses(first, ['HEAD'])!;
      expect(head.responses[0].status).toBe(200);
      expect(head.responses[0].headers['content-length']).toBe('12345');
      expect(head.responses[0].counts['content-length']).toBe(1);
      expect(head.responses[0].headers['transfer-encoding']).toBeUndefined();
      expect(head.rest.length).toBe(0);
      // Any body bytes after the HEAD response would corrupt the next response's framing.
      conn.socket.write('GET /small HTTP/1.1\r\nHost: ugate.test\r\n\r\n');
      const data = await conn.waitFor((b) => b.length > first.length && parseResponses(b, ['HEAD', 'GET']) !== null, 5000, 'the GET response after HEAD');
      const { responses, rest } = parseResponses(data, ['HEAD', 'GET'])!;
      expect(responses[1].status).toBe(200);
      expect(responses[1].body.toString()).toBe('hello');
      expect(rest.length).toBe(0);
    } finally {
      conn.destroy();
    }
  });

  it('pipelined requests: this uWS build closes the connection and never sends a partial answer (README: constraints)', async () => {
    const conn = rawConnect(u.port);
    try {
      await conn.connected;
      conn.socket.write('GET /small?1 HTTP/1.1\r\nHost: ugate.test\r\n\r\nGET /small?2 HTTP/1.1\r\nHost: ugate.test\r\n\r\n');
      await eventually(() => conn.isClosed(), 5000);
      const data = conn.data();
      // Whatever arrived must be whole responses: never a truncated or interleaved one.
      expect(data.length === 0 || parseResponses(data, ['GET']) !== null || parseResponses(data, ['GET', 'GET']) !== null).toBe(true);
    } finally {
      conn.destroy();
    }
    await expectServes(u.port);
  });

  for (const [status, path] of [
    [204, '/204'],
    [304, '/304'],
    [304, '/304-length'],
  ] as const) {
    it(`${status} has no body (${path}; the next response on the connection parses)`, async () => {
      const conn = rawConnect(u.port);
      try {
        await conn.connected;
        conn.socket.write(`GET ${path} HTTP/1.1\r\nHost: ugate.test\r\n\r\n`);
        const first = await conn.waitFor((b) => parseResponses(b, ['GET']) !== null, 5000, `the ${status}`);
        conn.socket.write('GET /small HTTP/1.1\r\nHost: ugate.test\r\n\r\n');
        const data = await conn.waitFor((b) => b.length > first.length && parseResponses(b, ['GET', 'GET']) !== null, 5000, 'the second response');
        const { responses, rest } = parseResponses(data, ['GET', 'GET'])!;
        expect(responses[0].status).toBe(status);
        expect(responses[0].headers['transfer-encoding']).toBeUndefined();
        if (status === 204) {
          expect(responses[0].headers['content-length']).toBeUndefined();
          expect(responses[0].headers['x-origin']).toBe('no-content');
        } else {
          expect(responses[0].headers.etag).toBe('"v1"');
          if (path === '/304-length') expect(responses[0].headers['content-length']).toBe('12345');
        }
        expect(responses[1].status).toBe(200);
        expect(responses[1].body.toString()).toBe('hello');
        expect(rest.length).toBe(0);
      } finally {
        conn.destroy();
      }
    });
  }
});

describe('backend resets the connection mid-body', () => {
  let raw: Awaited<ReturnType<typeof startRawOrigin>>;
  let u: Ugate;
  /** Backend sockets that sent a partial /reset response, waiting to be reset. */
  const toReset: Socket[] = [];
  const DECLARED = 1_000_000;

  beforeAll(async () => {
    raw = await startRawOrigin((sock) => {
      let buf = '';
      sock.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        for (let end = buf.indexOf('\r\n\r\n'); end !== -1; end = buf.indexOf('\r\n\r\n')) {
          const head = buf.slice(0, end);
          buf = buf.slice(end + 4);
          if (head.startsWith('GET /reset')) {
            sock.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${DECLARED}\r\n\r\n`);
            sock.write(Buffer.alloc(1000, 0x62));
            toReset.push(sock);
          } else {
            sock.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok');
          }
        }
      });
    });
    u = await startUgate(['--upstream', raw.url]);
  });

  afterAll(async () => {
    await u?.stop();
    await raw?.close();
  });

  const resetBackends = () => {
    for (const s of toReset.splice(0)) s.resetAndDestroy();
  };

  it('cuts the client connection instead of completing the response (raw client)', async () => {
    const conn = rawConnect(u.port);
    try {
      await conn.connected;
      conn.socket.write('GET /reset HTTP/1.1\r\nHost: ugate.test\r\n\r\n');
      // Once the client holds the head and the first body bytes, the backend resets.
      await conn.waitFor((b) => {
        const end = b.indexOf('\r\n\r\n');
        return end !== -1 && b.length > end + 4;
      }, 5000, 'the head and first body bytes');
      resetBackends();
      await conn.waitFor((_b, closed) => closed, 5000, 'the connection to close');
      const data = conn.data();
      const end = data.indexOf('\r\n\r\n');
      const head = data.subarray(0, end).toString('latin1');
      expect(head).toMatch(/^HTTP\/1\.1 200 /);
      expect(head.toLowerCase()).toContain(`content-length: ${DECLARED}`);
      const bodyBytes = data.length - end - 4;
      expect(bodyBytes).toBeGreaterThan(0);
      expect(bodyBytes).toBeLessThan(DECLARED);
      expect(parseResponses(data, ['GET'])).toBeNull();
    } finally {
      conn.destroy();
    }
  });

  it('the client library sees an aborted response, never a complete one (node:http)', async () => {
    const outcome = await new Promise<{ status: number; bytes: number; completed: boolean; error: string | null }>((resolve) => {
      let bytes = 0;
      let status = 0;
      let settled = false;
      const settle = (completed: boolean, error: string | null) => {
        if (settled) return;
        settled = true;
        resolve({ status, bytes, completed, error });
      };
      const req = httpRequest({ host: '127.0.0.1', port: u.port, path: '/reset', agent: false }, (res) => {
        status = res.statusCode!;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          resetBackends();
        });
        res.on('end', () => settle(true, null));
        res.on('aborted', () => settle(false, 'aborted'));
        res.on('error', (err: NodeJS.ErrnoException) => settle(false, err.code ?? err.message));
        res.on('close', () => settle(res.complete, res.complete ? null : 'closed'));
      });
      req.on('error', (err: NodeJS.ErrnoException) => settle(false, err.code ?? err.message));
      req.setTimeout(10_000, () => req.destroy(new Error('test timeout')));
      req.end();
    });
    expect(outcome.status).toBe(200);
    expect(outcome.completed).toBe(false);
    expect(outcome.error).not.toBeNull();
    expect(outcome.error).not.toBe('test timeout');
    expect(outcome.bytes).toBeLessThan(DECLARED);
  });

  it('keeps serving after the resets', async () => {
    for (let i = 0; i < 10; i++) {
      const r = await fetchHashed(u.port, '/ok');
      expect(r.status).toBe(200);
      expect(r.text).toBe('ok');
    }
    const stats = await u.stats();
    expect(stats.workerRestarts).toBe(0);
  });
});
