/**
 * Single-producer single-consumer message ring over a SharedArrayBuffer.
 *
 * Frames are msgpack-encoded (msgpackr, records disabled so any Unpackr in any
 * thread can decode them without shared structure state), length-prefixed and
 * 4-byte aligned. Layout constants live in ./layout.
 *
 * Position scheme: WRITE_POS and READ_POS are uint32 byte counters (stored in
 * Int32 slots, reinterpreted with `>>> 0`) that only ever increase and wrap
 * modulo 2^32. Capacity is a power of two <= 2^30, so it divides 2^32 and the
 * data offset `pos & (cap - 1)` is continuous across the 2^32 wrap, while the
 * fill level `(write - read) >>> 0` is always in [0, cap]. Full and empty are
 * therefore distinguishable without sacrificing a slot.
 *
 * Memory ordering: the writer fills payload bytes with plain stores and only
 * then publishes the new WRITE_POS with Atomics.store. Atomics operations are
 * sequentially consistent, so a reader whose Atomics.load observes that value
 * also observes every plain store that preceded it in the writer (release /
 * acquire pairing) — it can never see a published length with stale payload
 * bytes (a torn read). Symmetrically the reader copies a frame out before
 * publishing READ_POS, so the writer cannot reuse bytes still being read.
 *
 * Neither side ever blocks: a write that does not fit is dropped and counted.
 */
import { Packr, Unpackr } from 'msgpackr';
import {
  RING_ALIGN,
  RING_CAPACITY,
  RING_DROPPED_BYTES,
  RING_DROPPED_FRAMES,
  RING_FRAME_PREFIX_BYTES,
  RING_HEADER_BYTES,
  RING_HEADER_SLOTS,
  RING_MAGIC,
  RING_MAGIC_SLOT,
  RING_MAX_CAPACITY_BYTES,
  RING_MIN_CAPACITY_BYTES,
  RING_NOTIFY_SEQ,
  RING_READ_POS,
  RING_WRAP_SENTINEL,
  RING_WRITE_POS,
} from './layout';

const ALIGN_MASK = RING_ALIGN - 1;

/** Atomics.waitAsync is in Node 20 but only typed in lib.es2024. */
type WaitAsyncResult =
  | { async: false; value: 'not-equal' | 'timed-out' }
  | { async: true; value: Promise<'ok' | 'timed-out'> };
const atomicsWaitAsync = (
  Atomics as unknown as {
    waitAsync(ta: Int32Array, index: number, value: number, timeout?: number): WaitAsyncResult;
  }
).waitAsync;

const toVoid = (): void => undefined;
const RESOLVED: Promise<void> = Promise.resolve();
/** setTimeout's maximum delay; longer delays fire after 1 ms instead. */
const MAX_TIMER_MS = 0x7fffffff;

/** Returned internally by RingReader when the ring is empty (messages may be `undefined`). */
const EMPTY: unique symbol = Symbol('ring.empty');

/**
 * Allocate a ring. `capacityBytes` is the size of the data region and must be
 * a power of two in [RING_MIN_CAPACITY_BYTES, RING_MAX_CAPACITY_BYTES]
 * (power of two so offsets stay continuous when the uint32 positions wrap).
 * The largest frame that can ever be written is `capacityBytes` bytes
 * including prefix and padding; frames that would need to wrap need the
 * unused tail of the region free as well.
 */
export function createRing(capacityBytes: number): SharedArrayBuffer {
  if (
    !Number.isInteger(capacityBytes) ||
    capacityBytes < RING_MIN_CAPACITY_BYTES ||
    capacityBytes > RING_MAX_CAPACITY_BYTES ||
    (capacityBytes & (capacityBytes - 1)) !== 0
  ) {
    throw new RangeError(
      `capacityBytes must be a power of two between ${RING_MIN_CAPACITY_BYTES} and ` +
        `${RING_MAX_CAPACITY_BYTES}, got ${capacityBytes}`,
    );
  }
  const sab = new SharedArrayBuffer(RING_HEADER_BYTES + capacityBytes);
  const header = new Int32Array(sab, 0, RING_HEADER_SLOTS);
  header[RING_CAPACITY] = capacityBytes;
  header[RING_MAGIC_SLOT] = RING_MAGIC;
  return sab;
}

/** Validates a ring buffer and returns its capacity. */
function ringCapacity(sab: SharedArrayBuffer): number {
  if (!(sab instanceof SharedArrayBuffer) || sab.byteLength < RING_HEADER_BYTES) {
    throw new TypeError('ring: expected a SharedArrayBuffer created by createRing()');
  }
  const header = new Int32Array(sab, 0, RING_HEADER_SLOTS);
  const cap = Atomics.load(header, RING_CAPACITY);
  if (Atomics.load(header, RING_MAGIC_SLOT) !== RING_MAGIC || sab.byteLength !== RING_HEADER_BYTES + cap) {
    throw new TypeError('ring: SharedArrayBuffer is not a ring created by createRing()');
  }
  return cap;
}

/** The views both ends of a ring read and write through. */
abstract class RingViews {
  protected readonly header: Int32Array;
  protected readonly bytes: Uint8Array;
  protected readonly words: Int32Array;
  protected readonly cap: number;
  protected readonly mask: number;

  constructor(sab: SharedArrayBuffer) {
    this.cap = ringCapacity(sab);
    this.mask = this.cap - 1;
    this.header = new Int32Array(sab, 0, RING_HEADER_SLOTS);
    this.bytes = new Uint8Array(sab, RING_HEADER_BYTES, this.cap);
    this.words = new Int32Array(sab, RING_HEADER_BYTES, this.cap / 4);
  }
}

/** Producer side. Exactly one RingWriter per ring may exist (in one thread). */
export class RingWriter extends RingViews {
  private readonly packr = new Packr({ useRecords: false });
  /** Local copy of WRITE_POS (uint32); we are its only writer, so no load needed. */
  private writePos: number;

  constructor(sab: SharedArrayBuffer) {
    super(sab);
    this.writePos = Atomics.load(this.header, RING_WRITE_POS) >>> 0;
  }

  /**
   * Encode and enqueue one message. Returns false (and counts the drop) if the
   * ring lacks space or the frame exceeds capacity. Never blocks, never
   * overwrites unread data. Throws only if msgpackr cannot encode `message`.
   */
  write(message: unknown): boolean {
    // Packr reuses its internal buffer; the returned view is valid until the
    // next pack() call, and we copy it out immediately.
    const payload = this.packr.pack(message);
    const len = payload.length;
    const frame = (RING_FRAME_PREFIX_BYTES + len + ALIGN_MASK) & ~ALIGN_MASK;
    if (frame > this.cap) return this.drop(len);

    const w = this.writePos;
    // Acquire the reader's progress: bytes below READ_POS are free to reuse.
    const r = Atomics.load(this.header, RING_READ_POS) >>> 0;
    const free = this.cap - ((w - r) >>> 0);
    const off = w & this.mask;
    const tail = this.cap - off;
    let start = off;
    let need = frame;
    if (frame > tail) {
      // Not contiguous: burn the tail with a sentinel and restart at 0.
      // off !== 0 here (tail === cap would fit), and off is 4-aligned, so the
      // tail is >= 4 bytes and the sentinel fits.
      start = 0;
      need = tail + frame;
    }
    if (need > free) return this.drop(len);

    if (start !== off) this.words[off >> 2] = RING_WRAP_SENTINEL;
    this.words[start >> 2] = len;
    this.bytes.set(payload, start + RING_FRAME_PREFIX_BYTES);

    const next = (w + need) >>> 0;
    this.writePos = next;
    // Release: all plain stores above become visible to a reader that
    // Atomics.load()s this value (Atomics are sequentially consistent).
    Atomics.store(this.header, RING_WRITE_POS, next | 0);
    Atomics.add(this.header, RING_NOTIFY_SEQ, 1);
    Atomics.notify(this.header, RING_NOTIFY_SEQ);
    return true;
  }

  /** Frames dropped so far (shared counter, visible to both sides). */
  get dropped(): number {
    return Atomics.load(this.header, RING_DROPPED_FRAMES) >>> 0;
  }

  private drop(len: number): false {
    Atomics.add(this.header, RING_DROPPED_FRAMES, 1);
    Atomics.add(this.header, RING_DROPPED_BYTES, len);
    return false;
  }
}

/** Consumer side. Exactly one RingReader per ring may exist (in one thread). */
export class RingReader extends RingViews {
  // copyBuffers: binary values must not alias the scratch buffer, which is
  // reused for the next frame.
  private readonly unpackr = new Unpackr({ useRecords: false, copyBuffers: true });
  /** Local copy of READ_POS (uint32); we are its only writer. */
  private readPos: number;
  /**
   * Non-shared scratch the frame is copied into before decoding: it lets us
   * release ring space before decoding and keeps TextDecoder (which rejects
   * shared views) happy.
   */
  private scratch: Buffer = Buffer.allocUnsafe(256);

  constructor(sab: SharedArrayBuffer) {
    super(sab);
    this.readPos = Atomics.load(this.header, RING_READ_POS) >>> 0;
  }

  /**
   * Dequeue one message, or `undefined` if the ring is empty. (A message that
   * is itself `undefined` is indistinguishable here; drain() handles it.)
   */
  read(): unknown | undefined {
    const m = this.next();
    return m === EMPTY ? undefined : m;
  }

  /** Deliver up to `max` queued messages to `onMessage`; returns how many. */
  drain(onMessage: (m: unknown) => void, max = Infinity): number {
    let n = 0;
    while (n < max) {
      const m = this.next();
      if (m === EMPTY) break;
      n++;
      onMessage(m);
    }
    return n;
  }

  /**
   * Resolves when the writer publishes (notify sequence changes), immediately
   * if data is already queued, or after `timeoutMs` (default: no timeout).
   * Resolution does not guarantee a message: callers loop on read()/drain().
   * A finite timeout keeps the event loop alive until the promise settles; an
   * infinite wait does not (Node ignores pending Atomics.waitAsync when
   * deciding whether a thread is idle), like an unref'd handle.
   */
  waitAsync(timeoutMs: number = Infinity): Promise<void> {
    // Load the sequence BEFORE checking emptiness: if the writer publishes in
    // between, the sequence has moved and waitAsync returns 'not-equal' at
    // once, so a wake-up can never be lost.
    const seq = Atomics.load(this.header, RING_NOTIFY_SEQ);
    if ((Atomics.load(this.header, RING_WRITE_POS) >>> 0) !== this.readPos) return RESOLVED;
    const res = atomicsWaitAsync(this.header, RING_NOTIFY_SEQ, seq, timeoutMs);
    if (!res.async) return RESOLVED;
    if (!(timeoutMs < Infinity)) return res.value.then(toVoid);
    // Node does not count a pending Atomics.waitAsync as event-loop activity:
    // a worker whose only pending work is this wait would simply exit. A ref'd
    // timer keeps the loop alive and is also what settles the timeout, so the
    // promise resolves even if V8's own (unref'd) timeout task is late.
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, Math.min(Math.max(timeoutMs, 0), MAX_TIMER_MS));
      res.value.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Frames the writer dropped so far (shared counter). */
  get dropped(): number {
    return Atomics.load(this.header, RING_DROPPED_FRAMES) >>> 0;
  }

  private next(): unknown {
    let r = this.readPos;
    // Acquire: bytes below this position were fully written before it was stored.
    const w = Atomics.load(this.header, RING_WRITE_POS) >>> 0;
    if (r === w) return EMPTY;
    let off = r & this.mask;
    let len = this.words[off >> 2];
    if (len === RING_WRAP_SENTINEL) {
      // The writer publishes sentinel + following frame together, so a frame
      // at offset 0 is guaranteed to be readable.
      r = (r + this.cap - off) >>> 0;
      off = 0;
      len = this.words[0];
    }
    const frame = (RING_FRAME_PREFIX_BYTES + len + ALIGN_MASK) & ~ALIGN_MASK;
    if (len < 0 || frame > this.cap - off || frame > ((w - r) >>> 0)) {
      throw new Error(`ring: corrupt frame (length ${len} at offset ${off})`);
    }
    if (this.scratch.length < len) {
      let size = this.scratch.length;
      while (size < len) size *= 2;
      this.scratch = Buffer.allocUnsafe(size);
    }
    const start = off + RING_FRAME_PREFIX_BYTES;
    this.scratch.set(this.bytes.subarray(start, start + len));
    this.readPos = (r + frame) >>> 0;
    // Release the space only after the copy: from here the writer may reuse it.
    Atomics.store(this.header, RING_READ_POS, this.readPos | 0);
    return this.unpackr.unpack(this.scratch.subarray(0, len));
  }
}
