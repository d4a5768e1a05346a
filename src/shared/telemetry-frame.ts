// The telemetry frame a worker sends the main thread over its ring, at a fixed cadence.
// Counts are deltas since the previous frame; the main thread keeps the running totals.
import type { ReloadFrame } from './reload-frame';

/** Upper bounds (seconds) of the Prometheus histogram ugate_request_duration_seconds. */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** How often a worker sends its frame. */
export const TELEMETRY_INTERVAL_MS = 250;

/** Latency histograms record microseconds, up to this value (longer ones are clamped). */
export const HDR_MAX_MICROS = 3_600_000_000;

export interface TelemetryFrame {
  readonly t: 'telemetry';
  readonly worker: number;
  /** Flat triples: route index, status, count. Route index === routes.length means "no route". */
  readonly requests: number[];
  /** Flat per route: route index, count, sum of seconds, then one count per DURATION_BUCKETS entry (not cumulative). */
  readonly durations: number[];
  /** Latency histogram (microseconds) of this interval, hdr-histogram-js compressed base64; null if empty. */
  readonly hdr: string | null;
  readonly inFlight: number;
  /** This worker's V8 heap: bytes used, external bytes (Buffers: bodies, cached bodies), limit. */
  readonly heap: readonly [used: number, external: number, limit: number];
  /** Config generation the route indexes refer to (0 = the config at start; +1 per reload). */
  readonly gen: number;
  /** Response cache counters (deltas) and size (current); absent when caching is off. */
  readonly cache?: CacheTelemetry;
}

export interface CacheTelemetry {
  readonly hits: number;
  /** Of the hits, those found in L2 (Redis). */
  readonly l2Hits: number;
  readonly misses: number;
  /** Answers from stale entries (stale-while-revalidate and stale-if-error). */
  readonly stale: number;
  readonly revalidated: number;
  /** Requests that waited for another request's fill instead of going upstream. */
  readonly coalesced: number;
  /** Entries written. */
  readonly stored: number;
  readonly evictions: number;
  readonly purged: number;
  readonly l2Errors: number;
  /** Current bytes and entries in this worker's L1 (gauges, not deltas). */
  readonly bytes: number;
  readonly entries: number;
  /** Requests waiting on a fill in flight now (coalesced; a gauge). */
  readonly waiting: number;
}

/** Main → worker: start draining; or, at the drain deadline, close every connection now;
 * or purge cache entries (answered with a `cache-purged` worker event carrying the same id);
 * or switch to a reloaded config. */
export type ControlFrame =
  | { readonly t: 'drain' | 'close-now' }
  | { readonly t: 'cache-purge'; readonly id: number; readonly url?: string; readonly prefix?: string }
  | ReloadFrame;
