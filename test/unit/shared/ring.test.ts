import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Packr } from 'msgpackr';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  RING_DROPPED_BYTES,
  RING_HEADER_SLOTS,
  RING_READ_POS,
  RING_WRITE_POS,
} from '../../../src/shared/layout';
import { createRing, RingReader, RingWriter } from '../../../src/shared/ring';

const ROOT = path.resolve(__dirname, '../../..');
const FIXTURES = path.join(ROOT, 'test/fixtures');
const WORKER_FIXTURE = path.join(FIXTURES, 'ring-worker.js');
const COMPILED_RING = path.join(ROOT, 'dist/src/shared/ring.js');

type Frame = { seq: number; bin: Uint8Array; s: string; f: number; sum: number };
const { makeFrame, checkFrame } = createRequire(path.join(FIXTURES, 'x.js'))('./ring-frames.js') as {
  makeFrame(seq: number): Frame;
  checkFrame(m: unknown): string | null;
};

/**
 * Workers cannot load .ts, so they require dist/src/shared/ring.js. Emit it
 * (and layout.js) with the TypeScript compiler when missing or older than the
 * sources; transpiling just these two files keeps the test independent of the
 * rest of the project compiling.
 */
function ensureCompiledRing(): void {
  const sources = ['ring', 'layout'].map((n) => path.join(ROOT, `src/shared/${n}.ts`));
  const outputs = ['ring', 'layout'].map((n) => path.join(ROOT, `dist/src/shared/${n}.js`));
  const newestSource = Math.max(...sources.map((s) => statSync(s).mtimeMs));
  const stale = outputs.some((o) => !existsSync(o) || statSync(o).mtimeMs < newestSource);
  if (!stale) return;
  mkdirSync(path.dirname(outputs[0]), { recursive: true });
  sources.forEach((src, i) => {
    const out = ts.transpileModule(readFileSync(src, 'utf8'), {
      fileName: src,
      compilerOptions: {
        module: ts.ModuleKind.CommonJS,
        target: ts.ScriptTarget.ES2022,
        esModuleInterop: true,
      },
    });
    writeFileSync(outputs[i], out.outputText);
  });
}

function header(sab: SharedArrayBuffer): Int32Array {
  return new Int32Array(sab, 0, RING_HEADER_SLOTS);
}

function spawn(mode: string, sab: SharedArrayBuffer, extra: Record<string, unknown> = {}): Worker {
  return new Worker(WORKER_FIXTURE, { workerData: { mode, sab, modulePath: COMPILED_RING, ...extra } });
}

/** Next message from the worker; rejects on worker error or early exit. */
function nextMessage<T>(worker: Worker): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMessage = (m: T) => {
      cleanup();
      resolve(m);
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    const onExit = (code: number) => {
      cleanup();
      reject(new Error(`worker exited with code ${code} before replying`));
    };
    const cleanup = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}

/** Mulberry32: deterministic PRNG so failures are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('createRing', () => {
  it('accepts powers of two and rejects everything else with a RangeError naming capacityBytes', () => {
    expect(createRing(256).byteLength).toBeGreaterThan(256);
    for (const bad of [0, -256, 100, 255.5, 3 * 1024, NaN, 2 ** 31, 32]) {
      expect(() => createRing(bad)).toThrow(RangeError);
      expect(() => createRing(bad)).toThrow(/capacityBytes/);
    }
  });

  it('rejects buffers that were not created by createRing', () => {
    expect(() => new RingReader(new SharedArrayBuffer(1024))).toThrow(TypeError);
    expect(() => new RingWriter(new SharedArrayBuffer(16))).toThrow(TypeError);
  });
});

describe('ring, single thread', () => {
  it('round-trips various message shapes', () => {
    const sab = createRing(4096);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    const messages: unknown[] = [
      { a: 1, b: 'two', c: [3, 4.5, -6], d: null, e: true },
      [1, 'x', { y: [2, 3] }, []],
      'a plain string with ünïcödé ✓ and emoji 🚀',
      '',
      0,
      -1,
      2 ** 40 + 1,
      Math.PI,
      0.1,
      -1e-300,
      Number.MAX_SAFE_INTEGER,
      { deep: { nested: { objects: { go: { here: [{ k: 'v' }] } } } } },
      { big: 'z'.repeat(1000) },
    ];
    for (const m of messages) expect(w.write(m)).toBe(true);
    for (const m of messages) expect(r.read()).toEqual(m);
    expect(r.read()).toBeUndefined();

    // Binary (Uint8Array / Buffer) comes back as a Uint8Array (a Buffer) with the same bytes.
    expect(w.write({ bytes: new Uint8Array([0, 1, 2, 253, 254, 255]) })).toBe(true);
    const bytes = (r.read() as { bytes: Uint8Array }).bytes;
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(Array.from(bytes)).toEqual([0, 1, 2, 253, 254, 255]);
    expect(w.write(Buffer.from('hello buffer'))).toBe(true);
    const buf = r.read() as Uint8Array;
    expect(buf).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(buf).toString()).toBe('hello buffer');

    // Maps travel as msgpack maps and decode as plain objects (records are off
    // so any thread can decode; see ring.ts).
    expect(w.write({ m: new Map<string, unknown>([['k', new Map([['inner', [1, 2]]])]]) })).toBe(true);
    expect(r.read()).toEqual({ m: { k: { inner: [1, 2] } } });
    expect(w.dropped).toBe(0);
    expect(r.dropped).toBe(0);
  });

  it('decoded binaries do not alias ring or scratch memory', () => {
    const sab = createRing(256);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    w.write({ b: new Uint8Array([7, 7, 7, 7]) });
    const first = r.read() as { b: Uint8Array };
    for (let i = 0; i < 100; i++) {
      w.write({ b: new Uint8Array(20).fill(i) });
      r.read();
    }
    expect(Array.from(first.b)).toEqual([7, 7, 7, 7]);
    expect(first.b.buffer).not.toBeInstanceOf(SharedArrayBuffer);
  });

  it('drain delivers undefined messages and respects max', () => {
    const sab = createRing(256);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    w.write(undefined);
    w.write(1);
    w.write(2);
    const got: unknown[] = [];
    expect(r.drain((m) => got.push(m), 2)).toBe(2);
    expect(got).toEqual([undefined, 1]);
    expect(r.drain((m) => got.push(m))).toBe(1);
    expect(got).toEqual([undefined, 1, 2]);
    expect(r.drain((m) => got.push(m))).toBe(0);
  });

  it('wraps around correctly for thousands of varying frames through a 256-byte ring', () => {
    const packr = new Packr({ useRecords: false });
    const cap = 256;
    const sab = createRing(cap);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    const rand = prng(12345);
    const pending: unknown[] = [];
    let seq = 0;
    let accepted = 0;
    let rejected = 0;
    let delivered = 0;
    for (let step = 0; step < 20000; step++) {
      if (rand() < 0.55) {
        const msg = { seq: seq++, pad: 'p'.repeat(Math.floor(rand() * 110)) };
        const frameBytes = (4 + packr.pack(msg).length + 3) & ~3;
        const ok = w.write(msg);
        if (ok) {
          pending.push(msg);
          accepted++;
        } else {
          rejected++;
          // Space accounting must not be overly conservative: an empty ring
          // always takes a frame of at most half its capacity.
          expect(pending.length > 0 || frameBytes > cap / 2).toBe(true);
        }
      } else {
        const got = r.read();
        if (pending.length === 0) {
          expect(got).toBeUndefined();
        } else {
          expect(got).toEqual(pending.shift());
          delivered++;
        }
      }
    }
    r.drain((m) => {
      expect(m).toEqual(pending.shift());
      delivered++;
    });
    expect(pending.length).toBe(0);
    expect(delivered).toBe(accepted);
    expect(accepted).toBeGreaterThan(5000);
    expect(rejected).toBeGreaterThan(0);
    expect(w.dropped).toBe(rejected);
  });

  it('handles uint32 position overflow (positions start just below 2^32)', () => {
    const sab = createRing(256);
    const h = header(sab);
    const start = (2 ** 32 - 1000) | 0;
    h[RING_WRITE_POS] = start;
    h[RING_READ_POS] = start;
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    let next = 0;
    for (let seq = 0; seq < 3000; seq++) {
      const m = makeFrame(seq % 50); // payloads up to ~230 bytes
      while (!w.write({ seq, s: m.s })) {
        const got = r.read() as { seq: number };
        expect(got.seq).toBe(next++);
      }
    }
    r.drain((m) => expect((m as { seq: number }).seq).toBe(next++));
    expect(next).toBe(3000);
    // Positions really wrapped past 2^32.
    expect(h[RING_WRITE_POS] >>> 0).toBeLessThan(2 ** 32 - 1000);
    expect(h[RING_WRITE_POS]).toBe(h[RING_READ_POS]);
  });

  it('full ring: writes fail, drops are counted exactly, nothing is corrupted, space is reusable', () => {
    const sab = createRing(256);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    // 27 ASCII chars -> fixstr of 28 bytes -> 32-byte frame: exactly 8 fit.
    const msg = (i: number) => `msg-${String(i).padStart(4, '0')}-${'.'.repeat(18)}`;
    expect(new Packr({ useRecords: false }).pack(msg(0)).length).toBe(28);
    let written = 0;
    while (w.write(msg(written))) written++;
    expect(written).toBe(8); // no slot wasted: the ring is completely full
    let failed = 1;
    for (let i = 0; i < 25; i++) {
      expect(w.write({ other: i })).toBe(false);
      failed++;
    }
    expect(w.dropped).toBe(failed);
    expect(r.dropped).toBe(failed);

    // Read half, then refill: the freed space must be reusable (wraps).
    for (let i = 0; i < 4; i++) expect(r.read()).toBe(msg(i));
    for (let i = 8; i < 12; i++) expect(w.write(msg(i))).toBe(true);
    expect(w.write(msg(99))).toBe(false);
    failed++;
    const rest: unknown[] = [];
    r.drain((m) => rest.push(m));
    expect(rest).toEqual([4, 5, 6, 7, 8, 9, 10, 11].map(msg));
    expect(w.dropped).toBe(failed);
    for (let i = 0; i < 8; i++) expect(w.write(msg(i))).toBe(true);
  });

  it('oversized frames are dropped and counted (frame == capacity still fits)', () => {
    const sab = createRing(256);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);
    expect(w.write(new Uint8Array(300))).toBe(false);
    expect(w.dropped).toBe(1);
    expect(header(sab)[RING_DROPPED_BYTES]).toBe(303); // bin16 header (3) + 300
    // 249 bytes + bin8 header (2) = 251 payload -> 255 -> padded to a 256-byte frame.
    expect(w.write(new Uint8Array(249).fill(9))).toBe(true);
    expect(w.write(1)).toBe(false);
    expect(w.dropped).toBe(2);
    expect(Array.from(r.read() as Uint8Array)).toEqual(new Array(249).fill(9));
    expect(r.read()).toBeUndefined();
  });

  it('waitAsync resolves at once when data is queued, by timeout when idle, and on a write', async () => {
    const sab = createRing(256);
    const w = new RingWriter(sab);
    const r = new RingReader(sab);

    let t0 = performance.now();
    await r.waitAsync(100);
    const idle = performance.now() - t0;
    expect(idle).toBeGreaterThanOrEqual(50);
    expect(idle).toBeLessThan(5000);

    w.write('queued');
    t0 = performance.now();
    await r.waitAsync(10_000);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(r.read()).toBe('queued');

    setTimeout(() => w.write('later'), 30);
    t0 = performance.now();
    await r.waitAsync(10_000);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(r.read()).toBe('later');
  });
});

describe('ring, two threads', () => {
  beforeAll(() => {
    ensureCompiledRing();
  });

  /** Main thread consumes what a worker writes; returns the verification summary. */
  async function consumeFromWorker(sab: SharedArrayBuffer, count: number, retry: boolean) {
    const reader = new RingReader(sab);
    const worker = spawn('write', sab, { count, retry });
    let done: { sent: number; dropped: number } | null = null;
    let failure: unknown = null;
    const finished = nextMessage<{ sent: number; dropped: number }>(worker).then(
      (m) => (done = m),
      (e) => (failure = e),
    );
    let received = 0;
    let lastSeq = -1;
    let errors = 0;
    let firstError: string | null = null;
    const onMessage = (m: unknown) => {
      const seq = (m as Frame).seq;
      const err = checkFrame(m) ?? (seq <= lastSeq ? `seq ${seq} after ${lastSeq}` : null);
      if (err) {
        errors++;
        firstError ??= err;
      } else {
        if (retry && seq !== lastSeq + 1) {
          errors++;
          firstError ??= `lossless mode skipped from ${lastSeq} to ${seq}`;
        }
        lastSeq = seq;
      }
      received++;
    };
    try {
      for (;;) {
        if (failure) throw failure;
        if (reader.drain(onMessage, 8192) === 0) {
          if (done) {
            reader.drain(onMessage); // everything published before the worker's reply
            break;
          }
          await reader.waitAsync(20);
        }
      }
      await finished;
    } finally {
      await worker.terminate();
    }
    const summary = done as unknown as { sent: number; dropped: number };
    return { received, lastSeq, errors, firstError, sent: summary.sent, dropped: reader.dropped };
  }

  it('worker -> main, lossy: 200k frames intact, in order, received + dropped === sent', async () => {
    const sab = createRing(4096);
    const res = await consumeFromWorker(sab, 200_000, false);
    expect(res.firstError).toBeNull();
    expect(res.errors).toBe(0);
    expect(res.sent).toBe(200_000);
    expect(res.received + res.dropped).toBe(res.sent);
    expect(res.received).toBeGreaterThan(0);
  });

  it('worker -> main, retrying writer (ring full many times) with positions crossing 2^32', async () => {
    const sab = createRing(2048);
    const h = header(sab);
    h[RING_WRITE_POS] = (2 ** 32 - 50_000) | 0;
    h[RING_READ_POS] = (2 ** 32 - 50_000) | 0;
    const res = await consumeFromWorker(sab, 100_000, true);
    expect(res.firstError).toBeNull();
    expect(res.errors).toBe(0);
    expect(res.received).toBe(100_000);
    expect(res.lastSeq).toBe(99_999);
    expect(res.received + res.dropped).toBe(res.sent);
    expect(res.dropped).toBeGreaterThan(0); // the ring really was full
  });

  type ReadSummary = {
    received: number;
    lastSeq: number;
    errors: number;
    firstError: string | null;
    dropped: number;
    end: { end: true; sent: number };
  };

  /** Main thread produces; the worker verifies and replies with a summary. */
  async function produceToWorker(count: number, retry: boolean) {
    const sab = createRing(4096);
    const writer = new RingWriter(sab);
    const worker = spawn('read', sab);
    try {
      await nextMessage<{ ready: true }>(worker);
      const summaryP = nextMessage<ReadSummary>(worker);
      summaryP.catch(() => undefined); // if we throw below, that error is the one reported
      // Busy-retries below block this thread, so a dead worker must not hang
      // the test: bail out once nothing has been consumed for a few seconds.
      let stalledSince = 0;
      const stalled = (): boolean => {
        const now = Date.now();
        if (stalledSince === 0) stalledSince = now;
        return now - stalledSince > 5_000;
      };
      let sent = 0;
      for (let seq = 0; seq < count; seq++) {
        sent++;
        if (retry) {
          let tries = 0;
          while (!writer.write(makeFrame(seq))) {
            sent++;
            if (++tries % 1024 === 0 && stalled()) throw new Error('worker stopped draining the ring');
          }
          stalledSince = 0;
        } else {
          writer.write(makeFrame(seq));
        }
      }
      // The end marker must get through: busy-retry (the reader is another thread).
      let spins = 0;
      stalledSince = 0;
      while (!writer.write({ end: true, sent })) {
        if (++spins % 1024 === 0 && stalled()) throw new Error('worker never drained the ring');
      }
      const summary = await summaryP;
      return { ...summary, sent, writerDropped: writer.dropped, spins };
    } finally {
      await worker.terminate();
    }
  }

  it('main -> worker, lossy: 200k frames verified by the worker', async () => {
    const res = await produceToWorker(200_000, false);
    expect(res.firstError).toBeNull();
    expect(res.errors).toBe(0);
    expect(res.end.sent).toBe(200_000);
    // The end marker's own failed attempts are drops too.
    expect(res.received + res.dropped - res.spins).toBe(res.sent);
    expect(res.dropped).toBe(res.writerDropped);
    expect(res.received).toBeGreaterThan(0);
  });

  it('main -> worker, retrying writer: every frame delivered exactly once', async () => {
    const res = await produceToWorker(100_000, true);
    expect(res.firstError).toBeNull();
    expect(res.errors).toBe(0);
    expect(res.received).toBe(100_000);
    expect(res.lastSeq).toBe(99_999);
    expect(res.received + res.dropped - res.spins).toBe(res.sent);
  });

  it('waitAsync wakes when another thread writes, well before its timeout', async () => {
    const sab = createRing(1024);
    const reader = new RingReader(sab);
    const worker = spawn('wait-write', sab);
    await nextMessage(worker);
    const t0 = performance.now();
    const woke = reader.waitAsync(20_000).then(() => performance.now() - t0);
    worker.postMessage({ delayMs: 50, n: 42 });
    const elapsed = await woke;
    expect(elapsed).toBeLessThan(10_000);
    expect(reader.read()).toEqual({ hello: 'from worker', n: 42 });
    await worker.terminate();
  });
});
