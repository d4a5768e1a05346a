// A worker returns to its baseline after abnormal traffic: nothing left in flight in the shared
// backend table, no backend connection left open, nothing parked for good. Each case is a
// state that used to stay behind after the traffic that caused it had gone.
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startRawOrigin } from '../helpers/origin';
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
