// Odd and hostile request heads, byte for byte: what the client is answered and the exact head
// the backend received (a raw origin records it), or that the backend received nothing.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRawOrigin } from '../helpers/origin';
import { rawRequest } from '../helpers/raw';
import { startUgate, type Ugate } from '../helpers/ugate';

let origin: Awaited<ReturnType<typeof startRawOrigin>>;
let u: Ugate;
/** Every request head the origin received, as latin1 (one char per byte). */
const heads: string[] = [];

beforeAll(async () => {
  origin = await startRawOrigin((sock) => {
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      heads.push(buf.slice(0, end + 2));
      buf = '';
      sock.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    });
  });
  // 8 KB: a head over it still fits one write that arrives in one read (errors.test.ts says why).
  u = await startUgate(['--upstream', origin.url, '--max-header-size', '8kb'], { workers: 1 });
});

afterAll(async () => {
  await u?.stop();
  await origin?.close();
});

const head = (s: string) => Buffer.from(s, 'latin1');

/** The field lines of a recorded head, lower-cased names: [[name, value], ...]. */
function fields(h: string): [string, string][] {
  return h.split('\r\n').slice(1, -1).map((l) => {
    const i = l.indexOf(':');
    return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()];
  });
}

async function refused(request: string, status: number, code: string) {
  const before = heads.length;
  const r = await rawRequest(u.port, [head(request)], 3000);
  expect(r.status, JSON.stringify(request.slice(0, 80))).toBe(status);
  expect(r.text).toContain(`x-ugate-error: ${code}`);
  expect(r.closed).toBe(true);
  expect(heads.length, `forwarded: ${JSON.stringify(request.slice(0, 80))}`).toBe(before);
}

async function forwarded(request: string, waitMs = 3000): Promise<string> {
  const before = heads.length;
  const r = await rawRequest(u.port, [head(request)], waitMs);
  expect(r.status, JSON.stringify(request.slice(0, 80))).toBe(200);
  expect(heads.length).toBe(before + 1);
  return heads[before];
}

describe('request heads', () => {
  it('Connection naming Host does not strip Host from the forwarded request', async () => {
    // A first "Connection: close" line of its own lets uWS close the connection after the answer.
    for (const conn of ['host', 'Host', 'x-drop, HOST']) {
      const h = await forwarded(`GET /c HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\nConnection: ${conn}\r\nX-Drop: 1\r\n\r\n`);
      const f = fields(h);
      expect(f.filter(([n]) => n === 'host')).toEqual([['host', 'app.example']]);
      // Other named fields still go.
      expect(f.some(([n]) => n === 'x-drop')).toBe(!conn.includes('x-drop'));
    }
  });

  it('Connection naming Content-Length, X-Forwarded-For or Via removes none of what ugate writes', async () => {
    const before = heads.length;
    const r = await rawRequest(u.port, ['POST /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\nConnection: content-length, x-forwarded-for, via, x-forwarded-host\r\nContent-Length: 3\r\n\r\nabc'], 3000);
    expect(r.status).toBe(200);
    const f = fields(heads[before]);
    expect(f.find(([n]) => n === 'content-length')?.[1]).toBe('3');
    expect(f.find(([n]) => n === 'x-forwarded-for')?.[1]).toBe('127.0.0.1');
    expect(f.find(([n]) => n === 'x-forwarded-host')?.[1]).toBe('t');
    expect(f.find(([n]) => n === 'via')?.[1]).toBe('1.1 ugate');
  });

  it('400 UGATE_ERR_BAD_HOST for a Host that is not host[:port]; valid forms pass', async () => {
    for (const bad of ['a b', 't\x7f', 't/x', 'a@b', 't:8x', 'caf\xc3\xa9.example', 'x\xffy']) {
      await refused(`GET / HTTP/1.1\r\nHost: ${bad}\r\n\r\n`, 400, 'UGATE_ERR_BAD_HOST');
    }
    for (const ok of ['example.com:8080', '[::1]:80', '127.0.0.1', 'x_y.example', '']) {
      const f = fields(await forwarded(`GET / HTTP/1.1\r\nHost: ${ok}\r\nConnection: close\r\n\r\n`));
      expect(f.find(([n]) => n === 'host')?.[1] ?? '').toBe(ok);
    }
  });

  it('400 UGATE_ERR_BAD_TARGET for a fragment or a DEL byte in the target', async () => {
    for (const target of ['/a#frag', '/a?b=1#c', '/#', '/a\x7fb']) {
      await refused(`GET ${target} HTTP/1.1\r\nHost: t\r\n\r\n`, 400, 'UGATE_ERR_BAD_TARGET');
    }
  });

  it('Via keeps UTF-8 bytes exactly; a DEL byte in Via is refused like in any other field', async () => {
    // Non-ASCII inside the value: uWS itself strips non-ASCII bytes at either end (README).
    const h = await forwarded('GET / HTTP/1.1\r\nHost: t\r\nVia: 1.1 caf\xc3\xa9-proxy\r\nConnection: close\r\n\r\n');
    expect(fields(h).find(([n]) => n === 'via')?.[1]).toBe('1.1 caf\xc3\xa9-proxy, 1.1 ugate');
    await refused('GET / HTTP/1.1\r\nHost: t\r\nVia: 1.1 a\x7fb\r\n\r\n', 400, 'UGATE_ERR_BAD_HEADER');
    await refused('GET / HTTP/1.1\r\nHost: t\r\nVia: 1.1 a\xffb\r\n\r\n', 400, 'UGATE_ERR_BAD_HEADER');
    await refused('GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-Host: a\x7fb\r\n\r\n', 400, 'UGATE_ERR_BAD_HEADER');
  });

  it('501 UGATE_ERR_UNSUPPORTED_METHOD for CONNECT: no tunnels, and never sent upstream', async () => {
    await refused('CONNECT /x HTTP/1.1\r\nHost: t\r\n\r\n', 501, 'UGATE_ERR_UNSUPPORTED_METHOD');
  });

  it('431 counts --max-header-size in bytes: a head of multi-byte UTF-8 characters over it is refused', async () => {
    // 3,000 three-byte characters: 9,000 bytes (over the 8 KB limit) but 3,000 characters.
    // Inside a value, and in the target (uWS strips non-ASCII at the ends of values).
    const cjk = '\u65e5'.repeat(3000);
    await refused(Buffer.from(`GET / HTTP/1.1\r\nHost: t\r\nX-Big: a${cjk}b\r\n\r\n`, 'utf8').toString('latin1'), 431, 'UGATE_ERR_HEADERS_TOO_LARGE');
    await refused(Buffer.from(`GET /${cjk} HTTP/1.1\r\nHost: t\r\n\r\n`, 'utf8').toString('latin1'), 431, 'UGATE_ERR_HEADERS_TOO_LARGE');
    // Under it in bytes still passes (2,000 x 3 = 6,000 bytes).
    const fits = '\u65e5'.repeat(2000);
    const h = await forwarded(Buffer.from(`GET / HTTP/1.1\r\nHost: t\r\nX-Big: a${fits}b\r\nConnection: close\r\n\r\n`, 'utf8').toString('latin1'));
    expect(fields(h).find(([n]) => n === 'x-big')?.[1]).toBe(Buffer.from(`a${fits}b`, 'utf8').toString('latin1'));
  });

  it('uWS ends the field list at a line with an empty name: later fields are lost (pinned: README constraints)', async () => {
    // uWS marks the end of its field array with an empty name, so ": x" hides what follows
    // from forEach and getHeader alike; ugate cannot tell that anything was there.
    const h = await forwarded('GET / HTTP/1.1\r\nHost: t\r\nX-Before: 1\r\n: x\r\nX-After: 1\r\nConnection: close\r\n\r\n', 1500);
    const names = fields(h).map(([n]) => n);
    expect(names).toContain('x-before');
    expect(names).not.toContain('x-after');
  });

  it('uWS strips non-ASCII bytes at either end of a header value (pinned: README constraints)', async () => {
    // This build trims bytes >= 0x80 as if they were whitespace; ugate never sees them.
    const h = await forwarded('GET / HTTP/1.1\r\nHost: t\r\nX-End: caf\xc3\xa9\r\nX-Start: \xc3\xa9t\xc3\xa9\r\nConnection: close\r\n\r\n');
    const f = fields(h);
    expect(f.find(([n]) => n === 'x-end')?.[1]).toBe('caf');
    expect(f.find(([n]) => n === 'x-start')?.[1]).toBe('t');
  });
});

describe('routing on the path the backend will serve', () => {
  let api: Awaited<ReturnType<typeof startRawOrigin>>;
  let routed: Ugate;
  let dir: string;
  const apiHeads: string[] = [];

  beforeAll(async () => {
    api = await startRawOrigin((sock) => {
      sock.on('data', (d) => {
        const t = d.toString('latin1');
        if (!t.includes('\r\n\r\n')) return;
        apiHeads.push(t.slice(0, t.indexOf('\r\n\r\n') + 2));
        sock.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
      });
    });
    dir = mkdtempSync(path.join(tmpdir(), 'ugate-route-'));
    const file = path.join(dir, 'ugate.yaml');
    writeFileSync(file, [`upstream: ${origin.url}`, 'routes:', '  - name: api', '    path: /api', `    upstream: ${api.url}`, ''].join('\n'));
    routed = await startUgate(['--config', file], { workers: 1 });
  });

  afterAll(async () => {
    await routed?.stop();
    await api?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Send `target`; return which origin got it ('api' or 'default') and the line it got. */
  async function via(target: string): Promise<[string, string]> {
    const [a, d] = [apiHeads.length, heads.length];
    const r = await rawRequest(routed.port, [`GET ${target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`], 3000);
    expect(r.status, target).toBe(200);
    if (apiHeads.length > a) return ['api', apiHeads[a].split('\r\n')[0]];
    expect(heads.length, target).toBe(d + 1);
    return ['default', heads[d].split('\r\n')[0]];
  }

  it('a target that leaves a route prefix with dot-segments goes where its path resolves, sent unchanged', async () => {
    // "/api/../secret" is /secret: it must not reach the /api backend, which would serve its own
    // /secret (a route-prefix escape). nginx matches locations on the same resolved path.
    expect(await via('/api/../secret')).toEqual(['default', 'GET /api/../secret HTTP/1.1']);
    expect(await via('/api/%2e%2E/secret?a=/api')).toEqual(['default', 'GET /api/%2e%2E/secret?a=/api HTTP/1.1']);
    expect(await via('/api/x/../..')).toEqual(['default', 'GET /api/x/../.. HTTP/1.1']);
    // And the other way round.
    expect(await via('/other/../api/users')).toEqual(['api', 'GET /other/../api/users HTTP/1.1']);
    expect(await via('//api/./x')).toEqual(['api', 'GET //api/./x HTTP/1.1']);
    expect(await via('/api/x/..')).toEqual(['api', 'GET /api/x/.. HTTP/1.1']);
    expect(await via('/api/..x')).toEqual(['api', 'GET /api/..x HTTP/1.1']);
    expect(await via('/apix/../api')).toEqual(['api', 'GET /apix/../api HTTP/1.1']);
  });
});
