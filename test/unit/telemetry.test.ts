// The main thread's telemetry aggregate: the dropped-frames counter across replaced workers'
// rings, and the route names kept per config generation across reloads.
import { describe, expect, it } from 'vitest';
import { prometheusText } from '../../src/metrics';
import { RING_DROPPED_FRAMES, RING_HEADER_SLOTS } from '../../src/shared/layout';
import { createRing, RingReader, RingWriter } from '../../src/shared/ring';
import type { TelemetryFrame } from '../../src/shared/telemetry-frame';
import { TelemetryAggregate } from '../../src/telemetry';

/** A worker's telemetry ring with `drops` frames already dropped (a 64-byte ring holds one). */
function ringWithDrops(drops: number): { reader: RingReader; writer: RingWriter; sab: SharedArrayBuffer } {
  const sab = createRing(64);
  const writer = new RingWriter(sab);
  const reader = new RingReader(sab);
  writer.write('x'.repeat(40));
  for (let i = 0; i < drops; i++) expect(writer.write('x'.repeat(40))).toBe(false);
  return { reader, writer, sab };
}

function droppedMetric(agg: TelemetryAggregate): number {
  return Number(/^ugate_telemetry_dropped_frames_total (\d+)$/m.exec(prometheusText(agg, []))![1]);
}

function frame(worker: number, gen: number, route = 0): TelemetryFrame {
  return { t: 'telemetry', worker, requests: [route, 200, 1], durations: [], hdr: null, inFlight: 0, heap: [1, 2, 3], gen };
}

describe('telemetry aggregate: dropped frames', () => {
  it('never falls when a worker and its ring are replaced', () => {
    const agg = new TelemetryAggregate(['a'], 2);
    const first = ringWithDrops(5);
    const other = ringWithDrops(1);
    agg.countDropped(first.reader);
    agg.countDropped(other.reader);
    expect(droppedMetric(agg)).toBe(6);

    // Worker 0 exits: its ring is drained one last time, then a fresh ring replaces it.
    expect(first.writer.write('x'.repeat(40))).toBe(false);
    agg.countDropped(first.reader);
    expect(droppedMetric(agg)).toBe(7);
    const replacement = ringWithDrops(2);
    agg.countDropped(replacement.reader);
    agg.countDropped(other.reader);
    expect(droppedMetric(agg)).toBe(9);

    // Reading a ring again adds only what it dropped since.
    agg.countDropped(replacement.reader);
    expect(droppedMetric(agg)).toBe(9);
    expect(replacement.writer.write('x'.repeat(40))).toBe(false);
    agg.countDropped(replacement.reader);
    expect(droppedMetric(agg)).toBe(10);
  });

  it('counts on across the wrap of a ring\'s uint32 drop counter', () => {
    const agg = new TelemetryAggregate(['a'], 1);
    const { reader, writer, sab } = ringWithDrops(0);
    new Int32Array(sab, 0, RING_HEADER_SLOTS)[RING_DROPPED_FRAMES] = -2; // 2^32 - 2
    agg.countDropped(reader);
    expect(agg.telemetryDropped).toBe(2 ** 32 - 2);
    for (let i = 0; i < 3; i++) writer.write('x'.repeat(40)); // the counter wraps to 1
    agg.countDropped(reader);
    expect(agg.telemetryDropped).toBe(2 ** 32 + 1);
  });
});

describe('telemetry aggregate: route names per generation', () => {
  it('keeps an old generation until every worker has moved past it, then forgets it', () => {
    const agg = new TelemetryAggregate(['a'], 2);
    agg.add(frame(0, 0));
    agg.add(frame(1, 0));
    agg.setRoutes(1, ['b']);
    agg.add(frame(0, 1));
    expect(agg.generations).toEqual([0, 1]);
    // Worker 1 still finishes requests on the old config: they count for the old route name.
    agg.add(frame(1, 0));
    expect(agg.requests.get('a\u0000200')).toBe(3);
    agg.add(frame(1, 1));
    expect(agg.generations).toEqual([1]);
    expect(agg.requests.get('b\u0000200')).toBe(2);
  });

  it('a worker that has not sent a frame yet holds every generation', () => {
    const agg = new TelemetryAggregate(['a'], 2);
    agg.setRoutes(1, ['b']);
    agg.setRoutes(2, ['c']);
    agg.add(frame(0, 2));
    expect(agg.generations).toEqual([0, 1, 2]);
    agg.add(frame(1, 1));
    expect(agg.generations).toEqual([1, 2]);
  });

  it('stays at one generation over many reloads', () => {
    const agg = new TelemetryAggregate(['r0'], 2);
    for (let gen = 1; gen <= 200; gen++) {
      agg.setRoutes(gen, [`r${gen}`]);
      agg.add(frame(0, gen));
      agg.add(frame(1, gen));
    }
    expect(agg.generations).toEqual([200]);
    expect(agg.requests.get('r200\u0000200')).toBe(2);
  });
});
