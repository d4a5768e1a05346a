// The main thread's view of every worker's telemetry: running totals and merged histograms.
import * as hdr from 'hdr-histogram-js';
import type { RingReader } from './shared/ring';
import { DURATION_BUCKETS, type CacheTelemetry, type TelemetryFrame } from './shared/telemetry-frame';

const NB = DURATION_BUCKETS.length;

export interface RouteDurations {
  count: number;
  sum: number;
  /** Non-cumulative counts per DURATION_BUCKETS entry. */
  buckets: number[];
}

export class TelemetryAggregate {
  /** "route\u0000status" → count */
  readonly requests = new Map<string, number>();
  readonly durations = new Map<string, RouteDurations>();
  readonly latency = hdr.build({ bitBucketSize: 64, autoResize: true, numberOfSignificantValueDigits: 3, useWebAssembly: false });
  readonly workerRequests: number[] = [];
  readonly workerInFlight: number[] = [];
  /** Per worker: [heap used, external, heap limit] bytes at its last frame; null once it exited. */
  readonly workerHeap: (readonly [number, number, number] | null)[] = [];
  workerRestarts = 0;
  /** Frames dropped by every telemetry ring there ever was (see countDropped). */
  telemetryDropped = 0;
  private readonly droppedSeen = new WeakMap<RingReader, number>();
  /** Response cache: running totals of the counters; null until a worker reports a cache. */
  cache: CacheTotals | null = null;
  /** Per worker: [bytes, entries, waiting] at its last frame. */
  readonly cacheSize: [number, number, number][] = [];

  /** Route names per config generation (a reload may add, remove or reorder routes). */
  private readonly namesByGen = new Map<number, readonly string[]>();
  /** Per worker index: the generation of its last frame. */
  private readonly workerGen: number[] = [];
  private routeNames: readonly string[];

  /** `workers`: the number of worker indexes (fixed for the life of the process). */
  constructor(routeNames: readonly string[], private readonly workers: number) {
    this.routeNames = routeNames;
    this.namesByGen.set(0, routeNames);
  }

  /** A reload: frames tagged `gen` name their routes by `names`. */
  setRoutes(gen: number, names: readonly string[]): void {
    this.namesByGen.set(gen, names);
  }

  /** Generations whose route names are still kept, oldest first. */
  get generations(): number[] {
    return [...this.namesByGen.keys()].sort((a, b) => a - b);
  }

  /** Add what `ring` dropped since the last call for it. The metric is a counter and must not
   * fall, so it is a running total here rather than a sum over the rings of the live workers:
   * a replaced worker's ring (drained one last time at its exit) would take its drops along. */
  countDropped(ring: RingReader): void {
    const dropped = ring.dropped;
    // uint32 difference: stays right when the ring's shared counter wraps at 2^32.
    this.telemetryDropped += (dropped - (this.droppedSeen.get(ring) ?? 0)) >>> 0;
    this.droppedSeen.set(ring, dropped);
  }

  /** A worker reads its frames in order and switches generation only forward (it flushes the old
   * generation's counts before applying a reload; a replacement starts on the current one), so
   * once every worker index has sent a frame of generation g, no frame older than g can come:
   * forget those names. A worker that has not reported yet counts as generation 0. */
  private noteGen(worker: number, gen: number): void {
    if (this.workerGen[worker] === gen) return;
    this.workerGen[worker] = gen;
    let oldest = gen;
    for (let w = 0; w < this.workers; w++) oldest = Math.min(oldest, this.workerGen[w] ?? 0);
    for (const g of this.namesByGen.keys()) if (g < oldest) this.namesByGen.delete(g);
  }

  private routeName(index: number): string {
    return this.routeNames[index] ?? 'none';
  }

  add(frame: TelemetryFrame): void {
    const w = frame.worker;
    this.noteGen(w, frame.gen);
    this.routeNames = this.namesByGen.get(frame.gen) ?? this.routeNames;
    if (frame.cache !== undefined) this.addCache(w, frame.cache);
    this.workerInFlight[w] = frame.inFlight;
    this.workerHeap[w] = frame.heap;
    const r = frame.requests;
    let workerTotal = 0;
    for (let i = 0; i < r.length; i += 3) {
      const key = `${this.routeName(r[i])}\u0000${r[i + 1]}`;
      this.requests.set(key, (this.requests.get(key) ?? 0) + r[i + 2]);
      workerTotal += r[i + 2];
    }
    this.workerRequests[w] = (this.workerRequests[w] ?? 0) + workerTotal;
    const d = frame.durations;
    for (let i = 0; i < d.length; i += NB + 3) {
      const name = this.routeName(d[i]);
      let agg = this.durations.get(name);
      if (!agg) this.durations.set(name, (agg = { count: 0, sum: 0, buckets: new Array(NB).fill(0) }));
      agg.count += d[i + 1];
      agg.sum += d[i + 2];
      for (let b = 0; b < NB; b++) agg.buckets[b] += d[i + 3 + b];
    }
    if (frame.hdr !== null) {
      const h = hdr.decodeFromCompressedBase64(frame.hdr, 32, false);
      this.latency.add(h);
      h.destroy();
    }
  }

  /** Worker `w` exited: its gauges read 0 until its replacement reports (its in-flight
   * requests died with it, its L1 cache is gone). Counters keep what it reported: its last
   * frame has been drained by then. */
  workerGone(w: number): void {
    this.workerInFlight[w] = 0;
    this.workerHeap[w] = null;
    if (this.cacheSize[w]) this.cacheSize[w] = [0, 0, 0];
  }

  private addCache(w: number, c: CacheTelemetry): void {
    const t = (this.cache ??= { hits: 0, l2Hits: 0, misses: 0, stale: 0, revalidated: 0, coalesced: 0, stored: 0, evictions: 0, purged: 0, l2Errors: 0 });
    for (const k of CACHE_COUNTERS) t[k] += c[k];
    this.cacheSize[w] = [c.bytes, c.entries, c.waiting];
  }

  get total(): number {
    let n = 0;
    for (const v of this.requests.values()) n += v;
    return n;
  }
}

export const CACHE_COUNTERS = ['hits', 'l2Hits', 'misses', 'stale', 'revalidated', 'coalesced', 'stored', 'evictions', 'purged', 'l2Errors'] as const;
export type CacheTotals = Record<(typeof CACHE_COUNTERS)[number], number>;
