// A worker returns to its baseline after abnormal traffic: nothing left in flight in the shared
// backend table, no backend connection left open, nothing parked for good. Each case is a
// state that used to stay behind after the traffic that caused it had gone.
import { connect, type Socket } from 'node:net';
import Redis from 'ioredis';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { startCacheOrigin } from '../helpers/cache-origin';
import { startRawOrigin } from '../helpers/origin';
import { rawConnect } from '../helpers/stream-http';
import { HAS_REDIS, startRedis } from '../helpers/redis';
import { eventually, startUgate } from '../helpers/ugate';

describe('a backend that stops reading the upload', () => {
  it('times out like undici (504 after --headers-timeout with the upload blocked), and the request, its in-flight slot and its backend connection are let go, and the client connection closed', async () => {
    const backendSockets: Socket[] = [];
    // Takes the connection and reads nothing: neither the head nor the body, and never answers.
    const origin = await startRawOrigin((sock) => {
      sock.pause();
      backendSockets.push(sock);
    });
    const u = await startUgate(['--upstream', origin.url, '--headers-timeout', '500ms', '--retries', '0', '--max-body-size', '0', '--drain-timeout', '1s'], { workers: 1 });
    try {
      const client = connect(u.port, '127.0.0.1');
      client.on('error', () => {});
      const body = Buffer.alloc(32 * 1024 * 1024, 'u');
      client.write(`POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: ${body.length}\r\n\r\n`);
      client.write(body);
      // Nothing answers and nothing is taken: before, no deadline ran while the upload was
      // blocked, so the request, its slot and its connection stayed for good (a client that
      // left meanwhile did not end it either: a paused uWS socket does not report it).
      await eventually(async () => (await u.stats()).requests.byStatus['504'] === 1, 5000);
      const stats = await u.stats();
      expect(stats.workers[0].inFlight).toBe(0);
      expect(stats.backends[0].inFlight).toBe(0);
      // Answered with Connection: close, the upload left unread.
      await new Promise<void>((r) => (client.destroyed ? r() : client.once('close', () => r())));
      // ugate closed its side: the backend sees the end once it reads what was queued before it.
      expect(backendSockets).toHaveLength(1);
      const closed = new Promise<void>((r) => backendSockets[0].once('close', () => r()));
      backendSockets[0].resume();
      await closed;
    } finally {
      await u.stop();
      await origin.close();
    }
  });
});

describe.skipIf(!HAS_REDIS)('an L2 Redis that stops answering without closing the connection', () => {
  it('what is sent to it fails after a second of silence instead of waiting on it for good, each write holding its entry: the worker\'s memory stays bounded while cache misses go on', async () => {
    const origin = await startCacheOrigin();
    const redis = await startRedis();
    const u = await startUgate(['--upstream', origin.url, '--cache-size', '4mb', '--redis', redis.url], { workers: 1 });
    try {
      // Connected and answering first.
      const first = await request(`${u.url}/leak/first?cc=max-age%3D60`);
      await first.body.text();
      expect(first.statusCode).toBe(200);
      const rssBefore = u.rss();
      // Hung: the connection stays up and nothing comes back on it.
      redis.proc.kill('SIGSTOP');
      const misses = 150;
      try {
        for (let i = 0; i < misses; i++) {
          // Each a miss of 512 KiB: L1 keeps a few, and each is written to Redis (fire and forget).
          const r = await request(`${u.url}/leak/${i}?cc=max-age%3D60&size=524288`);
          await r.body.dump();
          expect(r.statusCode).toBe(200);
        }
        // 75 MiB of entries went to Redis, fire and forget. Before, each write waited on the dead
        // connection for good, holding its entry (RSS +169 MiB for these 75 MiB, kept until Redis
        // answered again); now the connection is dropped after a second of silence and what
        // waited on it fails, so the worker holds little more than its L1.
        await eventually(() => u.rss() - rssBefore < 64 * 1024 * 1024, 5000);
      } finally {
        redis.proc.kill('SIGCONT');
      }
      // Redis answers again: the worker reconnects, and new entries reach it.
      const probe = new Redis(redis.url);
      try {
        await eventually(async () => {
          const r = await request(`${u.url}/leak/back-${Date.now()}?cc=max-age%3D60`);
          await r.body.text();
          return (await probe.keys('ugate:c:*\n/leak/back-*')).length > 0;
        }, 8000);
      } finally {
        probe.disconnect();
      }
    } finally {
      await u.stop();
      await redis.kill();
      await origin.close();
    }
  });
});

describe('requests coalesced on a long cache fill whose clients give up', () => {
  it('are let go while the fill goes on (the waiting gauge comes back to the requests still waiting), and the one that stayed gets the entry', async () => {
    const BODY = 24 * 1024;
    // A cacheable answer whose body trickles in over ~3 s (1 KiB every 120 ms).
    const origin = await startRawOrigin((sock) => {
      sock.once('data', () => {
        sock.write(`HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: ${BODY}\r\n\r\n`);
        let sent = 0;
        const t = setInterval(() => {
          if (sock.destroyed || sent === BODY) return clearInterval(t);
          sock.write(Buffer.alloc(1024, 'h'));
          sent += 1024;
        }, 120);
      });
    });
    const u = await startUgate(['--upstream', origin.url, '--cache-size', '1mb'], { workers: 1 });
    const cache = async () => (await u.stats()).cache!;
    try {
      const get = 'GET /hot HTTP/1.1\r\nHost: t\r\n\r\n';
      const leader = rawConnect(u.port);
      leader.socket.write(get);
      await eventually(async () => (await cache()).misses === 1);
      const stays = rawConnect(u.port);
      stays.socket.write(get);
      const quitters = Array.from({ length: 300 }, () => rawConnect(u.port));
      for (const q of quitters) q.socket.write(get);
      await eventually(async () => (await cache()).coalesced === 301 && (await cache()).waiting === 301);
      for (const q of quitters) q.destroy();
      // Before, all 301 stayed in the fill's list (each request's fields and state) until the
      // body's end, however long the origin took.
      await eventually(async () => (await cache()).waiting === 1);
      const answer = (await stays.waitFor((d) => d.includes('\r\n\r\n') && d.length >= d.indexOf('\r\n\r\n') + 4 + BODY, 8000, 'the whole entry')).toString('latin1');
      expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(answer).toContain('x-cache: HIT');
      expect((await leader.waitFor((d) => d.length >= BODY, 8000, 'the leader\'s body')).length).toBeGreaterThanOrEqual(BODY);
      await eventually(async () => (await cache()).waiting === 0);
      leader.destroy();
      stays.destroy();
    } finally {
      await u.stop();
      await origin.close();
    }
  });
});
