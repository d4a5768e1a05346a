// Process lifecycle: graceful drain on SIGTERM, the drain deadline, idle keep-alive connections
// at shutdown, both workers taking traffic, and the admin API's view of it all.
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrigin, type Origin } from '../helpers/origin';
import { rawRequest } from '../helpers/raw';
import { parseResponses, rawConnect, type RawConn } from '../helpers/stream-http';
import { eventually, sleep, startUgate, type Stats, type Ugate } from '../helpers/ugate';

const SLOW_BODY = Buffer.alloc(100_000, 0x73);
const SLOW_DELAY_MS = 1500;

/** Requests that reached the origin, by path, for tests to await. */
const arrivals = new Map<string, (() => void)[]>();
function whenArrives(path: string): Promise<void> {
  return new Promise((resolve) => {
    const list = arrivals.get(path) ?? [];
    list.push(resolve);
    arrivals.set(path, list);
  });
}

/** Responses to /never, held open until the origin closes. */
const hung: { req: IncomingMessage; res: ServerResponse; closed: boolean }[] = [];
const timers = new Set<NodeJS.Timeout>();

function originHandler(req: IncomingMessage, res: ServerResponse): void {
  const path = req.url!.split('?')[0];
  for (const resolve of arrivals.get(path)?.splice(0) ?? []) resolve();
  switch (path) {
    case '/slow': {
      const t = setTimeout(() => {
        timers.delete(t);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(SLOW_BODY.length) });
        res.end(SLOW_BODY);
      }, SLOW_DELAY_MS);
      timers.add(t);
      return;
    }
    case '/never': {
      const h = { req, res, closed: false };
      res.on('close', () => (h.closed = true));
      hung.push(h);
      return;
    }
    case '/missing':
      res.writeHead(404, { 'content-type': 'text/plain', 'content-length': '9' });
      res.end('not here\n');
      return;
    default:
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5' });
      res.end('hello');
  }
}

/** GET on a fresh connection; resolves with status, headers and the whole body. */
function get(port: number, path: string): Promise<{ status: number; headers: IncomingMessage['headers']; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(15_000, () => req.destroy(new Error('client timeout')));
    req.end();
  });
}

/** Try to open a TCP connection: 'connected' (then closed at once) or the error code. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, 1000);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code ?? err.message);
    });
  });
}

/** Make sure a ugate this file started is gone (SIGKILL if a test failed before stopping it). */
async function ensureStopped(u: Ugate | undefined): Promise<void> {
  if (!u) return;
  if (u.proc.exitCode === null && u.proc.signalCode === null) {
    const exit = await Promise.race([u.exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 100))]);
    if (exit === 'running') u.proc.kill('SIGKILL');
  }
  await u.exited;
}

let origin: Origin;

beforeAll(async () => {
  origin = await startOrigin((req, res) => originHandler(req, res));
});

afterAll(async () => {
  for (const t of timers) clearTimeout(t);
  for (const h of hung) h.res.destroy();
  await origin?.close();
});

describe('graceful drain on SIGTERM', () => {
  let u: Ugate;
  beforeAll(async () => {
    u = await startUgate(['--upstream', origin.url]);
  });
  afterAll(() => ensureStopped(u));

  it('finishes the in-flight request, refuses new connections, exits 0', async () => {
    const arrived = whenArrives('/slow');
    let responded = false;
    const response = get(u.port, '/slow').finally(() => (responded = true));
    await arrived;
    const signalledAt = Date.now();
    const exit = u.stop('SIGTERM');

    // The listen socket closes while the slow request is still in flight.
    const refused = await eventually(async () => ((await tryConnect(u.port)) === 'ECONNREFUSED' ? Date.now() : false), 1000);
    expect(refused - signalledAt).toBeLessThan(SLOW_DELAY_MS);
    expect(responded).toBe(false);
    // Draining is not ready.
    const ready = await fetch(`${u.adminUrl}/ready`);
    expect(ready.status).toBe(503);
    await ready.text();

    const r = await response;
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(SLOW_BODY.length);
    expect(r.body.equals(SLOW_BODY)).toBe(true);
    expect(r.headers.connection).toBe('close');
    expect(await exit).toBe(0);
    expect(u.output()).not.toMatch(/Assertion failed|uv_loop_close/);
  });
});

describe('drain timeout', () => {
  let u: Ugate;
  beforeAll(async () => {
    u = await startUgate(['--upstream', origin.url, '--drain-timeout', '1s']);
  });
  afterAll(() => ensureStopped(u));

  it('closes a stuck request at the deadline and exits without crashing', async () => {
    const arrived = whenArrives('/never');
    const conn = rawConnect(u.port);
    try {
      await conn.connected;
      conn.socket.write('GET /never HTTP/1.1\r\nHost: ugate.test\r\n\r\n');
      await arrived;
      const upstream = hung[hung.length - 1];
      const signalledAt = Date.now();
      const code = await u.stop('SIGTERM');
      const took = Date.now() - signalledAt;
      expect(took).toBeGreaterThanOrEqual(900);
      expect(took).toBeLessThan(1000 + 4000);
      // A process that aborted (uv_loop_close assertion) ends by signal or with 134.
      expect(typeof code).toBe('number');
      expect([0, 1]).toContain(code);
      const out = u.output();
      expect(out).not.toMatch(/Assertion failed|uv_loop_close|Aborted|core dumped/);
      expect(out).toMatch(/drain timeout/);

      await conn.waitFor((_b, closed) => closed, 3000, 'the stuck connection to close');
      // Whatever arrived, it is not a successful response the backend never gave.
      const text = conn.data().toString('latin1');
      expect(text).not.toMatch(/^HTTP\/1\.1 2\d\d/);
      // The backend's request was abandoned too.
      await eventually(() => upstream.closed, 3000);
    } finally {
      conn.destroy();
    }
  });
});

describe('idle keep-alive connections at shutdown', () => {
  let u: Ugate;
  beforeAll(async () => {
    u = await startUgate(['--upstream', origin.url]);
  });
  afterAll(() => ensureStopped(u));

  it('do not hold the exit, and get closed', async () => {
    const conns = Array.from({ length: 4 }, () => rawConnect(u.port));
    try {
      for (const c of conns) {
        await c.connected;
        c.socket.write('GET /small HTTP/1.1\r\nHost: ugate.test\r\n\r\n');
      }
      for (const c of conns) {
        const data = await c.waitFor((b) => parseResponses(b, ['GET']) !== null, 5000, 'the response');
        const { responses } = parseResponses(data, ['GET'])!;
        expect(responses[0].status).toBe(200);
        expect(responses[0].headers.connection).toBeUndefined();
        expect(c.isClosed()).toBe(false);
      }
      const signalledAt = Date.now();
      const code = await u.stop('SIGTERM');
      expect(Date.now() - signalledAt).toBeLessThan(2000);
      expect(code).toBe(0);
      await Promise.all(conns.map((c) => c.waitFor((_b, closed) => closed, 2000, 'the idle connection to close')));
      expect(u.output()).not.toMatch(/Assertion failed|uv_loop_close/);
    } finally {
      for (const c of conns) c.destroy();
    }
  });
});

describe('both workers serve traffic', () => {
  let u: Ugate;
  beforeAll(async () => {
    u = await startUgate(['--upstream', origin.url], { workers: 2 });
  });
  afterAll(async () => {
    await u?.stop();
  });

  it('spreads 200 fresh connections over both workers', async () => {
    const N = 200;
    let next = 0;
    const statuses: number[] = [];
    // Four clients in parallel, each request on its own connection.
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < N) {
          next++;
          const r = await get(u.port, '/small');
          statuses.push(r.status);
        }
      }),
    );
    expect(statuses.length).toBe(N);
    expect(statuses.every((s) => s === 200)).toBe(true);
    const stats = await eventually(async () => {
      const s = await u.stats();
      return s.requests.total >= N ? s : false;
    }, 5000);
    expect(stats.requests.total).toBe(N);
    expect(stats.workers.length).toBe(2);
    for (const w of stats.workers) {
      expect(w.phase).toBe('listening');
      expect(w.requests).toBeGreaterThan(0);
    }
    expect(stats.workers.reduce((n, w) => n + w.requests, 0)).toBe(N);
  });
});

describe('admin API', () => {
  let u: Ugate;
  beforeAll(async () => {
    u = await startUgate(['--upstream', origin.url]);
  });
  afterAll(async () => {
    await u?.stop();
  });

  it('/health and /ready answer 200 once started', async () => {
    const health = await fetch(`${u.adminUrl}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe('ok\n');
    const ready = await fetch(`${u.adminUrl}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toBe('ready\n');
  });

  it('/metrics counts requests by status and exposes the duration histogram; /stats has latency and workers', async () => {
    const OK = 7;
    const MISSING = 3;
    for (let i = 0; i < OK; i++) expect((await get(u.port, '/small')).status).toBe(200);
    for (let i = 0; i < MISSING; i++) expect((await get(u.port, '/missing')).status).toBe(404);

    const text = await eventually(async () => {
      const m = await u.metrics();
      return m.includes(`ugate_request_duration_seconds_count{route="default"} ${OK + MISSING}\n`) ? m : false;
    }, 5000);
    expect(text).toContain(`ugate_requests_total{route="default",status="200"} ${OK}\n`);
    expect(text).toContain(`ugate_requests_total{route="default",status="404"} ${MISSING}\n`);
    expect(text).toMatch(/^# TYPE ugate_request_duration_seconds histogram$/m);

    const buckets = [...text.matchAll(/^ugate_request_duration_seconds_bucket\{route="default",le="([^"]+)"\} (\d+)$/gm)];
    expect(buckets.length).toBeGreaterThan(2);
    expect(buckets[buckets.length - 1][1]).toBe('+Inf');
    expect(Number(buckets[buckets.length - 1][2])).toBe(OK + MISSING);
    const counts = buckets.map((b) => Number(b[2]));
    for (let i = 1; i < counts.length; i++) expect(counts[i]).toBeGreaterThanOrEqual(counts[i - 1]);
    const les = buckets.slice(0, -1).map((b) => Number(b[1]));
    for (let i = 1; i < les.length; i++) expect(les[i]).toBeGreaterThan(les[i - 1]);
    const sum = /^ugate_request_duration_seconds_sum\{route="default"\} ([0-9.e+-]+)$/m.exec(text);
    expect(sum).not.toBeNull();
    expect(Number(sum![1])).toBeGreaterThan(0);
    expect(Number(sum![1])).toBeLessThan(OK + MISSING); // each well under a second on loopback
    expect(text).toContain(`ugate_request_duration_seconds_count{route="default"} ${OK + MISSING}\n`);
    expect(text).toContain('ugate_workers{phase="listening"} 2\n');

    const stats = (await u.stats()) as Awaited<ReturnType<Ugate['stats']>>;
    expect(stats.requests.total).toBe(OK + MISSING);
    expect(stats.requests.byStatus).toEqual({ '200': OK, '404': MISSING });
    for (const key of ['p50', 'p90', 'p99', 'p99.9', 'max']) {
      expect(typeof stats.latencyMs[key], key).toBe('number');
      expect(stats.latencyMs[key], key).toBeGreaterThan(0);
    }
    expect(stats.latencyMs.p50).toBeLessThanOrEqual(stats.latencyMs.p90);
    expect(stats.latencyMs.p90).toBeLessThanOrEqual(stats.latencyMs.p99);
    expect(stats.latencyMs.p99).toBeLessThanOrEqual(stats.latencyMs['p99.9']);
    expect(Array.isArray(stats.workers)).toBe(true);
    expect(stats.workers.map((w) => w.index)).toEqual([0, 1]);
    expect(stats.workers.reduce((n, w) => n + w.requests, 0)).toBe(OK + MISSING);
  });
});

describe('worker supervision', () => {
  it('replaces a worker that crashed, counts it, and keeps the process alive', async () => {
    const origin = await startOrigin((_req, res) => res.end('ok'));
    const g = await startUgate(['--upstream', origin.url], { workers: 2, env: { UGATE_TEST_CRASH_PATH: '/__crash' } });
    try {
      const crash = await rawRequest(g.port, ['GET /__crash HTTP/1.1\r\nHost: t\r\n\r\n'], 3000);
      expect(crash.status).toBe(0);
      const stats = await eventually(async () => {
        const s = await g.stats();
        return s.workerRestarts === 1 && s.workers.every((w) => w.phase === 'listening') ? s : undefined;
      }, 10_000);
      expect(stats.workers).toHaveLength(2);
      expect(await g.metrics()).toContain('ugate_worker_restarts_total 1');
      // Fresh connections land on both workers again, the replacement included.
      for (let i = 0; i < 20; i++) {
        const r = await rawRequest(g.port, ['GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n']);
        expect(r.status).toBe(200);
      }
      expect(g.output()).toContain('injected crash');
      expect(g.output()).not.toContain('Assertion failed');
      expect(await g.stop()).toBe(0);
    } finally {
      await g.stop();
      await origin.close();
    }
  });

  it('keeps every counter across a crashed worker, its last answers included; its gauges drop at once; admin answers throughout', async () => {
    // /hold?N answers only when the test releases it (a query of its own each, so that the
    // cache does not make one wait for another's fill); /cached is stored in the L1 of the
    // worker that fetched it.
    const held: ServerResponse[] = [];
    const origin = await startOrigin((req, res) => {
      if (req.url!.startsWith('/hold')) held.push(res);
      else if (req.url === '/cached') res.writeHead(200, { 'cache-control': 'public, max-age=3600' }).end('cached');
      else res.end('ok');
    });
    const g = await startUgate(['--upstream', origin.url, '--cache-size', '1mb'], { workers: 2, env: { UGATE_TEST_CRASH_PATH: '/__crash' } });
    const holds: RawConn[] = [];
    // One keep-alive connection: the kernel hands it to one worker (X) for its whole life, so
    // X is the one that serves its requests and that its /__crash kills.
    const c = rawConnect(g.port);
    let onC = 0;
    const getOnC = async (path: string) => {
      c.socket.write(`GET ${path} HTTP/1.1\r\nHost: t\r\n\r\n`);
      const data = await c.waitFor((b) => parseResponses(b, Array(onC + 1).fill('GET')) !== null, 5000, `response ${onC + 1} on the kept-alive connection`);
      expect(parseResponses(data, Array(++onC).fill('GET'))!.responses.at(-1)!.status).toBe(200);
    };
    const fresh = async (n: number) => {
      for (let i = 0; i < n; i++) expect((await rawRequest(g.port, ['GET /fresh HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'])).status).toBe(200);
    };
    // Every scrape: answered (200, within 2 s), and no counter, histogram count, sum or bucket
    // below its value in an earlier scrape, nor gone from the exposition.
    const seen = new Map<string, number>();
    const scrape = async () => {
      const [m, s] = await Promise.all([
        fetch(`${g.adminUrl}/metrics`, { signal: AbortSignal.timeout(2000) }),
        fetch(`${g.adminUrl}/stats`, { signal: AbortSignal.timeout(2000) }),
      ]);
      expect(m.status).toBe(200);
      expect(s.status).toBe(200);
      const text = await m.text();
      const now = new Map<string, number>();
      for (const [, series, value] of text.matchAll(/^(\w+(?:_total|_count|_sum|_bucket)(?:\{[^}]*\})?) (\S+)$/gm)) now.set(series, Number(value));
      for (const [series, before] of seen) expect(now.get(series), series).toBeGreaterThanOrEqual(before);
      for (const [series, v] of now) seen.set(series, v);
      const value = (series: string) => Number(new RegExp(`^${series.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
      return { text, value, stats: (await s.json()) as Stats };
    };
    try {
      // Before: N1 requests on X, one of them stored in X's cache.
      const N1 = 10;
      await getOnC('/cached');
      for (let i = 1; i < N1; i++) await getOnC('/a');
      const before = await eventually(async () => {
        const r = await scrape();
        return r.stats.requests.total === N1 && r.value('ugate_cache_entries') === 1 ? r : undefined;
      });
      const x = before.stats.workers.findIndex((w) => w.requests === N1);
      expect(x).toBeGreaterThanOrEqual(0);
      const y = 1 - x;

      // Requests held at the origin until both workers have at least one in flight.
      const heldOn = async () => (await scrape()).stats.workers.map((w) => w.inFlight);
      for (let i = 0; i < 30; i++) {
        const h = rawConnect(g.port);
        holds.push(h);
        h.socket.write(`GET /hold?${i} HTTP/1.1\r\nHost: t\r\n\r\n`);
        await eventually(async () => (await heldOn()).reduce((a, b) => a + b, 0) === holds.length);
        const inFlight = await heldOn();
        if (inFlight[x] > 0 && inFlight[y] > 0) break;
      }
      const inFlight = await heldOn();
      const [heldX, heldY] = [inFlight[x], inFlight[y]];
      expect(heldX).toBeGreaterThan(0);
      expect(heldY).toBeGreaterThan(0);

      // N2 answers on X, then X crashes at once, before its next telemetry frame (250 ms) is due.
      const N2 = 20;
      for (let i = 0; i < N2; i++) await getOnC('/b');
      c.socket.write('GET /__crash HTTP/1.1\r\nHost: t\r\n\r\n');
      await c.closed;

      // The first view after X's exit: X's answers all counted, its in-flight requests and
      // cache entries gone from the gauges (the replacement starts 100 ms later at the earliest).
      const exited = await eventually(async () => {
        const r = await scrape();
        // Both views taken after the exit (the two requests may fall either side of it).
        return r.stats.workerRestarts === 1 && r.value('ugate_worker_restarts_total') === 1 ? r : undefined;
      }, 10_000);
      expect(exited.stats.requests.total).toBe(N1 + N2);
      expect(exited.value('ugate_request_duration_seconds_count{route="default"}')).toBe(N1 + N2);
      expect(exited.stats.workers[x].requests).toBe(N1 + N2);
      expect(exited.stats.workers[x].inFlight).toBe(0);
      expect(exited.stats.workers[y].inFlight).toBe(heldY);
      expect(exited.value('ugate_in_flight_requests')).toBe(heldY);
      expect(exited.value(`ugate_backend_in_flight{route="default",backend="${origin.url}"}`)).toBe(heldY);
      expect(exited.value('ugate_cache_entries')).toBe(0);
      expect(exited.value('ugate_cache_stored_total')).toBe(1);

      // Admin keeps answering, counters never fall, until the replacement listens.
      await eventually(async () => (await scrape()).stats.workers.every((w) => w.phase === 'listening') || undefined, 10_000);

      // Y's held requests complete and count; X's died with it (cut, never counted).
      for (const res of held) if (!res.destroyed) res.end('released');
      const answered = await Promise.all(holds.map((h) => h.waitFor((b, closed) => closed || parseResponses(b, ['GET']) !== null, 5000, 'the held answer')));
      expect(answered.filter((b) => b.length > 0 && parseResponses(b, ['GET'])?.responses[0].status === 200)).toHaveLength(heldY);
      expect(answered.filter((b) => b.length === 0)).toHaveLength(heldX);

      const N3 = 20;
      await fresh(N3);
      const total = N1 + N2 + heldY + N3;
      await eventually(async () => {
        const r = await scrape();
        return r.stats.requests.total === total && r.value('ugate_in_flight_requests') === 0 ? r : undefined;
      });
      // Exactly once each: no loss, no double count, in every view.
      await sleep(600); // two more telemetry frames: nothing more may arrive
      const end = await scrape();
      expect(end.stats.requests.total).toBe(total);
      expect(end.stats.requests.byStatus).toEqual({ '200': total });
      expect(end.value('ugate_requests_total{route="default",status="200"}')).toBe(total);
      expect(end.value('ugate_request_duration_seconds_count{route="default"}')).toBe(total);
      expect(end.value('ugate_request_duration_seconds_bucket{route="default",le="+Inf"}')).toBe(total);
      expect(end.stats.latencyMs.count).toBe(total);
      expect(end.stats.workers).toHaveLength(2);
      expect(end.stats.workers.reduce((n, w) => n + w.requests, 0)).toBe(total);
      expect(end.stats.workers.map((w) => w.inFlight)).toEqual([0, 0]);
      expect(end.stats.workerRestarts).toBe(1);
      expect(end.value('ugate_worker_restarts_total')).toBe(1);
      expect(end.value(`ugate_backend_in_flight{route="default",backend="${origin.url}"}`)).toBe(0);
      expect(end.value('ugate_cache_stored_total')).toBe(1);
      expect(await g.stop()).toBe(0);
    } finally {
      c.destroy();
      for (const h of holds) h.destroy();
      for (const res of held) res.destroy();
      await ensureStopped(g);
      await origin.close();
    }
  });
});
