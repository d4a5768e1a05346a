// Failures end to end: a backend killed under load (retries + passive ejection: no failed
// request), recovery by active health checks, active checks taking a backend out, the retry
// budget under a total outage, the circuit breaker, all-down 503, and the admin actions.
import { createServer, type Server } from 'node:http';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startOrigin, startRawOrigin, type Origin } from '../helpers/origin';
import { counts, load } from '../helpers/load';
import type { BackendRow } from '../../src/backend-admin';
import { eventually, startUgate, type Ugate } from '../helpers/ugate';

const started: { close(): Promise<unknown> }[] = [];
let u: Ugate | null = null;

afterEach(async () => {
  await u?.stop();
  u = null;
});
afterAll(async () => {
  for (const s of started) await s.close().catch(() => {});
});

interface Switchable extends Origin {
  healthy: boolean;
  failing: boolean;
}

async function origin(): Promise<Switchable> {
  const state = { healthy: true, failing: false };
  const o = await startOrigin((req, res) => {
    if (req.url === '/health') {
      res.statusCode = state.healthy ? 200 : 503;
      res.end();
      return;
    }
    res.statusCode = state.failing ? 500 : 200;
    res.end('ok');
  });
  started.push(o);
  // Accessors, not copies: the handler above reads `state`.
  return Object.defineProperties(o, {
    healthy: { get: () => state.healthy, set: (v: boolean) => (state.healthy = v) },
    failing: { get: () => state.failing, set: (v: boolean) => (state.failing = v) },
  }) as Switchable;
}

/** Only requests that are not health checks. */
function traffic(o: Origin): number {
  return o.seen.filter((s) => s.url !== '/health').length;
}

async function backends(): Promise<BackendRow[]> {
  return (await u!.stats()).backends;
}
async function admin(action: string, body: unknown): Promise<number> {
  const res = await request(`${u!.adminUrl}/backends/${action}`, { method: 'POST', body: JSON.stringify(body) });
  await res.body.dump();
  return res.statusCode;
}

describe('failover', () => {
  it('a backend killed mid-load costs no request (retries + ejection), and comes back by active checks', async () => {
    const a = await origin();
    const b = await origin();
    u = await startUgate(['--upstream', a.url, '--upstream', b.url, '--health-path', '/health', '--health-interval', '200ms', '--health-timeout', '150ms', '--health-fall', '2', '--health-rise', '2']);
    const port = b.port;
    let killed = false;
    const r = await load(u.url, 1500, {
      concurrency: 8,
      onDone: (n) => {
        if (n === 300 && !killed) {
          killed = true;
          void b.close();
        }
      },
    });
    expect(r.errors).toEqual([]);
    expect(r.failed).toBe(0);
    expect(r.statuses.get(200)).toBe(1500);
    await eventually(async () => (await backends()).find((s) => s.url === b.url)?.healthy === false, 5000);

    // The backend returns on the same port: active checks bring it back (clearing the ejection).
    const back: Server = createServer((_req, res) => res.end('back'));
    let servedAfter = 0;
    back.on('request', (req) => {
      if (req.url !== '/health') servedAfter++;
    });
    await new Promise<void>((res) => back.listen(port, '127.0.0.1', res));
    started.push({ close: () => new Promise<void>((res) => (back.closeAllConnections(), back.close(() => res()))) });
    await eventually(async () => (await backends()).find((s) => s.url === b.url)?.healthy === true, 5000);
    const again = await load(u.url, 100, { concurrency: 4 });
    expect(again.failed).toBe(0);
    expect(servedAfter).toBeGreaterThan(20);
    const m = await u.metrics();
    expect(m).toMatch(/ugate_retries_total [1-9]/);
    expect(m).toContain(`ugate_backend_up{route="default",backend="${b.url}"} 1`);
  });

  it('active checks take a failing backend out within an interval, and bring it back', async () => {
    const a = await origin();
    const b = await origin();
    u = await startUgate(['--upstream', a.url, '--upstream', b.url, '--health-path', '/health', '--health-interval', '100ms', '--health-timeout', '90ms', '--health-fall', '1', '--health-rise', '1']);
    b.healthy = false;
    await eventually(async () => (await backends()).find((s) => s.url === b.url)?.healthy === false, 3000);
    const before = traffic(b);
    const r = await load(u.url, 100, { concurrency: 4 });
    expect(r.failed).toBe(0);
    expect(traffic(b)).toBe(before);
    b.healthy = true;
    await eventually(async () => (await backends()).find((s) => s.url === b.url)?.healthy === true, 3000);
    await load(u.url, 100, { concurrency: 4 });
    expect(traffic(b)).toBeGreaterThan(before + 20);
  });

  it('the retry budget bounds attempts under a total outage', async () => {
    // Both backends accept and reset at once: every attempt fails before any header.
    const resetting = async () => {
      const o = await startRawOrigin((s) => s.destroy());
      started.push(o);
      return o;
    };
    const a = await resetting();
    const b = await resetting();
    u = await startUgate(['--upstream', a.url, '--upstream', b.url, '--retries', '3', '--retry-budget', '20', '--max-fails', '0']);
    const requests = 300;
    const r = await load(u.url, requests, { concurrency: 4 });
    expect(r.statuses.get(502)).toBe(requests);
    const attempts = a.connections + b.connections;
    // Without the budget: up to 4 × 300. With it: 20 % of requests, plus a floor of 10 retries
    // per worker per 10 s window (2 workers).
    expect(attempts).toBeGreaterThan(requests);
    expect(attempts).toBeLessThanOrEqual(requests * 1.2 + 2 * 10 + 5);
  });

  it('retries idempotent requests without a body only: a POST with a body that failed is answered 502', async () => {
    const dead = await startRawOrigin((s) => s.destroy());
    started.push(dead);
    const good = await origin();
    // Half the requests need a retry here: a budget of 100 % lets them all through.
    u = await startUgate(['--upstream', dead.url, '--upstream', good.url, '--max-fails', '0', '--retry-budget', '100']);
    const gets = await load(u.url, 40, { concurrency: 2 });
    expect(gets.failed).toBe(0);
    const deadAfterGets = dead.connections;
    expect(deadAfterGets).toBeGreaterThan(0); // they were tried there, then retried
    let posts502 = 0;
    for (let i = 0; i < 20; i++) {
      const res = await request(u.url + '/', { method: 'POST', body: 'payload' });
      await res.body.dump();
      if (res.statusCode === 502) posts502++;
      else expect(res.statusCode).toBe(200);
    }
    expect(posts502).toBeGreaterThan(0);
    expect(dead.connections - deadAfterGets).toBe(posts502);
    // TRACE is idempotent too (RFC 9110 §9.2.2): retried like GET, every one answered.
    for (let i = 0; i < 10; i++) {
      const res = await request(u.url + '/', { method: 'TRACE' });
      await res.body.dump();
      expect(res.statusCode).toBe(200);
    }
  });

  it('passive ejection: failing connections take backends out; all down answers 503 fast', async () => {
    const deadA = await startRawOrigin((s) => s.destroy());
    const deadB = await startRawOrigin((s) => s.destroy());
    started.push(deadA, deadB);
    u = await startUgate(['--upstream', deadA.url, '--upstream', deadB.url, '--max-fails', '3', '--eject-time', '30s', '--retries', '0']);
    // Each request fails on a backend not yet ejected: 3 + 3 of them eject both.
    let failed = 0;
    for (; failed < 20; failed++) {
      const res = await request(u.url + '/');
      await res.body.dump();
      if (res.statusCode === 503) break;
      expect(res.statusCode).toBe(502);
    }
    expect(failed).toBe(6);
    expect(deadA.connections + deadB.connections).toBe(6);
    const t0 = performance.now();
    const res = await request(u.url + '/');
    const text = await res.body.text();
    expect(res.statusCode).toBe(503);
    expect(res.headers['x-ugate-error']).toBe('UGATE_ERR_NO_BACKEND');
    expect(res.headers['retry-after']).toBe('1');
    expect(text).toContain('no backend');
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(deadA.connections + deadB.connections).toBe(6);
    const s = await backends();
    expect(s.map((b) => [b.ejected, b.ejections, b.failures])).toEqual([[true, 1, 3], [true, 1, 3]]);
  });

  it('a route\'s only backend is never ejected (nginx rule): errors stay errors, not 503', async () => {
    const dead = await startRawOrigin((s) => s.destroy());
    started.push(dead);
    u = await startUgate(['--upstream', dead.url, '--max-fails', '2', '--retries', '0']);
    for (let i = 0; i < 5; i++) {
      const res = await request(u.url + '/');
      await res.body.dump();
      expect(res.statusCode).toBe(502);
    }
    expect(dead.connections).toBe(5);
  });

  it('circuit breaker: opens after consecutive failures, half-opens after the cool-down, closes on success', async () => {
    const a = await origin();
    const b = await origin();
    a.failing = true;
    u = await startUgate(['--upstream', a.url, '--upstream', b.url, '--circuit-failures', '3', '--circuit-cooldown', '1s', '--max-fails', '0', '--retries', '0']);
    await load(u.url, 40, { concurrency: 2 });
    await eventually(async () => (await backends()).find((s) => s.url === a.url)?.circuit === 'open', 3000);
    const failedAt = traffic(a);
    expect(failedAt).toBeGreaterThanOrEqual(3);
    expect(failedAt).toBeLessThan(8);
    await load(u.url, 20, { concurrency: 2 });
    expect(traffic(a)).toBe(failedAt); // open: nothing reaches it
    a.failing = false;
    await new Promise((r) => setTimeout(r, 1200));
    await eventually(async () => {
      await load(u!.url, 10, { concurrency: 1 });
      return (await backends()).find((s) => s.url === a.url)?.circuit === 'closed';
    }, 5000);
    expect(traffic(a)).toBeGreaterThan(failedAt);
  });

  it('admin drain stops new requests to a backend, up brings it back; /stats and /metrics show it', async () => {
    const a = await origin();
    const b = await origin();
    u = await startUgate(['--upstream', a.url, '--upstream', b.url]);
    expect(await admin('drain', { route: 'default', backend: a.url })).toBe(200);
    expect(await admin('drain', { route: 'default', backend: 'http://127.0.0.1:1' })).toBe(404);
    const before = traffic(a);
    expect((await load(u.url, 60, { concurrency: 4 })).failed).toBe(0);
    expect(traffic(a)).toBe(before);
    const stats = await backends();
    expect(stats.map((s) => [s.url, s.drained])).toEqual([[a.url, true], [b.url, false]]);
    expect(stats[1].requests).toBeGreaterThanOrEqual(60);
    expect(stats[1].inFlight).toBe(0);
    const m = await u.metrics();
    expect(m).toContain(`ugate_backend_up{route="default",backend="${a.url}"} 0`);
    expect(m).toMatch(new RegExp(`ugate_backend_requests_total\\{route="default",backend="${b.url.replace(/\./g, '\\.')}"\\} \\d+`));
    expect(m).toContain('ugate_backend_in_flight{');
    expect(m).toContain('ugate_backend_failures_total{');
    expect(m).toContain('ugate_backend_ejections_total{');

    // Both drained: 503.
    expect(await admin('drain', { route: 'default', backend: b.url })).toBe(200);
    const res = await request(u.url + '/');
    await res.body.dump();
    expect(res.statusCode).toBe(503);

    expect(await admin('up', { route: 'default', backend: a.url })).toBe(200);
    expect(await admin('up', { route: 'default', backend: b.url })).toBe(200);
    expect((await load(u.url, 60, { concurrency: 4 })).failed).toBe(0);
    expect(traffic(a)).toBeGreaterThan(before + 10);
    expect(counts([a, b]).every((n) => n > 0)).toBe(true);
  });
});
