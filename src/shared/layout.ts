/**
 * Shared-memory layout: the ONE place that names every slot index, size and
 * sentinel of every SharedArrayBuffer exchanged between the main thread and
 * worker threads. Code elsewhere must import these constants instead of
 * writing bare indexes, so a layout change is a one-file edit and both sides
 * of a buffer can never disagree about where a field lives.
 *
 * Organised in sections, one per shared structure. Add new tables as new
 * sections; never reuse or renumber an existing slot without bumping that
 * structure's magic/version constant.
 */

// ---- common ----

/** Bytes per Int32Array slot; every header in this file is an Int32Array. */
export const INT32_BYTES = 4;

/**
 * Bytes per CPU cache line we assume when separating producer-owned and
 * consumer-owned slots, so the two threads do not false-share one line.
 */
export const CACHE_LINE_BYTES = 64;

// ---- ring ----
//
// SharedArrayBuffer layout of a single-producer single-consumer ring
// (src/shared/ring.ts):
//
//   [0, RING_HEADER_BYTES)                       Int32Array header (slots below)
//   [RING_HEADER_BYTES, RING_HEADER_BYTES + cap)  data region, `cap` bytes
//
// Data region holds frames: an Int32 length prefix (payload bytes) followed by
// the msgpack payload, padded to RING_ALIGN. A prefix equal to
// RING_WRAP_SENTINEL means "the rest of the region is unused, the next frame
// starts at offset 0".

/**
 * Header slot: producer's write position (uint32 stored as int32). A
 * monotonically increasing byte counter that wraps modulo 2^32; the data
 * offset is `pos & (cap - 1)`. Written only by the writer (Atomics.store =
 * publish), read by the reader (Atomics.load).
 */
export const RING_WRITE_POS = 0;

/**
 * Header slot: notification sequence. Incremented by the writer after each
 * publish; the reader parks on it with Atomics.waitAsync and is woken by
 * Atomics.notify. Kept on the writer's cache line since the writer bumps it.
 */
export const RING_NOTIFY_SEQ = 1;

/** Header slot: frames the writer could not place (ring full or frame too big). */
export const RING_DROPPED_FRAMES = 2;

/** Header slot: payload bytes of those dropped frames (wraps modulo 2^32). */
export const RING_DROPPED_BYTES = 3;

/** Header slot: data-region capacity in bytes, written once by createRing so a
 * RingWriter/RingReader built from a bare SharedArrayBuffer can validate it. */
export const RING_CAPACITY = 4;

/** Header slot: RING_MAGIC, written once by createRing; guards against
 * wrapping some unrelated SharedArrayBuffer in a ring reader/writer. */
export const RING_MAGIC_SLOT = 5;

/**
 * Header slot: consumer's read position (same encoding as RING_WRITE_POS).
 * Written only by the reader (Atomics.store = "these bytes may be reused"),
 * read by the writer. Placed one cache line after the writer's slots so the
 * two threads' hot stores do not contend on the same line.
 */
export const RING_READ_POS = CACHE_LINE_BYTES / INT32_BYTES; // 16

/** Number of Int32 header slots (two cache lines: writer line, reader line). */
export const RING_HEADER_SLOTS = (2 * CACHE_LINE_BYTES) / INT32_BYTES; // 32

/** Header size in bytes; the data region starts here. Multiple of 8 so the
 * data region is suitably aligned for any typed-array view. */
export const RING_HEADER_BYTES = RING_HEADER_SLOTS * INT32_BYTES; // 128

/** Identifies a ring header ("RNG1"). Bump when the ring layout changes. */
export const RING_MAGIC = 0x524e4731;

/** Bytes of the per-frame length prefix (an Int32 holding payload length). */
export const RING_FRAME_PREFIX_BYTES = 4;

/**
 * Frame alignment. Every frame starts on a 4-byte boundary, which (a) lets the
 * length prefix be read through an Int32Array and (b) guarantees at least 4
 * bytes remain before the end of the region whenever the offset is non-zero,
 * so a wrap sentinel always fits.
 */
export const RING_ALIGN = 4;

/**
 * Length-prefix value meaning "skip to offset 0". A real payload length is
 * never negative, so -1 (0xFFFFFFFF) cannot collide with a frame.
 */
export const RING_WRAP_SENTINEL = -1;

/** Smallest accepted capacity: room for a few minimal frames. */
export const RING_MIN_CAPACITY_BYTES = 64;

/**
 * Largest accepted capacity (2^30). Positions are uint32 counters wrapping at
 * 2^32; with a power-of-two capacity <= 2^30 the offset `pos & (cap - 1)`
 * stays continuous across that wrap and `(w - r) >>> 0` never exceeds cap.
 */
export const RING_MAX_CAPACITY_BYTES = 1 << 30;

/** Default worker -> main ring (telemetry, logs, metrics): 1 MiB, sized to
 * absorb bursts while the main thread is busy without dropping. */
export const TELEMETRY_RING_BYTES = 1 << 20;

/** Default main -> worker ring (control commands, config pushes): 64 KiB;
 * control traffic is rare and small. */
export const CONTROL_RING_BYTES = 1 << 16;

// ---- backend table ----
//
// One SharedArrayBuffer, allocated by main (src/shared/backend-table.ts) and passed to every
// worker in workerData, holds the state every thread must agree on per backend: health, the
// passive-ejection deadline, in-flight count, EWMA latency, circuit state, counters.
//
//   [0, BACKEND_TABLE_HEADER_BYTES)   header: Float64 epoch (ms, written once before any worker
//                                     starts, so plain reads are safe) + Int32 global slots
//   then BACKEND_SLOTS Int32 per backend, one cache line each, so workers bumping the in-flight
//   count of different backends do not false-share a line;
//   then, per worker, one Int32 per backend: that worker's share of the in-flight count, so
//   main can take back what a crashed worker never released (BT_WORKER_COUNT columns).
//
// Each backend has a row, assigned by src/backend-rows.ts: config order at start (routes as
// sorted, then each route's backends), kept across reloads. Times are ms since the epoch.

/** Header bytes: 8 for the Float64 epoch, then Int32 global slots; one cache line. */
export const BACKEND_TABLE_HEADER_BYTES = CACHE_LINE_BYTES;
/** Header Int32 slot (index into the Int32 view of the whole buffer): BACKEND_TABLE_MAGIC. */
export const BT_MAGIC_SLOT = 2;
/** Header Int32 slot: retries dispatched, all workers (wraps modulo 2^32). */
export const BT_RETRIES_TOTAL = 3;
/** Header Int32 slot: number of backend rows. */
export const BT_BACKEND_COUNT = 4;
/** Header Int32 slot: number of per-worker in-flight columns. */
export const BT_WORKER_COUNT = 5;
/** Identifies a backend table ("BKT1"). Bump when the row layout changes. */
export const BACKEND_TABLE_MAGIC = 0x424b5431;

/** Int32 slots per backend row (64 bytes: one cache line). */
export const BACKEND_SLOTS = CACHE_LINE_BYTES / INT32_BYTES; // 16
/** Row slot: 1 = up for active health checks (written by main only), 0 = down. Starts up. */
export const BK_HEALTHY = 0;
/** Row slot: passive ejection deadline (ms since epoch); 0 = not ejected. */
export const BK_EJECTED_UNTIL = 1;
/** Row slot: requests dispatched to this backend and not yet finished, all workers. */
export const BK_IN_FLIGHT = 2;
/** Row slot: EWMA of time to response headers, microseconds; 0 = no sample yet. */
export const BK_EWMA_US = 3;
/** Row slot: failures (connect errors, resets, 5xx) in the current fail window. */
export const BK_WINDOW_FAILS = 4;
/** Row slot: start of the current fail window (ms since epoch). */
export const BK_WINDOW_START = 5;
/** Row slot: circuit state, one of CIRCUIT_* below. */
export const BK_CIRCUIT = 6;
/** Row slot: when the circuit last opened (ms since epoch). */
export const BK_CIRCUIT_OPENED_AT = 7;
/** Row slot: half-open probes in flight. */
export const BK_CIRCUIT_PROBES = 8;
/** Row slot: consecutive failures (reset by any success). */
export const BK_CONSECUTIVE_FAILS = 9;
/** Row slot: requests dispatched, total (wraps modulo 2^32). */
export const BK_REQUESTS = 10;
/** Row slot: failures, total. */
export const BK_FAILURES = 11;
/** Row slot: passive ejections, total. */
export const BK_EJECTIONS = 12;
/** Row slot: 1 = drained by the operator (admin API): no new requests; in-flight ones finish. */
export const BK_DRAINED = 13;

export const CIRCUIT_CLOSED = 0;
export const CIRCUIT_OPEN = 1;
export const CIRCUIT_HALF_OPEN = 2;
