// Active health checks against hostile or broken health endpoints, on raw TCP backends: what
// counts as a pass (a whole 2xx/3xx answer within health-timeout), and what the checker costs
// a backend (one connection per check, closed with it, never two checks at once).
import type { Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startRawOrigin } from '../helpers/origin';
import { onRequestHeads } from '../helpers/raw';
import { eventually, sleep, startUgateForTest, type Ugate } from '../helpers/ugate';

interface Conn {
  /** What the checker sent on this connection. */
  received: string;
  closed: boolean;
}

/** A raw backend answering every request head with `answer`; records each connection. */
async function backend(answer: (sock: Socket) => void) {
  const conns: Conn[] = [];
  let maxOpen = 0;
  const o = await startRawOrigin((sock) => {
    const c: Conn = { received: '', closed: false };
    conns.push(c);
    maxOpen = Math.max(maxOpen, conns.filter((x) => !x.closed).length);
    sock.on('data', (d: Buffer) => (c.received += d.toString('latin1')));
    sock.once('close', () => (c.closed = true));
    onRequestHeads(sock, () => answer(sock));
  });
  onTestFinished(() => o.close());
  return { url: o.url, conns, open: () => conns.filter((c) => !c.closed).length, maxOpen: () => maxOpen };
}

/** Writes `chunk` every `everyMs` until the checker goes away. */
function drip(sock: Socket, chunk: string, everyMs: number): void {
  const timer = setInterval(() => (sock.destroyed ? clearInterval(timer) : sock.write(chunk)), everyMs);
}

/** Writes as fast as the socket drains, forever. */
function flood(sock: Socket): void {
  const chunk = Buffer.from(`4000\r\n${'x'.repeat(0x4000)}\r\n`);
  const pump = (): void => {
    while (!sock.destroyed && sock.write(chunk));
    if (!sock.destroyed) sock.once('drain', pump);
  };
  pump();
}

const TIMING = ['--health-path', '/h', '--health-interval', '300ms', '--health-timeout', '150ms', '--health-fall', '1', '--health-rise', '1'];

async function healthy(u: Ugate, url: string): Promise<boolean> {
  return (await u.stats()).backends.find((b) => b.url === url)!.healthy;
}

describe('active health checks', () => {
  it('a 2xx/3xx head whose body never ends, trickles, floods or is cut short fails the check', async () => {
    const headOnly = await backend((s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n'));
    const trickle = await backend((s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n');
      drip(s, 'x', 10);
    });
    const endlessChunks = await backend((s) => {
      s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
      drip(s, '1\r\nx\r\n', 10);
    });
    const untilClose = await backend((s) => s.write('HTTP/1.1 302 Found\r\nLocation: /\r\nConnection: close\r\n\r\nmoved'));
    const truncated = await backend((s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab');
      s.end();
    });
    const endless = await backend((s) => {
      s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
      flood(s);
    });
    const hostile = [headOnly, trickle, endlessChunks, untilClose, truncated, endless];
    const u = await startUgateForTest([...hostile.flatMap((b) => ['--upstream', b.url]), ...TIMING]);
    for (const b of hostile) await eventually(async () => !(await healthy(u, b.url)), 3000);
    // The endless body is not read to the timeout (nor into memory): the checker hangs up, and
    // the main thread still answers at once.
    await eventually(() => endless.conns.length >= 3 && endless.open() <= 1, 3000);
    const t = Date.now();
    expect((await fetch(`${u.adminUrl}/health`)).status).toBe(200);
    expect(Date.now() - t).toBeLessThan(250);
  });

  it('whole 2xx/3xx answers pass: with a body, 204, 304, 302, close-delimited, HTTP/1.0, and a backend that keeps the connection', async () => {
    const answers = [
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
      'HTTP/1.1 204 No Content\r\n\r\n',
      'HTTP/1.1 304 Not Modified\r\n\r\n',
      'HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n',
      'HTTP/1.0 200 OK\r\n\r\nok',
      'HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\nContent-Length: 2\r\n\r\nok',
    ];
    const good = await Promise.all(answers.map((a, i) => backend((s) => (i === 4 ? s.end(a) : s.write(a)))));
    // A close-delimited body of 200 KiB, sent whole: more than undici's dump() keeps, a real page.
    const big = await backend((s) => s.end(`HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n${'x'.repeat(200 * 1024)}`));
    const all = [...good, big];
    const u = await startUgateForTest([...all.flatMap((b) => ['--upstream', b.url]), ...TIMING]);
    await eventually(() => all.every((b) => b.conns.length >= 3), 3000);
    for (const b of all) expect(await healthy(u, b.url)).toBe(true);
    expect(u.output()).not.toContain('is down');
  });

  it('a backend that never answers gets one connection per check, closed at health-timeout, never two at once', async () => {
    const silent = await backend(() => {});
    const t0 = Date.now();
    const u = await startUgateForTest(['--upstream', silent.url, ...TIMING]);
    await eventually(async () => !(await healthy(u, silent.url)), 3000);
    await sleep(2000);
    const elapsed = Date.now() - t0;
    await u.stop();
    // Each check: 150 ms timeout, then 300 ms to the next. An aborted request used to make
    // undici's pool open a second, empty connection (sometimes left idle for its 4 s keep-alive).
    const empty = silent.conns.filter((c) => !c.received.startsWith('GET /h HTTP/1.1')).length;
    expect(empty).toBe(0);
    expect(silent.maxOpen()).toBe(1);
    expect(silent.conns.length).toBeGreaterThanOrEqual(4);
    expect(silent.conns.length).toBeLessThanOrEqual(Math.ceil(elapsed / 450) + 1);
  });
});
