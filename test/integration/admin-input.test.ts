// The admin API given bad input: wrong methods, HEAD, POST bodies that are not the expected
// JSON object. Every answer is a status with a reason, and the process keeps running.
import { request } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrigin, type Origin } from '../helpers/origin';
import { startUgate, type Ugate } from '../helpers/ugate';

/** One request on its own connection; fetch cannot send HEAD bodies or show raw lengths. */
function call(base: string, method: string, urlPath: string, body?: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: Number(u.port), path: urlPath, method, agent: false, timeout: 5000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: no answer in 5 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

describe('admin API: bad input gets a status with a reason', () => {
  let origin: Origin;
  let u: Ugate;

  beforeAll(async () => {
    origin = await startOrigin((_req, res) => res.end('ok'));
    u = await startUgate(['--upstream', origin.url], { workers: 1 });
  });
  afterAll(async () => {
    await u?.stop();
    await origin?.close();
  });

  it('POST /backends/drain and /up with a JSON body that is not an object (null, [], 5, "x") or wrong field types: 400 JSON error, process alive', async () => {
    for (const action of ['drain', 'up']) {
      for (const body of ['null', '[]', '5', '"x"', 'true', '{}', '{"route":"default"}', '{"backend":5}', '{"backend":null}', `{"route":5,"backend":"${origin.url}"}`, 'not json', '']) {
        const r = await call(u.adminUrl, 'POST', `/backends/${action}`, body);
        expect({ body, status: r.status }).toEqual({ body, status: 400 });
        expect(r.headers['content-type']).toBe('application/json');
        expect(typeof (JSON.parse(r.body) as { error: unknown }).error).toBe('string');
      }
    }
    expect((await call(u.adminUrl, 'GET', '/health')).status).toBe(200);
    expect(u.proc.exitCode).toBeNull();
  });

  it('an unknown backend or route: 404 with a JSON error naming it; nothing drained', async () => {
    const r = await call(u.adminUrl, 'POST', '/backends/drain', JSON.stringify({ route: 'nope', backend: origin.url }));
    expect(r.status).toBe(404);
    expect((JSON.parse(r.body) as { error: string }).error).toContain('"nope"');
    expect((await u.stats()).backends.every((b) => !b.drained)).toBe(true);
  });

  it('a known path with the wrong method: 405 with Allow; an unknown path: 404', async () => {
    for (const [method, p, allow] of [['POST', '/health', 'GET, HEAD'], ['DELETE', '/metrics', 'GET, HEAD'], ['PUT', '/stats', 'GET, HEAD'], ['GET', '/backends/drain', 'POST'], ['GET', '/backends/up', 'POST'], ['GET', '/cache/purge', 'POST']]) {
      const r = await call(u.adminUrl, method, p);
      expect({ method, p, status: r.status, allow: r.headers.allow }).toEqual({ method, p, status: 405, allow });
      expect((JSON.parse(r.body) as { error: string }).error).toContain(method);
    }
    expect((await call(u.adminUrl, 'GET', '/nope')).status).toBe(404);
    expect((await call(u.adminUrl, 'GET', '/health?verbose=1')).status).toBe(200);
  });

  it('HEAD on the GET endpoints answers like GET without a body', async () => {
    for (const p of ['/health', '/ready', '/metrics', '/stats']) {
      const get = await call(u.adminUrl, 'GET', p);
      const head = await call(u.adminUrl, 'HEAD', p);
      expect({ p, status: head.status }).toEqual({ p, status: get.status });
      expect(head.body).toBe('');
      expect(head.headers['content-type']).toBe(get.headers['content-type']);
      expect(Number(head.headers['content-length'])).toBeGreaterThan(0);
    }
  });

  it('HEAD requests on one keep-alive connection: bare headers each, no body bytes between them (known, unknown and POST-only paths)', async () => {
    const heads = ['/health', '/nope', '/backends/drain', '/stats'];
    const raw = await new Promise<string>((resolve, reject) => {
      const sock = connect(u.adminPort, '127.0.0.1');
      let got = '';
      const timer = setTimeout(() => (sock.destroy(), resolve(got)), 1000);
      sock.setEncoding('latin1');
      sock.on('data', (d: string) => {
        got += d;
        if (got.split('HTTP/1.1 ').length - 1 === heads.length + 1 && got.endsWith('ok\n')) (clearTimeout(timer), sock.destroy(), resolve(got));
      });
      sock.on('error', reject);
      sock.write(heads.map((p) => `HEAD ${p} HTTP/1.1\r\nHost: a\r\n\r\n`).join('') + 'GET /health HTTP/1.1\r\nHost: a\r\n\r\n');
    });
    const responses = raw.split(/(?=HTTP\/1\.1 )/);
    expect(responses.map((r) => r.slice(9, 12))).toEqual(['200', '404', '405', '200', '200']);
    for (const r of responses.slice(0, -1)) expect(r.endsWith('\r\n\r\n')).toBe(true);
    expect(responses[4].endsWith('\r\n\r\nok\n')).toBe(true);
  });

  it('a body above 64 KiB: 413 and the connection closed, not kept open with no timeout', async () => {
    const started = Date.now();
    const { got, closedAfter } = await new Promise<{ got: string; closedAfter: number }>((resolve) => {
      const sock = connect(u.adminPort, '127.0.0.1');
      let text = '';
      const timer = setTimeout(() => (sock.destroy(), resolve({ got: text, closedAfter: -1 })), 15_000);
      sock.setEncoding('latin1');
      sock.on('data', (d: string) => (text += d));
      sock.on('error', () => {}); // a reset while still sending: the answer is what counts
      sock.on('close', () => (clearTimeout(timer), resolve({ got: text, closedAfter: Date.now() - started })));
      sock.on('connect', () => sock.write(Buffer.concat([Buffer.from('POST /backends/drain HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n'), Buffer.alloc(200_000, 0x78)])));
    });
    expect(got.slice(0, 12)).toBe('HTTP/1.1 413');
    expect(closedAfter).toBeGreaterThanOrEqual(0);
    expect(closedAfter).toBeLessThan(5000);
  }, 20_000);
});
