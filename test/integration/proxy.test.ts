// HTTP semantics through a real ugate (2 workers) to a real origin: what the backend and the
// client actually receive.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrigin, startRawOrigin, type Origin } from '../helpers/origin';
import { rawRequest } from '../helpers/raw';
import { startUgate, type Ugate } from '../helpers/ugate';

let origin: Origin;
let u: Ugate;
let trusted: Ugate;

beforeAll(async () => {
  origin = await startOrigin((req, res) => {
    const url = new URL(req.url!, 'http://x');
    if (url.pathname === '/status') {
      const code = Number(url.searchParams.get('code'));
      const bodiless = code === 204 || code === 304;
      res.writeHead(code, bodiless ? { 'x-origin': 'yes' } : { 'x-origin': 'yes', 'content-length': '4' });
      res.end(bodiless ? undefined : 'body');
      return;
    }
    if (url.pathname === '/hop') {
      // Connection names x-secret: a hop-by-hop field that must not reach the client.
      res.writeHead(200, [
        ['Connection', 'x-secret, keep-alive'],
        ['X-Secret', 'hidden'],
        ['Keep-Alive', 'timeout=5'],
        ['Proxy-Connection', 'keep-alive'],
        ['Set-Cookie', 'a=1'],
        ['Set-Cookie', 'b=2'],
        ['X-Kept', 'kept'],
        ['Content-Length', '2'],
      ]);
      res.end('ok');
      return;
    }
    if (url.pathname === '/chunked') {
      res.setHeader('content-type', 'text/plain');
      res.write('part1-');
      setTimeout(() => res.end('part2'), 20);
      return;
    }
    res.setHeader('x-origin-url', req.url!);
    res.end(`seen ${req.method} ${req.url}`);
  });
  u = await startUgate(['--upstream', origin.url]);
  trusted = await startUgate(['--upstream', origin.url, '--trusted-proxy', '127.0.0.1'], { workers: 1 });
});

afterAll(async () => {
  await u?.stop();
  await trusted?.stop();
  await origin?.close();
});

const last = () => origin.seen[origin.seen.length - 1];

describe('request forwarding', () => {
  it('keeps path and query byte-for-byte', async () => {
    const targets = ['/a/b%20c?x=1&y=%2F', '/a?', '/a', '/a//b/./c/../d?q=%ZZ&&', '/%C3%A9t%C3%A9?k=v;w'];
    for (const t of targets) {
      const r = await rawRequest(u.port, [`GET ${t} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`]);
      expect(r.status).toBe(200);
      expect(last().url).toBe(t);
    }
  });

  it('forwards raw UTF-8 bytes in the target unchanged', async () => {
    // node:http refuses non-ASCII targets, so a raw origin records the request line's bytes.
    let requestLine: Buffer | null = null;
    const raw = await startRawOrigin((sock) => {
      let buf = Buffer.alloc(0);
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        const end = buf.indexOf('\r\n');
        if (end !== -1 && requestLine === null) {
          requestLine = buf.subarray(0, end);
          sock.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
        }
      });
    });
    const g = await startUgate(['--upstream', raw.url], { workers: 1 });
    try {
      const target = Buffer.from('/caf\u00e9/\u65e5\u672c?q=\u00fc', 'utf8');
      const r = await rawRequest(g.port, [Buffer.concat([Buffer.from('GET '), target, Buffer.from(' HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n')])]);
      expect(r.status).toBe(200);
      expect(requestLine).toEqual(Buffer.concat([Buffer.from('GET '), target, Buffer.from(' HTTP/1.1')]));
    } finally {
      await g.stop();
      await raw.close();
    }
  });

  it('passes the method, Host and end-to-end headers; drops hop-by-hop ones', async () => {
    const r = await rawRequest(u.port, [
      'DELETE /thing HTTP/1.1\r\nHost: api.example\r\nConnection: x-drop, keep-alive\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\n' +
        'TE: trailers\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Keep: yes\r\nAccept: */*\r\n\r\n',
    ], 500);
    expect(r.status).toBe(200);
    const h = last().headers;
    expect(last().method).toBe('DELETE');
    expect(h.host).toBe('api.example');
    expect(h['x-keep']).toBe('yes');
    expect(h.accept).toBe('*/*');
    for (const gone of ['x-drop', 'keep-alive', 'te', 'proxy-connection', 'upgrade']) expect(h[gone]).toBeUndefined();
  });

  it('a dual-stack listener ([::]): an IPv4 client is named by its IPv4 address, an IPv6 one in RFC 5952 form', async () => {
    const dual = await startUgate(['--upstream', origin.url, '--listen', '[::]:0'], { workers: 1 });
    try {
      await fetch(`http://127.0.0.1:${dual.port}/v4`);
      expect(last().headers['x-forwarded-for']).toBe('127.0.0.1');
      await fetch(`http://[::1]:${dual.port}/v6`);
      expect(last().headers['x-forwarded-for']).toBe('::1');
    } finally {
      await dual.stop();
    }
  });

  it('overwrites X-Forwarded-* from an untrusted client and adds Via', async () => {
    await rawRequest(u.port, [
      'GET /xf HTTP/1.1\r\nHost: front.example\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nVia: 1.0 other\r\nConnection: close\r\n\r\n',
    ]);
    const h = last().headers;
    expect(h['x-forwarded-for']).toBe('127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-forwarded-host']).toBe('front.example');
    // Via is a list every hop appends to.
    expect(h.via).toBe('1.0 other, 1.1 ugate');
  });

  it('appends to X-Forwarded-For when the peer is a trusted proxy', async () => {
    await rawRequest(trusted.port, [
      'GET /xf HTTP/1.1\r\nHost: front.example\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\nConnection: close\r\n\r\n',
    ]);
    const h = last().headers;
    expect(h['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('https');
    expect(h['x-forwarded-host']).toBe('shop.example');
  });

  it('--forwarded-for off: no X-Forwarded-For from ugate, a client\'s own passes only from a trusted proxy', async () => {
    const off = await startUgate(['--upstream', origin.url, '--forwarded-for', 'off'], { workers: 1 });
    const offTrusted = await startUgate(['--upstream', origin.url, '--forwarded-for', 'off', '--trusted-proxy', '127.0.0.1'], { workers: 1 });
    try {
      const head = 'GET /xf HTTP/1.1\r\nHost: front.example\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n\r\n';
      await rawRequest(off.port, [head]);
      expect(last().headers['x-forwarded-for']).toBeUndefined();
      expect(last().headers['x-forwarded-proto']).toBe('http');
      expect(last().headers['x-forwarded-host']).toBe('front.example');
      await rawRequest(offTrusted.port, [head]);
      expect(last().headers['x-forwarded-for']).toBe('203.0.113.7');
    } finally {
      await off.stop();
      await offTrusted.stop();
    }
  });

  it('answers Expect: 100-continue and does not forward Expect', async () => {
    const r = await rawRequest(u.port, ['POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n', 100, 'hello'], 3000);
    expect(r.text.startsWith('HTTP/1.1 100 Continue\r\n\r\n')).toBe(true);
    expect(r.text).toContain('HTTP/1.1 200');
    expect(last().headers.expect).toBeUndefined();
    expect(last().bodyBytes).toBe(5);
  });
});

describe('response forwarding', () => {
  it('passes status, headers and repeated Set-Cookie; strips hop-by-hop and Connection-named fields', async () => {
    const r = await rawRequest(u.port, ['GET /hop HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n']);
    expect(r.status).toBe(200);
    const head = r.text.split('\r\n\r\n')[0].toLowerCase();
    expect(head).toContain('set-cookie: a=1');
    expect(head).toContain('set-cookie: b=2');
    expect(head).toContain('x-kept: kept');
    expect(head).toContain('via: 1.1 ugate');
    expect(head).not.toContain('x-secret');
    expect(head).not.toContain('keep-alive: timeout');
    expect(head).not.toContain('proxy-connection');
    expect(head.match(/^date:/gm)?.length).toBe(1);
    expect(head.match(/^content-length:/gm)?.length).toBe(1);
    expect(r.text.endsWith('\r\n\r\nok')).toBe(true);
  });

  it('passes non-2xx statuses through', async () => {
    for (const code of [201, 301, 404, 418, 500, 503]) {
      const res = await fetch(`${u.url}/status?code=${code}`, { redirect: 'manual' });
      expect(res.status).toBe(code);
      expect(res.headers.get('x-origin')).toBe('yes');
      expect(await res.text()).toBe('body');
    }
  });

  it('sends no body on 204 and 304, and none on HEAD (keeping Content-Length)', async () => {
    // Connection: close, so any stray body byte would show up after the head.
    const ask = (line: string) => rawRequest(u.port, [`${line} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`], 3000);
    const r204 = await ask('GET /status?code=204');
    const r304 = await ask('GET /status?code=304');
    const head = await ask('HEAD /status?code=200');
    const get = await ask('GET /status?code=200');
    expect([r204.status, r304.status, head.status, get.status]).toEqual([204, 304, 200, 200]);
    expect(r204.text.endsWith('\r\n\r\n')).toBe(true);
    expect(r204.text.toLowerCase()).not.toContain('transfer-encoding');
    expect(r304.text.endsWith('\r\n\r\n')).toBe(true);
    expect(head.text.toLowerCase()).toContain('content-length: 4\r\n');
    expect(head.text.endsWith('\r\n\r\n')).toBe(true);
    expect(get.text.endsWith('\r\n\r\nbody')).toBe(true);
  });

  it('streams a chunked response', async () => {
    const res = await fetch(`${u.url}/chunked`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('part1-part2');
  });
});
