// The lean upstream client (workers/upstream-pool) against backends that answer byte by byte
// as scripted: framing variants, connection reuse, pool limits, timeouts and malformed heads.
// The general proxy, streaming and error suites run on it too (it is the default client).
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hangingConnectPort, startOrigin, startRawOrigin, sha256, type Origin } from '../helpers/origin';
import { onRequestHeads, rawRequest } from '../helpers/raw';
import { rawConnect } from '../helpers/stream-http';
import { eventually, sleep, startUgate, type Ugate } from '../helpers/ugate';

type Step = string | Buffer | number | 'end';

/** Write the parts in order (numbers are pauses in ms; 'end' closes the connection). */
async function send(sock: Socket, parts: Step[]): Promise<void> {
  for (const p of parts) {
    if (sock.destroyed) return;
    if (p === 'end') sock.end();
    else if (typeof p === 'number') await new Promise((r) => setTimeout(r, p));
    else sock.write(p);
  }
}

/** A raw origin answering each request head (GET, no body) with the steps `script` gives. */
function scriptedOrigin(script: (path: string) => Step[]) {
  return startRawOrigin((sock) => {
    let chain = Promise.resolve();
    onRequestHeads(sock, (path) => {
      chain = chain.then(() => send(sock, script(path)));
    });
  });
}

const BIG = Buffer.alloc(100_000, 'abcdefghijklmnopqrstuvwxyz0123456789');

const SCRIPTS: Record<string, Step[]> = {
  '/ok': ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'],
  '/trickled-chunks': [
    'HTTP/1.1 200 OK\r\nTransfer-',
    20,
    'Encoding: chunked\r\n\r\n4;name=value\r',
    20,
    '\nWiki\r\n5\r\npe',
    20,
    'dia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r',
    20,
    '\n',
  ],
  '/until-close': ['HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n', BIG.subarray(0, 40_000), 10, BIG.subarray(40_000), 'end'],
  '/early-hints': ['HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n', 20, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal'],
  '/te-and-cl': ['HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nchunky\r\n0\r\n\r\n'],
  '/trailing-bytes': ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA'],
  '/conflicting-length': ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok'],
  '/bare-lf': ['HTTP/1.1 200 OK\nContent-Length: 2\n\nok'],
  '/obs-fold': ['HTTP/1.1 200 OK\r\nX-A: one\r\n  two\r\nContent-Length: 2\r\n\r\nok'],
  '/injected-cr': ['HTTP/1.1 200 OK\r\nX-A: one\rSet-Cookie: evil=1\r\nContent-Length: 2\r\n\r\nok'],
  '/bad-chunk': ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n'],
  '/stall-mid-body': ['HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789', 5000],
  '/hint': ['HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 2\r\n\r\nok'],
  // Found by hardening: heads the parser forwarded although they are not valid HTTP.
  '/status-700': ['HTTP/1.1 700 Weird\r\nContent-Length: 2\r\n\r\nok'],
  '/vt-in-value': ['HTTP/1.1 200 OK\r\nX-A: one\x0btwo\r\nContent-Length: 2\r\n\r\nok'],
  '/del-in-value': ['HTTP/1.1 200 OK\r\nX-A: one\x7ftwo\r\nContent-Length: 2\r\n\r\nok'],
  '/esc-in-reason': ['HTTP/1.1 200 O\x1bK\r\nContent-Length: 2\r\n\r\nok'],
  '/status-600': ['HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok'],
  '/status-999': ['HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\nok'],
  '/status-099': ['HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok'],
  '/nul-in-reason': ['HTTP/1.1 200 O\x00K\r\nContent-Length: 2\r\n\r\nok'],
  '/esc-in-reason-cached': ['HTTP/1.1 200 O\x1bK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok'],
  '/ctl-in-trailer': ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: a\x01b\r\n\r\n'],
  '/latin1-reason': [Buffer.from('HTTP/1.1 200 Ol\xe9\r\nContent-Length: 2\r\n\r\nok', 'latin1')],
  '/latin1-reason-cached': [Buffer.from('HTTP/1.1 200 Ol\xe9\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok', 'latin1')],
  // Empty lines before a status line (RFC 9112 §2.2): up to 4 tolerated, in one read or apart.
  '/crlf-before': ['\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'],
  '/crlf-apart': ['\r\n', 30, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'],
  '/cr-lf-apart': ['\r', 30, '\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'],
  '/lf-before': ['\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'],
  '/four-empty-lines': ['\r\n\n\r\n', 30, '\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'],
  '/five-empty-lines': ['\r\n\r\n\r\n\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'],
  '/garbage-line-before': ['\r\nx\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'],
  // Closes after every response without saying so (no Connection: close).
  '/fin': ['HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nfin', 'end'],
};

describe('lean upstream client: response framing and reuse', () => {
  let origin: Awaited<ReturnType<typeof scriptedOrigin>>;
  let u: Ugate;

  beforeAll(async () => {
    origin = await scriptedOrigin((path) => SCRIPTS[path] ?? ['HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n']);
    u = await startUgate(['--upstream', origin.url, '--body-timeout', '400ms', '--retries', '0'], { workers: 1 });
  });
  afterAll(async () => {
    await u.stop();
    await origin.close();
  });

  /** Origin connections opened while `run` ran. */
  async function newConnections(run: () => Promise<void>): Promise<number> {
    const before = origin.connections;
    await run();
    return origin.connections - before;
  }

  it('keeps one backend connection for sequential requests', async () => {
    await fetch(u.url + '/ok');
    const opened = await newConnections(async () => {
      for (let i = 0; i < 20; i++) {
        const r = await fetch(u.url + '/ok');
        expect(await r.text()).toBe('ok');
      }
    });
    expect(opened).toBe(0);
  });

  it('decodes a chunked body trickled in odd pieces, with chunk extensions and trailers, and reuses the connection', async () => {
    await fetch(u.url + '/ok');
    const opened = await newConnections(async () => {
      for (let i = 0; i < 3; i++) {
        const r = await fetch(u.url + '/trickled-chunks');
        expect(r.status).toBe(200);
        expect(await r.text()).toBe('Wikipedia in\r\n\r\nchunks.');
      }
    });
    expect(opened).toBe(0);
  });

  /** After `path`, the next request needs a new connection: that one was not kept. */
  async function notReusedAfter(path: string, check: (r: Response) => Promise<void>): Promise<void> {
    await fetch(u.url + '/ok');
    await check(await fetch(u.url + path));
    expect(await newConnections(async () => void (await fetch(u.url + '/ok')).text())).toBe(1);
  }

  it('reads a body delimited by the backend closing, whole, and opens a new connection after it', async () => {
    await notReusedAfter('/until-close', async (r) => {
      expect(r.status).toBe(200);
      expect(sha256(Buffer.from(await r.arrayBuffer()))).toBe(sha256(BIG));
    });
  });

  it('skips an interim 103 Early Hints and forwards the final response', async () => {
    const r = await fetch(u.url + '/early-hints');
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('final');
  });

  it('bytes after a complete response: the response is forwarded, the connection is dropped', async () => {
    await notReusedAfter('/trailing-bytes', async (r) => expect(await r.text()).toBe('ok'));
  });

  it('502 UPSTREAM_BAD_RESPONSE for heads a lax parser would let through (Transfer-Encoding with Content-Length, conflicting lengths, bare LF, obs-fold, a CR inside a value, a bad chunk size)', async () => {
    const start = Date.now();
    for (const path of ['/te-and-cl', '/conflicting-length', '/bare-lf', '/obs-fold', '/injected-cr', '/bad-chunk']) {
      const r = await fetch(u.url + path);
      const body = await r.text();
      if (path === '/bad-chunk') {
        // The head was fine and may already be on its way: either a 502 or a cut response.
        expect(r.status === 502 || body !== 'ok').toBe(true);
        continue;
      }
      expect(r.status, path).toBe(502);
      expect(r.headers.get('x-ugate-error'), path).toBe('UGATE_ERR_UPSTREAM_BAD_RESPONSE');
      expect(r.headers.get('set-cookie'), path).toBeNull();
    }
    expect(Date.now() - start).toBeLessThan(3000); // refused at once, not left to a timeout
    expect(await (await fetch(u.url + '/ok')).text()).toBe('ok');
  });

  it('502 UPSTREAM_BAD_RESPONSE, at once and with the backend connection dropped, for a status over 599 and control characters in a header value or the reason phrase', async () => {
    for (const path of ['/status-700', '/vt-in-value', '/del-in-value', '/esc-in-reason']) {
      await fetch(u.url + '/ok');
      const opened = await newConnections(async () => {
        const start = Date.now();
        const r = await rawRequest(u.port, [`GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`], 3000);
        expect(Date.now() - start, path).toBeLessThan(2500);
        expect(r.status, path).toBe(502);
        expect(r.text, path).toContain('x-ugate-error: UGATE_ERR_UPSTREAM_BAD_RESPONSE');
        expect(r.text, path).not.toContain('two');
        expect(r.text, path).not.toContain('\x1b');
        // The connection that carried the bad answer is gone: the next request opens one.
        expect(await (await fetch(u.url + '/ok')).text()).toBe('ok');
      });
      expect(opened, path).toBe(1);
    }
  });

  it('empty lines (CRLF or bare LF, up to 4, in one read or apart) before the status line on a kept-alive connection: the answer is forwarded and the connection kept', async () => {
    await fetch(u.url + '/ok');
    const opened = await newConnections(async () => {
      for (const path of ['/crlf-before', '/crlf-apart', '/cr-lf-apart', '/lf-before', '/four-empty-lines']) {
        const r = await fetch(u.url + path);
        expect([path, r.status, await r.text()]).toEqual([path, 200, 'ok']);
      }
    });
    expect(opened).toBe(0);
  });

  it('more than 4 empty lines, or any other line, before the status line: 502 UPSTREAM_BAD_RESPONSE and the connection dropped', async () => {
    for (const path of ['/five-empty-lines', '/garbage-line-before']) {
      await notReusedAfter(path, async (r) => {
        expect([path, r.status]).toEqual([path, 502]);
        expect(r.headers.get('x-ugate-error')).toBe('UGATE_ERR_UPSTREAM_BAD_RESPONSE');
      });
    }
  });

  it('a control character in a trailer field: the response is not completed as if valid', async () => {
    const r = await rawRequest(u.port, ['GET /ctl-in-trailer HTTP/1.1\r\nHost: t\r\n\r\n'], 3000);
    // The head and body may have left already: then the client sees a cut, never a clean end.
    if (r.status === 502) expect(r.text).toContain('UGATE_ERR_UPSTREAM_BAD_RESPONSE');
    else {
      expect(r.closed).toBe(true);
      expect(r.text.endsWith('0\r\n\r\n')).toBe(false);
    }
  });

  it('a reason phrase with a latin-1 byte reaches the client as that byte, not re-encoded as UTF-8', async () => {
    const r = await rawRequest(u.port, ['GET /latin1-reason HTTP/1.1\r\nHost: t\r\n\r\n'], 3000);
    expect(r.status).toBe(200);
    expect(r.data.subarray(0, 18).toString('latin1')).toBe('HTTP/1.1 200 Ol\xe9\r\n');
  });

  it('a backend stalling mid-body past --body-timeout: the client sees the response cut, never completed', async () => {
    const start = Date.now();
    const r = await rawRequest(u.port, ['GET /stall-mid-body HTTP/1.1\r\nHost: t\r\n\r\n'], 4000);
    expect(r.closed).toBe(true);
    expect(Date.now() - start).toBeLessThan(3000);
    expect(r.status).toBe(200);
    expect(r.text.endsWith('0123456789')).toBe(true); // 10 of the 100 promised bytes, then the cut
    expect(await (await fetch(u.url + '/ok')).text()).toBe('ok');
  });

  it('a backend closing every connection right after its response, unannounced: nothing fails or hangs', async () => {
    const start = Date.now();
    const client = async () => {
      const bodies: string[] = [];
      for (let i = 0; i < 15; i++) bodies.push(await (await fetch(u.url + '/fin')).text());
      return bodies;
    };
    const all = (await Promise.all(Array.from({ length: 8 }, client))).flat();
    expect(all).toEqual(new Array(120).fill('fin'));
    expect(Date.now() - start).toBeLessThan(10_000);
  });

  it('honours the backend\'s Keep-Alive timeout hint: no reuse at or past it', async () => {
    // timeout=1 leaves no safe margin (ugate stops reusing a second early): every request
    // gets a fresh connection, and none fails on a connection the backend is closing.
    await fetch(u.url + '/hint'); // retires the connection earlier tests left idle
    const opened = await newConnections(async () => {
      for (let i = 0; i < 3; i++) expect(await (await fetch(u.url + '/hint')).text()).toBe('ok');
    });
    expect(opened).toBe(3);
  });
});

describe('both upstream clients: a status line that is not HTTP is refused alike', () => {
  // undici hands over statuses 600-999 (and 099 as 99) and control characters in the reason
  // phrase; the lean parser refuses them. stream-back checks what either client delivers.
  let origin: Awaited<ReturnType<typeof scriptedOrigin>>;
  /** Per path: resolves when the backend connection that carried its answer closes. */
  const closedAfter = new Map<string, Promise<void>>();
  beforeAll(async () => {
    origin = await scriptedOrigin((path) => SCRIPTS[path] ?? ['HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n']);
    origin.server.on('connection', (sock) => {
      sock.on('data', (d: Buffer) => {
        const path = d.toString('latin1').split(' ')[1];
        closedAfter.set(path, new Promise((resolve) => sock.once('close', () => resolve())));
      });
    });
  });
  afterAll(async () => {
    await origin.close();
  });

  for (const client of ['lean', 'undici']) {
    it(`${client}: 502 UPSTREAM_BAD_RESPONSE for a status of 600, 700, 999 or 099 and for ESC or NUL in the reason phrase; the connection is dropped`, async () => {
      const u = await startUgate(['--upstream', origin.url, '--upstream-client', client, '--retries', '0'], { workers: 1 });
      try {
        for (const path of ['/status-600', '/status-700', '/status-999', '/status-099', '/esc-in-reason', '/nul-in-reason']) {
          expect(await (await fetch(u.url + '/ok')).text()).toBe('ok');
          const r = await rawRequest(u.port, [`GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`], 3000);
          expect([path, r.status]).toEqual([path, 502]);
          expect(r.text, path).toContain('x-ugate-error: UGATE_ERR_UPSTREAM_BAD_RESPONSE');
          expect(r.text, path).not.toContain('Odd');
          expect(r.text, path).not.toContain('\x1b');
          // The backend connection that carried the bad head is not kept for another request.
          const closed = await Promise.race([closedAfter.get(path)!.then(() => 'closed'), sleep(2000).then(() => 'still open')]);
          expect([path, closed]).toEqual([path, 'closed']);
          expect(await (await fetch(u.url + '/ok')).text()).toBe('ok');
        }
      } finally {
        await u.stop();
      }
    });
  }

  it('undici: a --cache-warm answer with a control character in its reason phrase is not stored (and counts as a failure)', async () => {
    const u = await startUgate(['--upstream', origin.url, '--upstream-client', 'undici', '--cache-size', '1mb', '--cache-warm', '/esc-in-reason-cached'], { workers: 1 });
    try {
      // The warm request has ended, one way or the other.
      const [row] = await eventually(async () => {
        const s = await u.stats();
        return s.backends[0].requests === 1 && s.backends[0].inFlight === 0 && s.backends;
      });
      expect(row.failures).toBe(1);
      const r = await rawRequest(u.port, ['GET /esc-in-reason-cached HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'], 3000);
      expect(r.text).not.toContain('x-cache: HIT');
      expect(r.status).toBe(502);
      expect(r.text).toContain('x-ugate-error: UGATE_ERR_UPSTREAM_BAD_RESPONSE');
    } finally {
      await u.stop();
    }
  });
});

describe('both upstream clients: bytes a backend sends after a complete response are never an answer', () => {
  // The backend follows each real answer with an unrequested one, in the same write or a
  // moment later (then it reaches ugate while the connection is idle in the pool). Either
  // way the connection must be dropped: the next request goes on a fresh one, and no client
  // ever gets "EVIL".
  const EVIL = 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL';
  let origin: Awaited<ReturnType<typeof startRawOrigin>>;
  const requests: string[] = [];
  beforeAll(async () => {
    origin = await startRawOrigin((sock) => {
      onRequestHeads(sock, (path) => {
        requests.push(path);
        const body = `real ${path}`;
        const real = `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
        if (path.startsWith('/same-write')) sock.write(real + EVIL);
        else {
          sock.write(real);
          setTimeout(() => sock.write(EVIL), 20);
        }
      });
    });
  });
  afterAll(async () => {
    await origin.close();
  });

  for (const client of ['lean', 'undici']) {
    it(`${client}: the next request gets its own answer from a fresh request on a new connection`, async () => {
      const u = await startUgate(['--upstream', origin.url, '--upstream-client', client, '--retries', '0'], { workers: 1 });
      try {
        for (const kind of ['same-write', 'later-write']) {
          for (let i = 0; i < 3; i++) {
            const path = `/${kind}/${client}/${i}`;
            const before = { requests: requests.length, connections: origin.connections };
            const r = await fetch(u.url + path);
            expect([path, r.status, await r.text()]).toEqual([path, 200, `real ${path}`]);
            // Exactly this request reached the backend, once, on a connection of its own.
            expect(requests.slice(before.requests)).toEqual([path]);
            expect(origin.connections - before.connections, path).toBe(1);
            // Past the moment the unrequested answer arrives on an idle connection.
            await sleep(50);
          }
        }
      } finally {
        await u.stop();
      }
    });
  }
});

describe('lean upstream client: an unrequested answer already in the kernel when a response ends', () => {
  it('an answer that ends exactly where a full read ends, an unrequested one right behind it: the request queued for that connection gets its own answer from a new one', async () => {
    // --upstream-read-buffer 4kb and an answer of exactly 4096 bytes followed, in one write, by
    // an unrequested one: the read that completes /exact is full, so the next read (libuv
    // makes it at once) holds the unrequested answer, after the queued /next was written.
    const EVIL = 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL';
    const body = 'x'.repeat(4055);
    const exact = `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    expect(exact.length).toBe(4096);
    let held: Socket | null = null;
    const seen: { path: string; conn: number }[] = [];
    let conns = 0;
    const origin = await startRawOrigin((sock) => {
      const conn = ++conns;
      sock.on('data', (d: Buffer) => {
        const path = d.toString('latin1').split(' ')[1];
        seen.push({ path, conn });
        if (path === '/exact') held = sock; // answered when the test says
        else sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${5 + path.length}\r\n\r\nreal ${path}`);
      });
    });
    const u = await startUgate(['--upstream', origin.url, '--pool-connections', '1', '--upstream-read-buffer', '4kb', '--retries', '0'], { workers: 1 });
    try {
      const first = fetch(u.url + '/exact').then((r) => r.text());
      await eventually(() => held !== null);
      const next = fetch(u.url + '/next').then((r) => r.text());
      // Both are in flight: /next waits in the pool's queue for the one connection.
      await eventually(async () => (await u.stats()).backends[0].inFlight === 2);
      held!.write(exact + EVIL);
      expect((await first) === body).toBe(true);
      expect(await next).toBe('real /next');
      expect(seen).toEqual([
        { path: '/exact', conn: 1 },
        { path: '/next', conn: 2 },
      ]);
    } finally {
      await u.stop();
      await origin.close();
    }
  });
});

describe('lean upstream client: a latin-1 reason phrase served from the cache', () => {
  let origin: Awaited<ReturnType<typeof scriptedOrigin>>;
  let u: Ugate;

  beforeAll(async () => {
    origin = await scriptedOrigin((path) => SCRIPTS[path] ?? ['HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n']);
    u = await startUgate(['--upstream', origin.url, '--cache-size', '1mb'], { workers: 1 });
  });
  afterAll(async () => {
    await u.stop();
    await origin.close();
  });

  it('a cache hit sends the reason phrase as the bytes the backend sent, not re-encoded as UTF-8', async () => {
    const req = ['GET /latin1-reason-cached HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'];
    const miss = await rawRequest(u.port, req, 3000);
    expect(miss.text).toContain('x-cache: MISS');
    const hit = await rawRequest(u.port, req, 3000);
    expect(hit.text).toContain('x-cache: HIT');
    expect(hit.data.subarray(0, 18).toString('latin1')).toBe('HTTP/1.1 200 Ol\xe9\r\n');
  });
});

/** A raw backend answering the first request on each connection with "ok" and breaking the
 * connection with `onSecond` on the second; records each request line with its connection. */
function closesOnSecondRequest(seen: { line: string; conn: number }[], onSecond: (sock: Socket) => void) {
  let conns = 0;
  return startRawOrigin((sock) => {
    const conn = ++conns;
    let n = 0;
    let pending = '';
    sock.on('data', (d: Buffer) => {
      pending += d.toString('latin1');
      const at = pending.indexOf('\r\n\r\n');
      if (at < 0) return;
      const line = pending.slice(0, pending.indexOf('\r\n'));
      const length = Number(/content-length: *(\d+)/i.exec(pending.slice(0, at))?.[1] ?? 0);
      if (pending.length < at + 4 + length) return;
      pending = '';
      seen.push({ line, conn });
      if (++n === 2) onSecond(sock);
      else sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
  });
}

describe('lean upstream client: a keep-alive connection closed under the second request', () => {
  // The origin answers the first request on each connection and drops the connection, without
  // a byte, on the second: what a backend closing an idle connection looks like to ugate.
  let origin: Awaited<ReturnType<typeof startRawOrigin>>;
  const seen: { line: string; conn: number }[] = [];
  let u: Ugate;
  beforeAll(async () => {
    origin = await closesOnSecondRequest(seen, (sock) => sock.destroy());
    u = await startUgate(['--upstream', origin.url, '--retries', '0'], { workers: 1 });
  });
  afterAll(async () => {
    await u.stop();
    await origin.close();
  });

  it('an idempotent request is re-sent once on a new connection (not counted as a retry)', async () => {
    expect(await (await fetch(u.url + '/first')).text()).toBe('ok');
    seen.length = 0;
    const r = await fetch(u.url + '/again');
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('ok');
    expect(seen.map((x) => x.line)).toEqual(['GET /again HTTP/1.1', 'GET /again HTTP/1.1']);
  });

  it('a POST is never re-sent: 502, and the backend saw it once', async () => {
    expect(await (await fetch(u.url + '/first')).text()).toBe('ok');
    seen.length = 0;
    const r = await fetch(u.url + '/order', { method: 'POST', body: 'pay 10' });
    expect(r.status).toBe(502);
    expect(r.headers.get('x-ugate-error')).toBe('UGATE_ERR_UPSTREAM_RESET');
    expect(seen.map((x) => x.line)).toEqual(['POST /order HTTP/1.1']);
  });
});

describe('lean upstream client: pool limit, early answers, the undici fallback', () => {
  let slow: Origin;
  let peak = 0;
  let open = 0;

  beforeAll(async () => {
    slow = await startOrigin((req, res) => {
      if (req.url === '/early') return; // handled below, before the body is read
      setTimeout(() => res.end('slow'), 150);
    });
    slow.server.on('connection', (sock) => {
      peak = Math.max(peak, ++open);
      sock.once('close', () => open--);
    });
  });
  afterAll(async () => {
    await slow.close();
  });

  it('--pool-connections caps connections per backend; the queued requests are all served', async () => {
    const u = await startUgate(['--upstream', slow.url, '--pool-connections', '2'], { workers: 1 });
    try {
      peak = 0;
      const results = await Promise.all(Array.from({ length: 10 }, () => fetch(u.url + '/q').then((r) => r.text())));
      expect(results).toEqual(new Array(10).fill('slow'));
      expect(peak).toBeLessThanOrEqual(2);
    } finally {
      await u.stop();
    }
  });

  it('a client that leaves while its request waits in the pool queue: the request is never sent', async () => {
    const holding = await startOrigin((req, res) => setTimeout(() => res.end('done'), req.url === '/holds-the-connection' ? 1000 : 0));
    const u = await startUgate(['--upstream', holding.url, '--pool-connections', '1'], { workers: 1 });
    try {
      const first = fetch(u.url + '/holds-the-connection').then((r) => r.text());
      await eventually(() => holding.seen.length === 1);
      // Queued behind the first (one connection, held for 1 s); its client gives up after 100 ms.
      const queued = await rawRequest(u.port, ['GET /left-while-queued HTTP/1.1\r\nHost: t\r\n\r\n'], 100);
      expect(queued.status).toBe(0);
      expect(await first).toBe('done');
      expect(await (await fetch(u.url + '/after')).text()).toBe('done');
      expect(holding.seen.map((s) => s.url)).toEqual(['/holds-the-connection', '/after']);
    } finally {
      await u.stop();
      await holding.close();
    }
  });

  it('a backend answering before it read the upload: the answer is forwarded, the next request works', async () => {
    const early = await startOrigin(
      (req, res) => {
        if (req.method === 'POST') {
          // Node's server then drains the unread body itself; closing at once instead would
          // race a reset against the answer (the kernel may drop unread bytes on RST).
          res.writeHead(413).end('too big');
          return;
        }
        res.end('after');
      },
      { readBodyFirst: false },
    );
    const u = await startUgate(['--upstream', early.url], { workers: 1 });
    try {
      const r = await fetch(u.url + '/upload', { method: 'POST', body: Buffer.alloc(2 * 1024 * 1024, 1) });
      expect(r.status).toBe(413);
      expect(await r.text()).toBe('too big');
      expect(await (await fetch(u.url + '/next')).text()).toBe('after');
    } finally {
      await u.stop();
      await early.close();
    }
  });

  it('a backend answering early while a chunked upload crosses --max-body-size: its response, already under way, is cut (never a 413 written into its body), and the backend request is aborted', async () => {
    let backendClosed!: () => void;
    const backendGone = new Promise<void>((r) => (backendClosed = r));
    const streaming = await startRawOrigin((sock) => {
      sock.once('close', () => backendClosed());
      sock.once('data', () => {
        // Answers at once, reads nothing more, and streams its body on.
        sock.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
        const t = setInterval(() => (sock.destroyed ? clearInterval(t) : sock.write('5\r\nmore!\r\n')), 20);
      });
    });
    const u = await startUgate(['--upstream', streaming.url, '--max-body-size', '64kb'], { workers: 1 });
    try {
      const c = rawConnect(u.port);
      await c.connected;
      c.socket.write('POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n' + 'x'.repeat(0x1000) + '\r\n');
      await c.waitFor((d) => d.includes('more!'), 5000, 'the response streaming');
      for (let i = 0; i < 5 && !c.isClosed(); i++) c.socket.write('4000\r\n' + 'y'.repeat(0x4000) + '\r\n');
      await c.closed;
      const text = c.data().toString('latin1');
      expect(text.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
      // Before: "more!content-type: text/plain; charset=utf-8\r\nx-ugate-error: ...", then the
      // 413's reason as a last chunk and a proper end, a complete response to the client.
      expect(text).not.toContain('x-ugate-error');
      expect(text.endsWith('0\r\n\r\n')).toBe(false);
      await backendGone;
      await eventually(async () => (await u.stats()).workers[0].inFlight === 0);
    } finally {
      await u.stop();
      await streaming.close();
    }
  });

  it('--upstream-client undici still proxies bodies both ways and maps its errors alike', async () => {
    const echo = await startOrigin((req, res, seen) => res.end(seen.bodySha256));
    const u = await startUgate(['--upstream', echo.url, '--upstream-client', 'undici'], { workers: 1 });
    try {
      const body = Buffer.alloc(300_000, 7);
      const r = await fetch(u.url + '/echo', { method: 'POST', body });
      expect(await r.text()).toBe(sha256(body));
      await echo.close();
      const down = await fetch(u.url + '/echo');
      expect(down.status).toBe(502);
      expect(down.headers.get('x-ugate-error')).toBe('UGATE_ERR_UPSTREAM_CONNECT');
    } finally {
      await u.stop();
    }
  });

  it('0 for --idle-timeout, --connect-timeout and --headers-timeout works with either client: no reuse, no time limits', async () => {
    let connections = 0;
    const origin = await startOrigin((req, res) => res.end(`got ${req.url}`));
    origin.server.on('connection', () => connections++);
    for (const client of ['lean', 'undici']) {
      const u = await startUgate(['--upstream', origin.url, '--upstream-client', client, '--idle-timeout', '0', '--connect-timeout', '0', '--headers-timeout', '0'], { workers: 1 });
      try {
        const before = connections;
        for (let i = 0; i < 3; i++) {
          const r = await fetch(`${u.url}/${client}/${i}`);
          expect([client, r.status, await r.text()]).toEqual([client, 200, `got /${client}/${i}`]);
          await sleep(50);
        }
        // Not kept for reuse: a connection per request.
        expect(connections - before).toBe(3);
      } finally {
        await u.stop();
      }
    }
    await origin.close();
  });
});

describe('lean upstream client: a slow client takes the last bytes of a body', () => {
  // The last body chunk of a response that uWS takes only in part leaves the backend
  // connection paused with its response complete; finishing the tail from onWritable must
  // resume it, or the connection never goes back to the pool (here: the only one, so the next
  // request hangs). A 1 MiB read buffer makes chunks large enough that, over 8 slow downloads,
  // the last one is taken in part several times (4-5 in each of the runs that checked).
  it('the backend connection goes back to the pool after each slow download (--pool-connections 1)', async () => {
    const body = Buffer.alloc(4 * 1024 * 1024, 'slow-client-body ');
    const origin = await startOrigin((req, res) => {
      if (req.url === '/next') res.end('next');
      else res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    const u = await startUgate(['--upstream', origin.url, '--pool-connections', '1', '--upstream-read-buffer', '1mb'], { workers: 1 });
    try {
      for (const pauseMs of [50, 100, 150, 200, 250, 300, 350, 400]) {
        const got = await new Promise<Buffer>((resolve, reject) => {
          const sock = connect(u.port, '127.0.0.1');
          const parts: Buffer[] = [];
          sock.pause();
          sock.on('error', reject);
          sock.on('data', (d: Buffer) => {
            parts.push(d);
            const all = Buffer.concat(parts);
            const at = all.indexOf('\r\n\r\n');
            if (at >= 0 && all.length - at - 4 >= body.length) {
              sock.destroy();
              resolve(all.subarray(at + 4));
            }
          });
          sock.write('GET /big HTTP/1.1\r\nHost: t\r\n\r\n');
          // Reads nothing for a while (uWS's send buffer fills, the backend is paused), then
          // reads in small sips so the tail is taken a piece at a time.
          setTimeout(() => {
            const sip = setInterval(() => {
              if (sock.destroyed) return clearInterval(sip);
              sock.resume();
              setTimeout(() => sock.pause(), 1);
            }, 5);
          }, pauseMs);
        });
        expect(sha256(got)).toBe(sha256(body));
        const next = await Promise.race([fetch(u.url + '/next').then((r) => r.text()), new Promise((r) => setTimeout(() => r('HANG'), 3000))]);
        expect(next).toBe('next');
      }
    } finally {
      await u.stop();
      await origin.close();
    }
  });
});

describe('lean upstream client: empty lines a backend sends after a complete response', () => {
  // Some backends follow a body with a CRLF (after a Content-Length body, or after the chunked
  // terminator), in the same write or a moment later, when the connection is idle in the pool.
  // A few such empty lines are harmless (RFC 9112 §2.2); any more, or any other byte, are not.
  const CHUNKED = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n';
  const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
  /** Writes `now`, then `then` 10 ms later (in a read of its own). */
  const later = (now: string, then: string) => (s: Socket) => {
    s.write(now);
    setTimeout(() => s.write(then), 10);
  };
  const AFTER: Record<string, (sock: Socket) => void> = {
    '/length-crlf': (s) => s.write(OK + '\r\n'),
    '/chunked-crlf': (s) => s.write(CHUNKED + '\r\n'),
    '/length-lf': (s) => s.write(OK + '\n'),
    '/four-lines': (s) => s.write(OK + '\r\n\n\r\n\r\n'),
    '/crlf-later': later(OK, '\r\n'),
    '/cr-then-lf-later': later(OK + '\r', '\n'),
    '/two-then-two-later': later(CHUNKED + '\r\n\r\n', '\r\n\r\n'),
    '/five-lines': (s) => s.write(OK + '\r\n\r\n\r\n\r\n\r\n'),
    '/three-then-two-later': later(OK + '\r\n\r\n\r\n', '\r\n\r\n'),
    '/crlf-then-garbage-later': later(OK + '\r\n', 'x\r\n'),
    '/cr-then-garbage-later': later(OK + '\r', 'x'),
    '/crlf-forever': (s) => {
      s.write(OK);
      const t = setInterval(() => (s.destroyed ? clearInterval(t) : s.write('\r\n')), 5);
    },
  };
  let origin: Awaited<ReturnType<typeof startRawOrigin>>;
  let u: Ugate;
  /** Per connection number: resolves when the backend sees it closed. */
  const closed: Promise<void>[] = [];
  beforeAll(async () => {
    origin = await startRawOrigin((sock) => {
      closed.push(new Promise((resolve) => sock.once('close', () => resolve())));
      onRequestHeads(sock, (path) => (AFTER[path] ?? AFTER['/length-crlf'])(sock));
    });
    u = await startUgate(['--upstream', origin.url, '--pool-connections', '1', '--retries', '0'], { workers: 1 });
  });
  afterAll(async () => {
    await u.stop();
    await origin.close();
  });

  it('up to 4 empty lines (CRLF or bare LF) after each answer, in the same read or while idle: 20 sequential requests each answered, on one backend connection', async () => {
    for (const path of ['/length-crlf', '/chunked-crlf', '/length-lf', '/four-lines', '/crlf-later', '/cr-then-lf-later', '/two-then-two-later']) {
      const before = origin.connections;
      for (let i = 0; i < 20; i++) {
        const r = await fetch(u.url + path);
        expect([path, i, r.status, await r.text()]).toEqual([path, i, 200, 'ok']);
        // Past the moment the late empty lines reach the connection, idle in the pool.
        if (path.endsWith('later')) await sleep(30);
      }
      // The first path may open the connection; after that, none is opened.
      expect([path, origin.connections - before]).toEqual([path, before === 0 ? 1 : 0]);
    }
  });

  it('more than 4 empty lines after an answer (in one read or across reads), or any other byte after them: the answer is forwarded and the connection dropped', async () => {
    for (const path of ['/five-lines', '/three-then-two-later', '/crlf-then-garbage-later', '/cr-then-garbage-later']) {
      await fetch(u.url + '/length-crlf');
      const conn = origin.connections;
      const r = await fetch(u.url + path);
      expect([path, r.status, await r.text()]).toEqual([path, 200, 'ok']);
      await closed[conn - 1];
      expect(await (await fetch(u.url + '/length-crlf')).text()).toBe('ok');
      expect([path, origin.connections]).toEqual([path, conn + 1]);
    }
  });

  it('a backend that keeps sending empty lines on an idle connection: ugate drops it', async () => {
    await fetch(u.url + '/length-crlf');
    const conn = origin.connections;
    expect(await (await fetch(u.url + '/crlf-forever')).text()).toBe('ok');
    const gone = await Promise.race([closed[conn - 1].then(() => 'closed'), sleep(3000).then(() => 'still open')]);
    expect(gone).toBe('closed');
  });
});

describe('lean upstream client: a reused connection that gets only an empty line before it closes', () => {
  // On the second request of each connection the backend writes a CRLF and closes: no response
  // began, so this is the stale keep-alive case (the idle connection was being closed).
  let origin: Awaited<ReturnType<typeof startRawOrigin>>;
  const seen: { line: string; conn: number }[] = [];
  let u: Ugate;
  beforeAll(async () => {
    origin = await closesOnSecondRequest(seen, (sock) => sock.end('\r\n'));
    u = await startUgate(['--upstream', origin.url, '--pool-connections', '1', '--retries', '0'], { workers: 1 });
  });
  afterAll(async () => {
    await u.stop();
    await origin.close();
  });

  it('an idempotent GET is re-sent once on a new connection and answered', async () => {
    expect(await (await fetch(u.url + '/first')).text()).toBe('ok');
    seen.length = 0;
    const r = await fetch(u.url + '/again');
    expect([r.status, await r.text()]).toEqual([200, 'ok']);
    expect(seen).toEqual([
      { line: 'GET /again HTTP/1.1', conn: 1 },
      { line: 'GET /again HTTP/1.1', conn: 2 },
    ]);
  });

  it('a POST is not re-sent: 502 UPSTREAM_RESET, and the backend saw it once', async () => {
    expect(await (await fetch(u.url + '/first')).text()).toBe('ok');
    seen.length = 0;
    const r = await fetch(u.url + '/order', { method: 'POST', body: 'pay 10' });
    expect(r.status).toBe(502);
    expect(r.headers.get('x-ugate-error')).toBe('UGATE_ERR_UPSTREAM_RESET');
    expect(seen.map((s) => s.line)).toEqual(['POST /order HTTP/1.1']);
  });
});

describe('upstream timeouts fire on time, with either client', () => {
  // undici runs its own timeouts on a half-second timer wheel: with --upstream-client undici
  // (and for https:// backends) a 200 ms --headers-timeout answered its 504 after 1.0 s, and a
  // connect or body timeout was as late. ugate now keeps them on Node's timers
  // (workers/upstream-pool/undici-pool.ts); the lean client sweeps every eighth of the shortest.
  const T = 200;
  /** Well under the 1 s undici's wheel took, well over the lean sweep's 12.5%. */
  const LATE = 750;

  for (const client of ['lean', 'undici']) {
    // A backend that never answers its head; one whose host no longer answers connects.
    const waits = [
      { setting: 'headers', code: 'UGATE_ERR_UPSTREAM_HEADERS_TIMEOUT', backend: () => scriptedOrigin(() => []) },
      { setting: 'connect', code: 'UGATE_ERR_UPSTREAM_CONNECT_TIMEOUT', backend: hangingConnectPort },
    ];
    for (const { setting, code, backend } of waits) {
      it(`${client}: --${setting}-timeout ${T}ms answers 504 at about ${T} ms`, async () => {
        const b = await backend();
        const u = await startUgate(['--upstream', b.url, '--upstream-client', client, `--${setting}-timeout`, `${T}ms`, '--retries', '0'], { workers: 1 });
        try {
          for (let i = 0; i < 2; i++) {
            const t0 = performance.now();
            const r = await fetch(`${u.url}/${setting}/${i}`);
            const took = performance.now() - t0;
            expect([r.status, r.headers.get('x-ugate-error')]).toEqual([504, code]);
            await r.text();
            expect(took).toBeGreaterThanOrEqual(T - 10);
            expect(took).toBeLessThan(LATE);
          }
        } finally {
          await u.stop();
          await b.close();
        }
      });
    }

    it(`${client}: --body-timeout ${T}ms cuts a body that stalls at about ${T} ms`, async () => {
      const stalling = await scriptedOrigin(() => ['HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345']);
      const u = await startUgate(['--upstream', stalling.url, '--upstream-client', client, '--body-timeout', `${T}ms`], { workers: 1 });
      try {
        const r = await fetch(`${u.url}/stall`);
        expect(r.status).toBe(200);
        const t0 = performance.now();
        await expect(r.arrayBuffer()).rejects.toThrow();
        const took = performance.now() - t0;
        expect(took).toBeLessThan(LATE);
      } finally {
        await u.stop();
        await stalling.close();
      }
    });

    it(`${client}: a slow client holding the body paused is not cut by --body-timeout ${T}ms`, async () => {
      // The backend sends all of it at once; ugate stops reading it while the client reads
      // nothing, for longer than the body timeout, which must not count that pause.
      const body = Buffer.alloc(16 * 1024 * 1024, 'paused-body ');
      const origin = await startOrigin((req, res) => res.writeHead(200, { 'content-length': body.length }).end(body));
      const u = await startUgate(['--upstream', origin.url, '--upstream-client', client, '--body-timeout', `${T}ms`], { workers: 1 });
      try {
        const sock = connect(u.port, '127.0.0.1');
        sock.on('error', () => {});
        let received = 0;
        const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
        sock.on('data', (d: Buffer) => (received += d.length));
        sock.write('GET /big HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
        sock.pause();
        await sleep(4 * T);
        sock.resume();
        await closed;
        expect(received).toBeGreaterThan(body.length);
      } finally {
        await u.stop();
        await origin.close();
      }
    });
  }
});
