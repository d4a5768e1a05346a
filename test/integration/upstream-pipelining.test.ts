// The lean upstream client with --pipelining above 1, against a raw backend that answers
// pipelined requests in order and records how they arrived: which connection, how many were
// already waiting for their answer, how many came in one read.
import { afterEach, describe, expect, it } from 'vitest';
import { startRawOrigin } from '../helpers/origin';
import { rawRequest } from '../helpers/raw';
import { eventually, sleep, startUgate, type Ugate } from '../helpers/ugate';

interface Arrival {
  conn: number;
  method: string;
  path: string;
  /** Requests on the connection still waiting for their answer when this one arrived. */
  waiting: number;
  /** A POST among them. */
  behindPost: boolean;
}

interface Answer {
  delay?: number;
  response: string;
  /** Close the connection after this answer (the requests behind it go unanswered). */
  close?: boolean;
  /** After `response` (a chunked head), an event every 50 ms, never ending. */
  stream?: boolean;
}


async function pipeliningOrigin(answer: (method: string, path: string, body: string) => Answer) {
  const arrivals: Arrival[] = [];
  /** Requests complete in each read that had one. */
  const perRead: number[] = [];
  let conns = 0;
  const origin = await startRawOrigin((sock) => {
    const conn = ++conns;
    let buf = Buffer.alloc(0);
    const waiting: string[] = [];
    let chain = Promise.resolve();
    let closed = false;
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      let n = 0;
      for (;;) {
        const at = buf.indexOf('\r\n\r\n');
        if (at < 0) break;
        const head = buf.subarray(0, at).toString('latin1');
        const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < at + 4 + len) break;
        const body = buf.subarray(at + 4, at + 4 + len).toString('latin1');
        buf = buf.subarray(at + 4 + len);
        const [method, path] = head.split(' ');
        arrivals.push({ conn, method, path, waiting: waiting.length, behindPost: waiting.includes('POST') });
        waiting.push(method);
        n++;
        const a = answer(method, path, body);
        chain = chain.then(async () => {
          if (a.delay) await sleep(a.delay);
          if (closed || sock.destroyed) return;
          sock.write(a.response);
          if (a.stream) {
            const events = setInterval(() => (sock.destroyed ? clearInterval(events) : sock.write('6\r\nevent\n\r\n')), 50);
            await new Promise(() => {}); // the answers behind it never come on this connection
          }
          waiting.shift();
          if (a.close) {
            closed = true;
            sock.end();
          }
        });
      }
      if (n > 0) perRead.push(n);
    });
  });
  return { origin, arrivals, perRead };
}

function ok(body: string, extra = ''): string {
  return `HTTP/1.1 200 OK\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

function chunked(body: string): string {
  const half = Math.floor(body.length / 2);
  const chunk = (s: string) => `${s.length.toString(16)}\r\n${s}\r\n`;
  return `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(body.slice(0, half))}${chunk(body.slice(half))}0\r\n\r\n`;
}

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function setup(answer: (method: string, path: string, body: string) => Answer, flags: string[] = []) {
  const o = await pipeliningOrigin(answer);
  const u: Ugate = await startUgate(['--upstream', o.origin.url, '--pool-connections', '1', '--pipelining', '8', '--retries', '0', ...flags], { workers: 1 });
  cleanup.push(() => o.origin.close(), async () => void (await u.stop()));
  return { ...o, u };
}

describe('lean upstream client: --pipelining', () => {
  it('--pipelining 4 against a backend that writes a CRLF after every answer: each client gets its own answer, none a 502', async () => {
    // A stray CRLF after a body (RFC 9112 §2.2 asks clients to tolerate empty lines before a
    // status line): between pipelined answers it precedes the next one. After the last answer
    // in flight it is a harmless trailing empty line, and the connection is kept.
    const { u, origin, arrivals } = await setup((_method, path) => ({ delay: 2, response: ok(`answer to ${path}`) + '\r\n' }), ['--pipelining', '4']);
    const results = await Promise.all(
      Array.from({ length: 24 }, async (_, i) => {
        const r = await fetch(`${u.url}/crlf/${i}`);
        return [r.status, await r.text()];
      }),
    );
    expect(results).toEqual(Array.from({ length: 24 }, (_, i) => [200, `answer to /crlf/${i}`]));
    // They were pipelined: some arrived with answers still due ahead of them on their connection.
    expect(arrivals.some((a) => a.waiting > 0)).toBe(true);
    expect(Math.max(...arrivals.map((a) => a.waiting))).toBeLessThanOrEqual(3);
    // The CRLF after the last answer did not cost the connection: a later request reuses it.
    expect(await (await fetch(`${u.url}/after`)).text()).toBe('answer to /after');
    expect(origin.connections).toBe(1);
  });

  it('40 concurrent GETs and HEADs on one connection: each client gets its own answer; the backend saw them pipelined, at most 8 in flight, several per read', async () => {
    const { u, origin, arrivals, perRead } = await setup((method, path) => {
      const i = Number(path.split('/')[2]);
      const body = `answer to ${path} `.repeat(i + 1);
      if (method === 'HEAD') return { delay: 2, response: `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nX-Path: ${path}\r\n\r\n` };
      return { delay: 2, response: i % 3 === 0 ? chunked(body) : ok(body) };
    });
    const results = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const method = i % 5 === 4 ? 'HEAD' : 'GET';
        const r = await fetch(`${u.url}/n/${i}`, { method });
        return { i, method, status: r.status, text: await r.text(), path: r.headers.get('x-path'), length: r.headers.get('content-length') };
      }),
    );
    for (const r of results) {
      expect(r.status).toBe(200);
      const body = `answer to /n/${r.i} `.repeat(r.i + 1);
      if (r.method === 'HEAD') {
        expect(r.text).toBe('');
        expect(r.path).toBe(`/n/${r.i}`);
        expect(Number(r.length)).toBe(body.length);
      } else {
        expect(r.text).toBe(body);
      }
    }
    expect(origin.connections).toBe(1);
    expect(arrivals).toHaveLength(40);
    expect(Math.max(...arrivals.map((a) => a.waiting))).toBeGreaterThanOrEqual(2);
    expect(Math.max(...arrivals.map((a) => a.waiting))).toBeLessThanOrEqual(7);
    expect(Math.max(...perRead)).toBeGreaterThanOrEqual(2);
  });

  it('a POST is never pipelined (RFC 9112 §9.3.2): it goes on an empty connection and nothing follows it until its answer', async () => {
    const { u, arrivals } = await setup((method, path, body) => ({ delay: 3, response: ok(method === 'POST' ? `echo ${body}` : `got ${path}`) }));
    const results = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const post = i % 2 === 0;
        const r = await fetch(`${u.url}/r/${i}`, post ? { method: 'POST', body: `payload ${i}` } : {});
        return { expected: post ? `echo payload ${i}` : `got /r/${i}`, text: await r.text() };
      }),
    );
    for (const r of results) expect(r.text).toBe(r.expected);
    const posts = arrivals.filter((a) => a.method === 'POST');
    expect(posts).toHaveLength(10);
    for (const p of posts) expect(p.waiting).toBe(0);
    expect(arrivals.filter((a) => a.behindPost)).toEqual([]);
    // The GETs did share the connection among themselves.
    expect(Math.max(...arrivals.map((a) => a.waiting))).toBeGreaterThanOrEqual(1);
  });

  it('an answer with Connection: close: the requests pipelined behind it go again on a new connection (not a retry: --retries 0)', async () => {
    const { u, origin, arrivals } = await setup((_method, path) =>
      path === '/closes' ? { delay: 150, response: ok('closing', 'Connection: close\r\n'), close: true } : { response: ok(`fine ${path}`) },
    );
    const first = fetch(u.url + '/closes').then((r) => r.text());
    await eventually(() => arrivals.length === 1);
    const rest = await Promise.all(Array.from({ length: 5 }, (_, i) => fetch(`${u.url}/b/${i}`).then(async (r) => [r.status, await r.text()])));
    expect(await first).toBe('closing');
    expect(rest).toEqual(Array.from({ length: 5 }, (_, i) => [200, `fine /b/${i}`]));
    // Each of the five reached the first connection behind /closes, then a second one, where
    // they went again in their order.
    for (let i = 0; i < 5; i++) {
      const seen = arrivals.filter((a) => a.path === `/b/${i}`);
      expect(seen.map((a) => a.conn === 1)).toEqual([true, false]);
    }
    expect(arrivals.filter((a) => a.conn !== 1).map((a) => a.path)).toEqual(['/b/0', '/b/1', '/b/2', '/b/3', '/b/4']);
    expect(origin.connections).toBeGreaterThanOrEqual(2);
  });

  it('a client that leaves while its answer streams: the connection goes with it (an event stream never ends); requests that came meanwhile never joined it, and are answered on a new one', async () => {
    const { u, arrivals } = await setup((_method, path) =>
      path === '/events' ? { response: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', stream: true } : { response: ok(`fine ${path}`) },
    );
    const leaving = rawRequest(u.port, ['GET /events HTTP/1.1\r\nHost: t\r\n\r\n'], 400);
    await eventually(() => arrivals.length === 1);
    const rest = Promise.all(Array.from({ length: 5 }, (_, i) => fetch(`${u.url}/b/${i}`).then((r) => r.text())));
    await eventually(() => arrivals.length === 6);
    const events = await leaving;
    expect(events.status).toBe(200);
    expect(events.text).toContain('event');
    expect(await rest).toEqual(Array.from({ length: 5 }, (_, i) => `fine /b/${i}`));
    // The stream's head had arrived before they came: they waited in the queue (one
    // connection allowed), not behind an answer that never ends.
    for (let i = 0; i < 5; i++) expect(arrivals.filter((a) => a.path === `/b/${i}`).map((a) => a.conn === 1)).toEqual([false]);
    expect(await (await fetch(u.url + '/after')).text()).toBe('fine /after');
  });

  it('requests written behind an answer that then streams past --headers-timeout go again on another connection, and the stream is not disturbed', async () => {
    const { u, arrivals } = await setup(
      (_method, path) => (path === '/events' ? { delay: 150, response: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', stream: true } : { response: ok(`fine ${path}`) }),
      ['--pool-connections', '2', '--headers-timeout', '400ms'],
    );
    const events = rawRequest(u.port, ['GET /events HTTP/1.1\r\nHost: t\r\n\r\n'], 2500);
    await eventually(() => arrivals.length === 1);
    // Sent while /events waits for its head: they are written behind it on its connection.
    const started = Date.now();
    const rest = await Promise.all(Array.from({ length: 3 }, (_, i) => fetch(`${u.url}/b/${i}`).then(async (r) => [r.status, await r.text()])));
    const waited = Date.now() - started;
    expect(rest).toEqual(Array.from({ length: 3 }, (_, i) => [200, `fine /b/${i}`]));
    for (let i = 0; i < 3; i++) expect(arrivals.filter((a) => a.path === `/b/${i}`).map((a) => a.conn === 1)).toEqual([true, false]);
    // Answered after their headers timeout (counted from when each was written), not never.
    expect(waited).toBeGreaterThanOrEqual(350);
    expect(waited).toBeLessThan(1600);
    const stream = await events;
    expect(stream.status).toBe(200);
    // Events kept coming to its client the whole time, none lost to the moves.
    expect(stream.text.split('event').length - 1).toBeGreaterThanOrEqual(30);
    expect(await (await fetch(u.url + '/after')).text()).toBe('fine /after');
  });

  it('--pool-connections 1: requests moved off the only connection (an answer ahead streams past --headers-timeout) get a new connection, not a wait for the stream to end', async () => {
    const { u, origin, arrivals } = await setup(
      (_method, path) => (path === '/events' ? { delay: 150, response: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', stream: true } : { response: ok(`fine ${path}`) }),
      ['--headers-timeout', '400ms'],
    );
    const events = rawRequest(u.port, ['GET /events HTTP/1.1\r\nHost: t\r\n\r\n'], 3000);
    await eventually(() => arrivals.length === 1);
    const started = Date.now();
    const rest = await Promise.all(Array.from({ length: 3 }, (_, i) => fetch(`${u.url}/b/${i}`).then(async (r) => [r.status, await r.text()])));
    const waited = Date.now() - started;
    expect(rest).toEqual(Array.from({ length: 3 }, (_, i) => [200, `fine /b/${i}`]));
    for (let i = 0; i < 3; i++) expect(arrivals.filter((a) => a.path === `/b/${i}`).map((a) => a.conn)).toEqual([1, 2]);
    // Before, they waited in the queue for the stream's connection, until its client left (3 s).
    expect(waited).toBeLessThan(1600);
    // One connection above the limit, for the one being dropped, and no more.
    expect(origin.connections).toBe(2);
    const stream = await events;
    expect(stream.text.split('event').length - 1).toBeGreaterThanOrEqual(30);
    expect(await (await fetch(u.url + '/after')).text()).toBe('fine /after');
    expect(origin.connections).toBe(2);
  });

  it('a client that leaves while its request waits behind another: when its turn comes the connection goes unread, and the requests behind it go again', async () => {
    const { u, arrivals } = await setup((_method, path) => {
      if (path === '/slow') return { delay: 300, response: ok('slow') };
      if (path === '/gone') return { response: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', stream: true };
      return { response: ok(`fine ${path}`) };
    });
    const slow = fetch(u.url + '/slow').then((r) => r.text());
    await eventually(() => arrivals.length === 1);
    const gone = rawRequest(u.port, ['GET /gone HTTP/1.1\r\nHost: t\r\n\r\n'], 100);
    await eventually(() => arrivals.length === 2);
    const rest = Promise.all(Array.from({ length: 3 }, (_, i) => fetch(`${u.url}/b/${i}`).then((r) => r.text())));
    expect((await gone).status).toBe(0);
    expect(await slow).toBe('slow');
    expect(await rest).toEqual(['fine /b/0', 'fine /b/1', 'fine /b/2']);
    // /gone was not sent again; each /b went behind it first, then on a new connection.
    expect(arrivals.filter((a) => a.path === '/gone')).toHaveLength(1);
    for (let i = 0; i < 3; i++) expect(arrivals.filter((a) => a.path === `/b/${i}`).map((a) => a.conn === 1)).toEqual([true, false]);
  });

  it('nothing joins a connection that will be dropped: a request sent after a client left while waiting behind goes once, not behind it and then again', async () => {
    const { u, arrivals } = await setup((_method, path) => (path === '/slow' ? { delay: 800, response: ok('slow') } : { response: ok(`fine ${path}`) }));
    const slow = fetch(u.url + '/slow').then((r) => r.text());
    await eventually(() => arrivals.length === 1);
    // Written behind /slow, its client leaves after 150 ms: the connection is to go when its turn comes.
    const gone = await rawRequest(u.port, ['GET /gone HTTP/1.1\r\nHost: t\r\n\r\n'], 150);
    expect(gone.status).toBe(0);
    expect(arrivals.map((a) => [a.path, a.conn])).toEqual([['/slow', 1], ['/gone', 1]]);
    await sleep(100);
    let slowDone = false;
    void slow.then(() => (slowDone = true));
    const later = await fetch(u.url + '/later').then((r) => r.text());
    expect(later).toBe('fine /later');
    // The connection to be dropped no longer counts toward --pool-connections 1: /later had a
    // new one at once, rather than wait for /slow's answer, which is not its own.
    expect(slowDone).toBe(false);
    expect(await slow).toBe('slow');
    // Before, /later was written behind /gone on the first connection, then sent again on a new one.
    expect(arrivals.filter((a) => a.path === '/later').map((a) => a.conn === 1)).toEqual([false]);
    expect(arrivals.filter((a) => a.path === '/gone')).toHaveLength(1);
  });

  it('interim 103/100, 204, 304 and a HEAD answer in the middle of a pipeline, the answers split at odd byte boundaries: each client gets its own', async () => {
    const answers: Record<string, string> = {
      '/hint': 'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-P: /hint\r\n\r\nhint',
      '/none': 'HTTP/1.1 204 No Content\r\nX-P: /none\r\n\r\n',
      '/same': 'HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nX-P: /same\r\n\r\n',
      '/head': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-P: /head\r\n\r\n',
      '/chunks': 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-P: /chunks\r\n\r\n3;x=y\r\nchu\r\n3\r\nnks\r\n0\r\nT: v\r\n\r\n',
      '/last': 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-P: /last\r\n\r\nlast',
    };
    for (const step of [1, 3, 7]) {
      const seen: string[] = [];
      const origin = await startRawOrigin((sock) => {
        let buf = '';
        sock.on('data', (d: Buffer) => {
          buf += d.toString('latin1');
          for (let at = buf.indexOf('\r\n\r\n'); at >= 0; at = buf.indexOf('\r\n\r\n')) {
            seen.push(buf.slice(0, at).split(' ')[1]);
            buf = buf.slice(at + 4);
          }
          if (seen.length !== 6) return;
          // Every answer in order, in pieces of `step` bytes, one write per millisecond.
          const all = Buffer.from(seen.map((p) => answers[p]).join(''), 'latin1');
          let i = 0;
          const t = setInterval(() => (i >= all.length || sock.destroyed ? clearInterval(t) : sock.write(all.subarray(i, (i += step)))), 1);
        });
      });
      const u = await startUgate(['--upstream', origin.url, '--pool-connections', '1', '--pipelining', '8', '--retries', '0'], { workers: 1 });
      cleanup.push(() => origin.close(), async () => void (await u.stop()));
      const got = await Promise.all(
        Object.keys(answers).map(async (p) => {
          const r = await fetch(u.url + p, { method: p === '/head' ? 'HEAD' : 'GET' });
          return [p, r.status, r.headers.get('x-p'), await r.text()];
        }),
      );
      expect(got).toEqual([
        ['/hint', 200, '/hint', 'hint'],
        ['/none', 204, '/none', ''],
        ['/same', 304, '/same', ''],
        ['/head', 200, '/head', ''],
        ['/chunks', 200, '/chunks', 'chunks'],
        ['/last', 200, '/last', 'last'],
      ]);
      expect(origin.connections).toBe(1);
    }
  });

  it('a POST waiting in the queue is not starved by GETs that keep coming (--pool-connections 1)', async () => {
    const { u, arrivals } = await setup((method, path, body) => ({ delay: 5, response: ok(method === 'POST' ? `echo ${body}` : `got ${path}`) }), ['--pipelining', '4']);
    let running = true;
    const loops = Array.from({ length: 4 }, async (_, l) => {
      for (let i = 0; running; i++) await (await fetch(`${u.url}/loop/${l}/${i}`)).text();
    });
    await eventually(() => arrivals.length >= 20);
    const started = Date.now();
    const post = fetch(u.url + '/form', { method: 'POST', body: 'payload' }).then((r) => r.text());
    const answer = await Promise.race([post, new Promise((r) => setTimeout(() => r('STARVED'), 3000))]);
    const waited = Date.now() - started;
    running = false;
    await Promise.all(loops);
    expect(answer).toBe('echo payload');
    expect(waited).toBeLessThan(3000);
    expect(arrivals.find((a) => a.method === 'POST')!.waiting).toBe(0);
  });

  it('the first request times out (--headers-timeout): 504 for it; the requests behind it go again on a new connection and are answered', async () => {
    const { u, arrivals } = await setup((_method, path) => (path === '/stall' ? { delay: 5000, response: ok('late') } : { response: ok(`fine ${path}`) }), ['--headers-timeout', '300ms']);
    const stalled = fetch(u.url + '/stall');
    await eventually(() => arrivals.length === 1);
    const rest = await Promise.all(Array.from({ length: 3 }, (_, i) => fetch(`${u.url}/b/${i}`).then((r) => r.text())));
    expect((await stalled).status).toBe(504);
    expect(rest).toEqual(['fine /b/0', 'fine /b/1', 'fine /b/2']);
    expect(arrivals.filter((a) => a.path === '/stall')).toHaveLength(1);
  });
});
