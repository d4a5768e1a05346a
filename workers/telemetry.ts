// Per-worker counters and latency histogram, flushed to the main thread as deltas.
import * as hdr from 'hdr-histogram-js';
import { DURATION_BUCKETS, HDR_MAX_MICROS, type TelemetryFrame } from '../src/shared/telemetry-frame';

const STATUS_MIN = 100;
const STATUS_SLOTS = 500; // 100..599
const NB = DURATION_BUCKETS.length;

export class WorkerTelemetry {
  private readonly routeSlots: number;
  private readonly requests: Float64Array;
  /** Per route: count, sum, then NB bucket counts. */
  private readonly durations: Float64Array;
  private readonly latency = hdr.build({ bitBucketSize: 32, autoResize: true, numberOfSignificantValueDigits: 3, useWebAssembly: false });
  private recorded = 0;

  constructor(routeCount: number, private readonly worker: number, private readonly gen: number) {
    this.routeSlots = routeCount + 1; // the extra slot counts requests that matched no route
    this.requests = new Float64Array(this.routeSlots * STATUS_SLOTS);
    this.durations = new Float64Array(this.routeSlots * (NB + 2));
  }

  record(route: number, status: number, seconds: number): void {
    const r = route < 0 ? this.routeSlots - 1 : route;
    const s = status >= STATUS_MIN && status < STATUS_MIN + STATUS_SLOTS ? status - STATUS_MIN : STATUS_SLOTS - 1;
    this.requests[r * STATUS_SLOTS + s]++;
    const base = r * (NB + 2);
    this.durations[base]++;
    this.durations[base + 1] += seconds;
    let b = 0;
    while (b < NB && seconds > DURATION_BUCKETS[b]) b++;
    if (b < NB) this.durations[base + 2 + b]++;
    const micros = Math.round(seconds * 1e6);
    this.latency.recordValue(micros < 1 ? 1 : micros > HDR_MAX_MICROS ? HDR_MAX_MICROS : micros);
    this.recorded++;
  }

  /** The deltas since the last call, then reset. */
  takeFrame(inFlight: number, heap: readonly [number, number, number]): TelemetryFrame {
    const requests: number[] = [];
    const durations: number[] = [];
    let hdrText: string | null = null;
    if (this.recorded > 0) {
      for (let i = 0; i < this.requests.length; i++) {
        if (this.requests[i] !== 0) {
          requests.push(Math.floor(i / STATUS_SLOTS), (i % STATUS_SLOTS) + STATUS_MIN, this.requests[i]);
          this.requests[i] = 0;
        }
      }
      for (let r = 0; r < this.routeSlots; r++) {
        const base = r * (NB + 2);
        if (this.durations[base] === 0) continue;
        durations.push(r, ...this.durations.subarray(base, base + NB + 2));
        this.durations.fill(0, base, base + NB + 2);
      }
      hdrText = hdr.encodeIntoCompressedBase64(this.latency);
      this.latency.reset();
      this.recorded = 0;
    }
    return { t: 'telemetry', worker: this.worker, requests, durations, hdr: hdrText, inFlight, heap, gen: this.gen };
  }
}
