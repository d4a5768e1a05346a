// Worker supervision: spawn the proxy workers, replace any that dies (counted and logged),
// collect their telemetry from the rings, and drain them on shutdown.
import { join } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { Worker, type ResourceLimits } from 'node:worker_threads';
import type { GatewayConfig } from './config/config';
import { log } from './log';
import type { BackendTable, BackendRows } from './shared/backend-table';
import type { ReloadFrame } from './shared/reload-frame';
import { CONTROL_RING_BYTES, TELEMETRY_RING_BYTES } from './shared/layout';
import { createRing, RingReader, RingWriter } from './shared/ring';
import { TELEMETRY_INTERVAL_MS, type ControlFrame, type TelemetryFrame } from './shared/telemetry-frame';
import type { TelemetryAggregate } from './telemetry';
import type { WorkerEvent, WorkerInit } from '../workers/proxy-worker';
import { purgeRedis } from '../workers/cache/redis-store';

const WORKER_SCRIPT = join(__dirname, '..', 'workers', 'proxy-worker.js');
/** How long a worker gets to exit after being told to close every connection. */
const CLOSE_GRACE_MS = 3000;
/** Heap a worker needs besides its L1 cache: requests, pools, cache fills under way. */
const HEAP_BESIDES_CACHE_MB = 1024;

/** V8 gives each worker its own heap limit (the same as main's: ~4 GiB on 64-bit). Bodies live
 * outside that heap, but an entry's objects (~1-2 KiB, store.ts) do not: an L1 cache of small
 * answers near or above the limit would end the worker out of memory once full, and its
 * replacement again. The limit is raised to hold all of the cache and the rest; never lowered. */
export function workerResourceLimits(config: GatewayConfig): ResourceLimits | undefined {
  if (config.cache === null) return undefined;
  const needMb = Math.ceil(config.cache.size / 2 ** 20) + HEAP_BESIDES_CACHE_MB;
  return needMb > getHeapStatistics().heap_size_limit / 2 ** 20 ? { maxOldGenerationSizeMb: needMb } : undefined;
}

export type WorkerPhase = 'starting' | 'listening' | 'draining' | 'exited';

interface Slot {
  readonly index: number;
  worker: Worker;
  telemetry: RingReader;
  control: RingWriter;
  phase: WorkerPhase;
  /** Consecutive restarts without a successful listen, for back-off. */
  crashes: number;
  exited: Promise<number>;
}

export class Supervisor {
  private readonly slots: Slot[] = [];
  private stopping = false;
  private port = 0;
  private purgeSeq = 0;
  private readonly pollTimer: NodeJS.Timeout;

  /** The per-backend table shared with every worker (src/shared/backend-table.ts). */
  private readonly table: BackendTable;

  /** Backend-table rows of the current config, and its generation (reloads). */
  private rows: BackendRows;
  private gen = 0;

  /** V8's heap limit as the last worker to start reported it (workerResourceLimits). */
  heapLimitBytes = 0;

  constructor(private config: GatewayConfig, private readonly aggregate: TelemetryAggregate, table: BackendTable, rows: BackendRows) {
    this.rows = rows;
    this.table = table;
    this.pollTimer = setInterval(() => this.collectTelemetry(), TELEMETRY_INTERVAL_MS);
  }

  /** Start every worker on `port` (already resolved: uSockets sets SO_REUSEPORT only for a
   * non-zero port, so workers cannot share a port the kernel picked for one of them). */
  async start(port: number): Promise<void> {
    this.port = port;
    const listening: Promise<number>[] = [];
    for (let i = 0; i < this.config.workers; i++) listening.push(this.whenListening(this.spawn(i)));
    await Promise.all(listening);
  }

  get phases(): WorkerPhase[] {
    return this.slots.map((s) => s.phase);
  }

  get ready(): boolean {
    return !this.stopping && this.slots.length === this.config.workers && this.slots.every((s) => s.phase === 'listening');
  }

  private spawn(index: number, crashes = 0): Slot {
    const telemetryRing = createRing(TELEMETRY_RING_BYTES);
    const controlRing = createRing(CONTROL_RING_BYTES);
    const init: WorkerInit = { index, config: this.config, port: this.port, telemetryRing, controlRing, backendTable: this.table.buffer, backendRows: this.rows, gen: this.gen };
    const worker = new Worker(WORKER_SCRIPT, { workerData: init, name: `ugate-proxy-${index}`, resourceLimits: workerResourceLimits(this.config) });
    const slot: Slot = {
      index,
      worker,
      telemetry: new RingReader(telemetryRing),
      control: new RingWriter(controlRing),
      phase: 'starting',
      crashes,
      exited: new Promise((resolve) => worker.once('exit', resolve)),
    };
    this.slots[index] = slot;
    worker.on('message', (event: WorkerEvent) => this.onEvent(slot, event));
    worker.on('error', (err) => log('error', `worker ${index} crashed: ${err.stack ?? err}`));
    worker.once('exit', (code) => this.onExit(slot, code));
    return slot;
  }

  private whenListening(slot: Slot): Promise<number> {
    return new Promise((resolve, reject) => {
      const onMessage = (event: WorkerEvent) => {
        if (event.type === 'listening') {
          this.heapLimitBytes = event.heapLimitBytes;
          resolve(event.port);
        }
        else if (event.type === 'listen-failed') reject(new Error(event.reason));
        else return;
        slot.worker.off('message', onMessage);
      };
      slot.worker.on('message', onMessage);
      slot.worker.once('exit', (code) => reject(new Error(`worker ${slot.index} exited with code ${code} before listening`)));
    });
  }

  /** Purge matching cache entries on every live worker and in the L2 (Redis) when there is one. */
  async purgeCache(match: { url?: string; prefix?: string }): Promise<{ workers: number; acknowledged: number; removed: number; redisRemoved?: number; redisError?: string }> {
    const redisUrl = this.config.cache?.redis ?? null;
    const [workers, redis] = await Promise.all([
      this.purgeWorkers(match),
      redisUrl === null ? null : purgeRedis(redisUrl, match).then((n) => ({ redisRemoved: n }), (err: Error) => ({ redisError: err.message })),
    ]);
    return redis === null ? workers : { ...workers, ...redis };
  }

  /** Purge on every live worker; resolves with how many acknowledged (within `timeoutMs`) and
   * how many entries they removed. */
  private purgeWorkers(match: { url?: string; prefix?: string }, timeoutMs = 2000): Promise<{ workers: number; acknowledged: number; removed: number }> {
    const id = ++this.purgeSeq;
    const live = this.slots.filter((s) => s && (s.phase === 'listening' || s.phase === 'starting'));
    return new Promise((resolve) => {
      let acknowledged = 0;
      let removed = 0;
      const listeners: [Slot, (e: WorkerEvent) => void][] = [];
      const done = () => {
        clearTimeout(timer);
        for (const [s, l] of listeners) s.worker.off('message', l);
        resolve({ workers: live.length, acknowledged, removed });
      };
      const timer = setTimeout(done, timeoutMs);
      if (live.length === 0) return done();
      for (const s of live) {
        const onMessage = (e: WorkerEvent) => {
          if (e.type !== 'cache-purged' || e.id !== id) return;
          acknowledged++;
          removed += e.removed;
          if (acknowledged === live.length) done();
        };
        listeners.push([s, onMessage]);
        s.worker.on('message', onMessage);
        this.sendControl(s, { t: 'cache-purge', id, ...match });
      }
    });
  }

  private onEvent(slot: Slot, event: WorkerEvent): void {
    if (event.type === 'listening') {
      slot.phase = 'listening';
      slot.crashes = 0;
    }
  }

  private onExit(slot: Slot, code: number): void {
    this.drainRing(slot);
    // Otherwise /metrics and /stats would show its last in-flight count and cache size until a
    // replacement sends its first frame (never, if it keeps failing to start).
    this.aggregate.workerGone(slot.index);
    slot.phase = 'exited';
    if (this.stopping || this.slots[slot.index] !== slot) return;
    this.aggregate.workerRestarts++;
    // Its in-flight requests died with it: without this, least-conn would avoid their backends forever.
    const lost = this.table.reclaimWorker(slot.index);
    if (lost > 0) log('warn', `worker ${slot.index}: ${lost} in-flight backend request(s) lost`);
    const delay = Math.min(5000, 100 * 2 ** slot.crashes);
    log('error', `worker ${slot.index} exited with code ${code}; replacing it in ${delay} ms (restarts so far: ${this.aggregate.workerRestarts})`);
    setTimeout(() => {
      if (!this.stopping) this.spawn(slot.index, slot.crashes + 1);
    }, delay).unref();
  }

  private collectTelemetry(): void {
    for (const slot of this.slots) if (slot) this.drainRing(slot);
  }

  private drainRing(slot: Slot): void {
    slot.telemetry.drain((m) => this.aggregate.add(m as TelemetryFrame));
    this.aggregate.countDropped(slot.telemetry);
  }

  /** Stop accepting, let in-flight requests finish for up to drainTimeoutMs, then close the
   * remaining connections. Resolves true when every worker exited cleanly. */
  async drain(drainTimeoutMs: number): Promise<boolean> {
    this.stopping = true;
    const live = this.slots.filter((s) => s && s.phase !== 'exited');
    for (const s of live) {
      s.phase = 'draining';
      this.sendControl(s, { t: 'drain' });
    }
    const all = Promise.all(live.map((s) => s.exited));
    const inTime = await withTimeout(all, drainTimeoutMs);
    if (!inTime) {
      log('warn', `drain timeout (${drainTimeoutMs} ms) reached: closing the remaining connections`);
      for (const s of live) if (s.phase !== 'exited') this.sendControl(s, { t: 'close-now' });
      if (!(await withTimeout(all, CLOSE_GRACE_MS))) return false;
    }
    clearInterval(this.pollTimer);
    this.collectTelemetry();
    return (await all).every((code) => code === 0);
  }

  /** SIGHUP: every live worker switches to `config` (workers replaced later start on it). */
  reload(config: GatewayConfig, rows: BackendRows, gen: number): void {
    if (this.stopping) return;
    this.config = config;
    this.rows = rows;
    this.gen = gen;
    const frame: ReloadFrame = { t: 'reload', gen, config, rows };
    for (const s of this.slots) if (s && s.phase !== 'exited') this.sendControl(s, frame);
  }

  private sendControl(slot: Slot, frame: ControlFrame): void {
    if (!slot.control.write(frame)) log('error', `control ring of worker ${slot.index} is full`);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    p.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
