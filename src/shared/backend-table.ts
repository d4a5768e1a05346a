// The per-backend table every thread shares (layout in ./layout.ts, "backend table").
// Main allocates it before the workers start and writes health and drain flags; workers count
// in-flight requests, latency and failures, and run the ejection and circuit-breaker state
// machines with Atomics so that every worker sees the same numbers.
//
// The functions below run on the data path: plain top-level functions over (Int32Array, row
// base), no objects. Read-modify-write races between workers are benign where noted.
import type { BalancingConfig, GatewayConfig } from '../config/config';
import {
  BACKEND_SLOTS,
  BACKEND_TABLE_HEADER_BYTES,
  BACKEND_TABLE_MAGIC,
  BK_CIRCUIT,
  BK_CIRCUIT_OPENED_AT,
  BK_CIRCUIT_PROBES,
  BK_CONSECUTIVE_FAILS,
  BK_DRAINED,
  BK_EJECTED_UNTIL,
  BK_EJECTIONS,
  BK_EWMA_US,
  BK_FAILURES,
  BK_HEALTHY,
  BK_IN_FLIGHT,
  BK_REQUESTS,
  BK_WINDOW_FAILS,
  BK_WINDOW_START,
  BT_BACKEND_COUNT,
  BT_MAGIC_SLOT,
  BT_WORKER_COUNT,
  CIRCUIT_CLOSED,
  CIRCUIT_HALF_OPEN,
  CIRCUIT_OPEN,
  INT32_BYTES,
} from './layout';

const HEADER_SLOTS = BACKEND_TABLE_HEADER_BYTES / INT32_BYTES;

export class BackendTable {
  readonly i32: Int32Array;
  /** Date.now() when the table was created; table times are ms since then (fit in Int32). */
  readonly epoch: number;
  readonly count: number;
  readonly workers: number;

  /** Allocate a table for `count` backends and `workers` workers, every backend up and closed. */
  static create(count: number, workers = 1): SharedArrayBuffer {
    const sab = new SharedArrayBuffer(BACKEND_TABLE_HEADER_BYTES + count * (BACKEND_SLOTS + workers) * INT32_BYTES);
    new Float64Array(sab, 0, 1)[0] = Date.now();
    const i32 = new Int32Array(sab);
    i32[BT_MAGIC_SLOT] = BACKEND_TABLE_MAGIC;
    i32[BT_BACKEND_COUNT] = count;
    i32[BT_WORKER_COUNT] = workers;
    for (let i = 0; i < count; i++) i32[rowOf(i) + BK_HEALTHY] = 1;
    return sab;
  }

  constructor(readonly buffer: SharedArrayBuffer) {
    this.i32 = new Int32Array(buffer);
    if (this.i32[BT_MAGIC_SLOT] !== BACKEND_TABLE_MAGIC) throw new Error('not a backend table');
    // Written once before any reader exists (postMessage/workerData orders it): no Atomics needed.
    this.epoch = new Float64Array(buffer, 0, 1)[0];
    this.count = this.i32[BT_BACKEND_COUNT];
    this.workers = this.i32[BT_WORKER_COUNT];
  }

  /** Int32 index of worker `worker`'s in-flight share for backend `index`. */
  ownSlot(worker: number, index: number): number {
    if (worker < 0 || worker >= this.workers) throw new RangeError(`worker ${worker} has no column in the backend table`);
    return HEADER_SLOTS + this.count * BACKEND_SLOTS + worker * this.count + index;
  }

  /** A worker died: its unreleased in-flight requests will never finish; take them back. */
  reclaimWorker(worker: number): number {
    let total = 0;
    for (let i = 0; i < this.count; i++) {
      const n = Atomics.exchange(this.i32, this.ownSlot(worker, i), 0);
      if (n !== 0) {
        Atomics.sub(this.i32, this.row(i) + BK_IN_FLIGHT, n);
        total += n;
      }
    }
    return total;
  }

  now(): number {
    return Date.now() - this.epoch;
  }

  /** Int32 index of backend `index`'s first slot. */
  row(index: number): number {
    return rowOf(index);
  }
}

function rowOf(index: number): number {
  return HEADER_SLOTS + index * BACKEND_SLOTS;
}

/** Table index of every backend, per route, per backend (config order). */
export type BackendRows = readonly (readonly number[])[];

export function backendCount(config: GatewayConfig): number {
  return config.routes.reduce((n, r) => n + r.backends.length, 0);
}

/** May this backend get a new request now? Health, operator drain, ejection, circuit.
 * `epoch` is the table's; the clock is read only when an ejection or open circuit needs it
 * (Date.now() is a fifth of the cost of a whole pick). */
export function isUsable(t: Int32Array, row: number, epoch: number, lb: BalancingConfig): boolean {
  if (Atomics.load(t, row + BK_HEALTHY) === 0 || Atomics.load(t, row + BK_DRAINED) !== 0) return false;
  const until = Atomics.load(t, row + BK_EJECTED_UNTIL);
  if (until !== 0 && until > Date.now() - epoch) return false;
  const circuit = Atomics.load(t, row + BK_CIRCUIT);
  if (circuit === CIRCUIT_CLOSED) return true;
  if (circuit === CIRCUIT_OPEN) {
    if (Date.now() - epoch - Atomics.load(t, row + BK_CIRCUIT_OPENED_AT) < lb.circuitCooldownMs) return false;
    // Cool-down over: the first thread to notice moves it to half-open.
    if (Atomics.compareExchange(t, row + BK_CIRCUIT, CIRCUIT_OPEN, CIRCUIT_HALF_OPEN) === CIRCUIT_OPEN) {
      Atomics.store(t, row + BK_CIRCUIT_PROBES, 0);
    }
  }
  return Atomics.load(t, row + BK_CIRCUIT_PROBES) < lb.circuitProbes;
}

/** A request goes to this backend. Returns true when it is a half-open circuit probe.
 * `own`: this worker's in-flight share slot (BackendTable.ownSlot), or -1. */
export function noteDispatch(t: Int32Array, row: number, own = -1): boolean {
  Atomics.add(t, row + BK_IN_FLIGHT, 1);
  if (own >= 0) Atomics.add(t, own, 1);
  Atomics.add(t, row + BK_REQUESTS, 1);
  if (Atomics.load(t, row + BK_CIRCUIT) !== CIRCUIT_HALF_OPEN) return false;
  Atomics.add(t, row + BK_CIRCUIT_PROBES, 1);
  return true;
}

/** The attempt on this backend ended (any way). */
export function noteRelease(t: Int32Array, row: number, probe: boolean, own = -1): void {
  Atomics.sub(t, row + BK_IN_FLIGHT, 1);
  if (own >= 0) Atomics.sub(t, own, 1);
  if (probe) Atomics.sub(t, row + BK_CIRCUIT_PROBES, 1);
}

/** The backend answered (below 500) after `micros`: feed the EWMA, close the circuit. */
export function noteSuccess(t: Int32Array, row: number, micros: number): void {
  const old = Atomics.load(t, row + BK_EWMA_US);
  // Load-then-store: two workers updating at once lose one sample, which an average tolerates.
  Atomics.store(t, row + BK_EWMA_US, old === 0 ? Math.max(1, Math.round(micros)) : Math.round(old + (micros - old) * EWMA_ALPHA));
  if (Atomics.load(t, row + BK_CONSECUTIVE_FAILS) !== 0) Atomics.store(t, row + BK_CONSECUTIVE_FAILS, 0);
  if (Atomics.load(t, row + BK_CIRCUIT) === CIRCUIT_HALF_OPEN) Atomics.store(t, row + BK_CIRCUIT, CIRCUIT_CLOSED);
}

const EWMA_ALPHA = 0.3;

/** A connection failure, reset, timeout or 5xx: count it, eject or open the circuit on threshold.
 * `mayEject` is false for a route's only backend: as in nginx, ejecting it would turn a few
 * errors into a total outage (the circuit breaker, opt-in, still applies). */
export function noteFailure(t: Int32Array, row: number, now: number, lb: BalancingConfig, mayEject = true): void {
  Atomics.add(t, row + BK_FAILURES, 1);
  const consecutive = Atomics.add(t, row + BK_CONSECUTIVE_FAILS, 1) + 1;
  if (lb.maxFails > 0 && mayEject) {
    const start = Atomics.load(t, row + BK_WINDOW_START);
    if (now - start > lb.failWindowMs && Atomics.compareExchange(t, row + BK_WINDOW_START, start, now) === start) {
      Atomics.store(t, row + BK_WINDOW_FAILS, 0);
    }
    // Exactly one thread sees the count reach the threshold, so an ejection is counted once.
    if (Atomics.add(t, row + BK_WINDOW_FAILS, 1) + 1 === lb.maxFails) {
      Atomics.store(t, row + BK_EJECTED_UNTIL, now + lb.ejectTimeMs);
      Atomics.add(t, row + BK_EJECTIONS, 1);
      Atomics.store(t, row + BK_WINDOW_START, now);
      Atomics.store(t, row + BK_WINDOW_FAILS, 0);
    }
  }
  if (lb.circuitFailures > 0) {
    const state = Atomics.load(t, row + BK_CIRCUIT);
    if (state === CIRCUIT_HALF_OPEN) {
      // A failed probe re-opens for another cool-down.
      Atomics.store(t, row + BK_CIRCUIT_OPENED_AT, now);
      Atomics.store(t, row + BK_CIRCUIT, CIRCUIT_OPEN);
    } else if (state === CIRCUIT_CLOSED && consecutive >= lb.circuitFailures) {
      Atomics.store(t, row + BK_CIRCUIT_OPENED_AT, now);
      Atomics.compareExchange(t, row + BK_CIRCUIT, CIRCUIT_CLOSED, CIRCUIT_OPEN);
    }
  }
}

/** Admin "up": clear drain, ejection and circuit; the backend takes requests again. */
export function markUp(t: Int32Array, row: number): void {
  Atomics.store(t, row + BK_DRAINED, 0);
  Atomics.store(t, row + BK_EJECTED_UNTIL, 0);
  Atomics.store(t, row + BK_WINDOW_FAILS, 0);
  Atomics.store(t, row + BK_CONSECUTIVE_FAILS, 0);
  Atomics.store(t, row + BK_CIRCUIT, CIRCUIT_CLOSED);
  Atomics.store(t, row + BK_HEALTHY, 1);
}

/** A row handed to a new backend: up, nothing counted. */
export function resetRow(t: Int32Array, row: number): void {
  for (let i = 0; i < BACKEND_SLOTS; i++) Atomics.store(t, row + i, 0);
  Atomics.store(t, row + BK_HEALTHY, 1);
}

export const CIRCUIT_NAMES = ['closed', 'open', 'half-open'] as const;
