// Every error the gateway answers itself: the status and code the client gets, and what the
// backend saw (for client errors: nothing at all).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closedPort, sha256, startOrigin, startRawOrigin, type Origin } from '../helpers/origin';
import { rawRequest } from '../helpers/raw';
import { eventually, startUgate, type Ugate } from '../helpers/ugate';

let origin: Origin;
let u: Ugate;
/** Answers ugate gave in this file, by status: /stats must count at least these. */
const got: Record<number, number> = {};
const tally = (status: number) => (got[status] = (got[status] ?? 0) + 1);

beforeAll(async () => {
  origin = await startOrigin((req, res) => {
    if (req.url === '/hang') return; // never answers
    res.end(`ok ${req.method}`);
  }, { readBodyFirst: true });
  // An 8 KB header limit lets the 431 tests send heads small enough to arrive in one read (below).
  u = await startUgate(['--upstream', origin.url, '--max-body-size', '64kb', '--headers-timeout', '500ms', '--max-header-size', '8kb']);
});

afterAll(async () => {
  await u?.stop();
  await origin?.close();
});

/** Send raw bytes; assert the status, the error code, and that the origin saw nothing. */
async function refused(request: (string | Buffer | number)[], status: number, code: string, waitMs = 2000) {
  const before = origin.seen.length;
  const r = await rawRequest(u.port, request, waitMs);
  expect(r.status).toBe(status);
  tally(status);
  expect(r.text).toContain(`x-ugate-error: ${code}`);
  expect(origin.seen.length).toBe(before);
  return r;
}

describe('client errors never reach the backend', () => {
  // uWS drops a head over 4 KB that arrives in more than one read (README: constraints). On
  // loopback one write that fits a new socket's 16 KB send buffer leaves as one segment and is
  // read at once, so those heads must be answered. A larger one may leave in pieces (the send
  // buffer grows as it goes) and whether uWS reads them in one go is a race (a 60 KB head was
  // dropped on a loaded run; 99 KB ones a quarter of the time when idle): it must be answered
  // or dropped, and must never reach the backend.
  async function bigHead(request: string, status: number, code: string | null) {
    const oneRead = Buffer.byteLength(request) < 15 * 1024;
    for (let attempt = 0; attempt < 5; attempt++) {
      const before = origin.seen.length;
      const r = await rawRequest(u.port, [request], 2000);
      if (r.status === 0 && r.closed && !oneRead) {
        expect(origin.seen.length).toBe(before);
        continue;
      }
      expect(r.status).toBe(status);
      tally(status);
      if (code !== null) {
        expect(r.text).toContain(`x-ugate-error: ${code}`);
        expect(origin.seen.length).toBe(before);
      }
      return;
    }
  }

  it('431 for a header block over --max-header-size, including sizes uWS itself would accept', async () => {
    for (const size of [9 * 1024, 14 * 1024, 60 * 1024, 99 * 1024]) {
      await bigHead(`GET / HTTP/1.1\r\nHost: t\r\nX-Big: ${'a'.repeat(size)}\r\n\r\n`, 431, 'UGATE_ERR_HEADERS_TOO_LARGE');
    }
    // Many fields add up the same way (uWS caps the count near 50, so stay under it).
    const many = Array.from({ length: 20 }, (_, i) => `X-F${i}: ${'v'.repeat(450)}\r\n`).join('');
    await bigHead(`GET / HTTP/1.1\r\nHost: t\r\n${many}\r\n`, 431, 'UGATE_ERR_HEADERS_TOO_LARGE');
    expect(got[431]).toBeGreaterThanOrEqual(3);
  });

  it('accepts a header block just under the limit', async () => {
    await bigHead(`GET /fits HTTP/1.1\r\nHost: t\r\nX-Big: ${'a'.repeat(7 * 1024)}\r\nConnection: close\r\n\r\n`, 200, null);
  });

  it('400 for two Host headers', async () => {
    await refused(['GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'], 400, 'UGATE_ERR_DUPLICATE_HOST');
  });

  it('400 for differing duplicate Content-Length (smuggling shape), and the connection is closed', async () => {
    const r = await refused(['POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd'], 400, 'UGATE_ERR_BAD_CONTENT_LENGTH');
    expect(r.closed).toBe(true);
  });


  it('accepts identical repeated Content-Length', async () => {
    const before = origin.seen.length;
    const r = await rawRequest(u.port, ['POST /same HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc']);
    expect(r.status).toBe(200);
    expect(origin.seen.length).toBe(before + 1);
    expect(origin.seen[before].bodyBytes).toBe(3);
  });

  it('Content-Length with Transfer-Encoding: the connection is closed, nothing forwarded', async () => {
    // uWS drops this shape before ugate sees it; what matters is that it is not forwarded.
    const before = origin.seen.length;
    const r = await rawRequest(u.port, ['POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n']);
    expect(r.closed).toBe(true);
    expect(r.status === 0 || r.status === 400).toBe(true);
    expect(origin.seen.length).toBe(before);
  });

  it('501 for a transfer coding other than chunked', async () => {
    await refused(['POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'], 501, 'UGATE_ERR_UNSUPPORTED_TRANSFER_CODING');
  });

  it('400 for a target whose bytes are not valid UTF-8', async () => {
    await refused([Buffer.from('GET /bad\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n', 'latin1')], 400, 'UGATE_ERR_BAD_TARGET');
  });

  it('413 for a declared body over --max-body-size, before any of it is read', async () => {
    const r = await refused(['POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n'], 413, 'UGATE_ERR_BODY_TOO_LARGE');
    expect(r.closed).toBe(true);
  });

  it('413 for Expect: 100-continue with a declared body over --max-body-size (after the 100 uWS sent itself)', async () => {
    // uWS writes "100 Continue" before ugate sees the request (README: constraints); nginx would
    // answer 413 alone. The 413 still follows at once and the connection is closed.
    const before = origin.seen.length;
    const r = await rawRequest(u.port, ['POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n']);
    expect(r.text).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 413 /);
    tally(413);
    expect(r.text).toContain('x-ugate-error: UGATE_ERR_BODY_TOO_LARGE');
    expect(r.closed).toBe(true);
    expect(origin.seen.length).toBe(before);
  });

  it('413 for a chunked body that grows over --max-body-size while streaming; the backend never gets it whole', async () => {
    const before = origin.seen.length;
    const chunk = `4000\r\n${'x'.repeat(0x4000)}\r\n`;
    // One write: ugate still meets the limit part way through the chunks it parses, but the
    // whole upload is in its socket buffer by then. Bytes still arriving after ugate closed
    // would draw a reset, and a reset can discard the 413 before the client reads it (no
    // lingering close in this uWS build; see the README's constraints).
    const r = await rawRequest(u.port, ['POST /big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n' + chunk.repeat(8) + '0\r\n\r\n'], 3000);
    expect(r.status).toBe(413);
    tally(413);
    expect(r.text).toContain('x-ugate-error: UGATE_ERR_BODY_TOO_LARGE');
    expect(r.closed).toBe(true);
    // The request may have started upstream (bodies stream), but it never completed there.
    await new Promise((res) => setTimeout(res, 200));
    expect(origin.seen.slice(before).filter((s) => s.complete)).toHaveLength(0);
  });

  it('requests uWS never hands to ugate (no Host, HTTP/1.0, absolute-form, bad Content-Length, over ~50 fields, malformed fields, unknown methods, chunk extensions, garbage) are closed unanswered and not forwarded', async () => {
    // This uWS build neither answers these nor passes them on; it closes them at its ~10 s idle
    // timeout. Documented in the README; asserted here so a uWS upgrade that changes it is noticed.
    const before = origin.seen.length;
    const heads = [
      'GET / HTTP/1.1\r\n\r\n',
      'GET / HTTP/1.0\r\nHost: t\r\n\r\n',
      'GET http://t/ HTTP/1.1\r\nHost: t\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3x\r\n\r\nabc',
      `GET / HTTP/1.1\r\nHost: t\r\n${Array.from({ length: 60 }, (_, i) => `X-F${i}: v\r\n`).join('')}\r\n`,
      'NOT HTTP AT ALL\r\n\r\n',
      // Malformed field lines: obs-fold, a bare CR, NUL or another control byte in a value, a
      // name that is not a token; a control byte in the target.
      'GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: t\x01\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: t\r\nX(A): a\r\n\r\n',
      'GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n',
      // Methods outside uWS's fixed list, or in lower case.
      'PROPFIND / HTTP/1.1\r\nHost: t\r\n\r\n',
      'get / HTTP/1.1\r\nHost: t\r\n\r\n',
      // Content-Length with a sign, as a list, or of 10 digits and more (>= 1e9).
      'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc',
      'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 3\r\n\r\nabc',
      'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n',
      // A chunk extension (valid HTTP, but this build's chunked parser refuses it).
      'POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\n\r\n',
    ];
    const results = await Promise.all(heads.map((head) => rawRequest(u.port, [head], 15_000)));
    for (const r of results) {
      expect(r.closed).toBe(true);
      expect(r.status === 0 || r.status === 400).toBe(true);
    }
    expect(origin.seen.length).toBe(before);
  }, 30_000);
});

describe('the uWS chunked parser (lenient; README: constraints)', () => {
  // ugate sees only the decoded chunks, never the chunk-size lines, so it cannot refuse these.
  // Pinned so that a uWS upgrade that starts refusing them is noticed (and the README updated).
  it('reads a non-hex chunk-size digit as a number, and ends the body at a chunk-size line starting with a space', async () => {
    let before = origin.seen.length;
    // "g" is read as a size (18 here): the bytes after it, framing included, become body.
    let r = await rawRequest(u.port, ['POST /g HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\ng\r\nabc\r\n0\r\n\r\nXXXX\r\n0\r\n\r\n'], 3000);
    expect(r.status).toBe(200);
    expect(origin.seen.length).toBe(before + 1);
    expect(origin.seen[before].bodySha256).toBe(sha256('abc\r\n0\r\n\r\nXXXX\r\n'));
    before = origin.seen.length;
    // " 3" ends the body: the backend gets an empty one, the chunk is left on the connection.
    r = await rawRequest(u.port, ['POST /sp HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n 3\r\nabc\r\n0\r\n\r\n'], 3000);
    expect(r.status).toBe(200);
    expect(origin.seen.length).toBe(before + 1);
    expect(origin.seen[before].bodyBytes).toBe(0);
  });
});

describe('the uWS slow-body cut-off', () => {
  it('a request body trickling slower than uWS allows is cut, and the backend sees it incomplete', async () => {
    const before = origin.seen.length;
    const start = Date.now();
    const parts: (string | number)[] = ['POST /trickle HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n'];
    for (let i = 0; i < 9; i++) parts.push('x'.repeat(100), 2000);
    const r = await rawRequest(u.port, parts, 25_000);
    expect(r.closed).toBe(true);
    expect(r.status).toBe(0);
    const elapsed = Date.now() - start;
    expect(elapsed).toBeGreaterThan(8_000);
    expect(elapsed).toBeLessThan(20_000);
    await eventually(() => origin.seen.length > before);
    await new Promise((res) => setTimeout(res, 200));
    expect(origin.seen[before].complete).toBe(false);
  }, 30_000);
});

describe('upstream failures', () => {
  it('502 when the backend refuses the connection; to a HEAD, without a body', async () => {
    const g = await startUgate(['--upstream', `http://127.0.0.1:${await closedPort()}`], { workers: 1 });
    try {
      const res = await fetch(g.url + '/x');
      expect(res.status).toBe(502);
      expect(res.headers.get('x-ugate-error')).toBe('UGATE_ERR_UPSTREAM_CONNECT');
      // A HEAD answer has no body (RFC 9110 §9.3.2), the gateway's own errors included: a body
      // here was read by the client as the start of the next response on the connection.
      const r = await rawRequest(g.port, ['HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n', 500, 'GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'], 5000);
      const answers = r.text.split(/(?=HTTP\/1\.1 )/);
      expect(answers).toHaveLength(2);
      const [head, get] = answers;
      expect(head).toMatch(/^HTTP\/1\.1 502 /);
      expect(head).toContain('x-ugate-error: UGATE_ERR_UPSTREAM_CONNECT');
      expect(head).toMatch(/\r\ncontent-length: 31\r\n/i);
      expect(head.endsWith('\r\n\r\n')).toBe(true);
      expect(get).toMatch(/^HTTP\/1\.1 502 /);
      expect(get.endsWith('\r\n\r\n502 upstream connection failed\n')).toBe(true);
      // A HEAD refused with a closing error still closes, bodiless.
      const bad = await rawRequest(g.port, ['HEAD /a#b HTTP/1.1\r\nHost: t\r\n\r\n'], 3000);
      expect(bad.status).toBe(400);
      expect(bad.closed).toBe(true);
      expect(bad.text.endsWith('\r\n\r\n')).toBe(true);
    } finally {
      await g.stop();
    }
  });

  it('502 when the backend closes before sending headers, and when it sends garbage', async () => {
    const closer = await startRawOrigin((sock) => sock.once('data', () => sock.destroy()));
    const garbage = await startRawOrigin((sock) => sock.once('data', () => sock.end('NONSENSE\r\n\r\n')));
    const a = await startUgate(['--upstream', closer.url], { workers: 1 });
    const b = await startUgate(['--upstream', garbage.url], { workers: 1 });
    try {
      const ra = await fetch(a.url + '/x');
      expect(ra.status).toBe(502);
      expect(ra.headers.get('x-ugate-error')).toBe('UGATE_ERR_UPSTREAM_RESET');
      const rb = await fetch(b.url + '/x');
      expect(rb.status).toBe(502);
      expect(rb.headers.get('x-ugate-error')).toBe('UGATE_ERR_UPSTREAM_BAD_RESPONSE');
    } finally {
      await a.stop();
      await b.stop();
      await closer.close();
      await garbage.close();
    }
  });

  it('504 when the backend sends no headers within --headers-timeout', async () => {
    const start = Date.now();
    const res = await fetch(u.url + '/hang');
    expect(res.status).toBe(504);
    tally(504);
    expect(res.headers.get('x-ugate-error')).toBe('UGATE_ERR_UPSTREAM_HEADERS_TIMEOUT');
    expect(Date.now() - start).toBeLessThan(5000);
  });

  it('keeps serving after all of the above, and counts every error by status', async () => {
    const res = await fetch(u.url + '/after');
    expect(res.status).toBe(200);
    // Telemetry reaches main every 250 ms; once it has, every answer above is counted.
    const stats = await eventually(async () => {
      const s = await u.stats();
      for (const [status, n] of Object.entries(got)) {
        const counted = s.requests.byStatus[status] ?? 0;
        if (counted < n) throw new Error(`status ${status}: answered ${n}, counted ${counted}`);
      }
      return s;
    });
    expect(stats.workerRestarts).toBe(0);
  });
});
