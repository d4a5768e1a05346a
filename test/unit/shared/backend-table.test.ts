// The shared per-backend state machine: ejection, circuit breaker, probes; and the row
// allocator that keeps rows stable across reloads.
import { describe, expect, it } from 'vitest';
import { BackendRowAllocator } from '../../../src/backend-rows';
import { buildConfig, type BalancingConfig } from '../../../src/config/config';
import { BackendTable, isUsable, noteDispatch, noteFailure, noteRelease, noteSuccess } from '../../../src/shared/backend-table';
import {
  BK_CIRCUIT,
  BK_CIRCUIT_OPENED_AT,
  BK_EJECTED_UNTIL,
  BK_EJECTIONS,
  BK_EWMA_US,
  BK_HEALTHY,
  BK_IN_FLIGHT,
  CIRCUIT_CLOSED,
  CIRCUIT_HALF_OPEN,
  CIRCUIT_OPEN,
} from '../../../src/shared/layout';

function lb(extra: Record<string, unknown> = {}): BalancingConfig {
  return buildConfig({ upstream: ['http://127.0.0.1:1'], ...extra }, null).routes[0].lb;
}

describe('backend table', () => {
  const table = () => new BackendTable(BackendTable.create(4));

  it('starts every row up, closed, idle', () => {
    const t = table();
    for (let i = 0; i < 4; i++) {
      expect(t.i32[t.row(i) + BK_HEALTHY]).toBe(1);
      expect(isUsable(t.i32, t.row(i), t.epoch, lb())).toBe(true);
    }
  });

  it('max-fails within the window ejects once, for eject-time; a new window starts the count again', () => {
    const t = table();
    const row = t.row(1);
    const cfg = lb({ 'max-fails': '3', 'fail-window': '10s', 'eject-time': '30s' });
    noteFailure(t.i32, row, 1000, cfg);
    noteFailure(t.i32, row, 1001, cfg);
    // Window over: the count starts again.
    noteFailure(t.i32, row, 20_000, cfg);
    noteFailure(t.i32, row, 20_001, cfg);
    expect(t.i32[row + BK_EJECTIONS]).toBe(0);
    noteFailure(t.i32, row, 20_002, cfg);
    expect(t.i32[row + BK_EJECTIONS]).toBe(1);
    expect(t.i32[row + BK_EJECTED_UNTIL]).toBe(50_002);
    noteFailure(t.i32, row, 20_003, cfg, false);
    expect(t.i32[row + BK_EJECTIONS]).toBe(1);
  });

  it('circuit: opens after N consecutive failures, success resets the count, half-open lets probes through, closes on success', () => {
    const t = table();
    const row = t.row(0);
    const cfg = lb({ 'circuit-failures': '3', 'circuit-cooldown': '1s', 'circuit-probes': '1', 'max-fails': '0' });
    const now = t.now();
    noteFailure(t.i32, row, now, cfg);
    noteFailure(t.i32, row, now, cfg);
    noteSuccess(t.i32, row, 1000);
    noteFailure(t.i32, row, now, cfg);
    noteFailure(t.i32, row, now, cfg);
    expect(t.i32[row + BK_CIRCUIT]).toBe(CIRCUIT_CLOSED);
    noteFailure(t.i32, row, now, cfg);
    expect(t.i32[row + BK_CIRCUIT]).toBe(CIRCUIT_OPEN);
    expect(isUsable(t.i32, row, t.epoch, cfg)).toBe(false);
    // Cool-down over.
    t.i32[row + BK_CIRCUIT_OPENED_AT] = now - 2000;
    expect(isUsable(t.i32, row, t.epoch, cfg)).toBe(true);
    expect(t.i32[row + BK_CIRCUIT]).toBe(CIRCUIT_HALF_OPEN);
    const probe = noteDispatch(t.i32, row);
    expect(probe).toBe(true);
    expect(isUsable(t.i32, row, t.epoch, cfg)).toBe(false); // one probe at a time
    // The probe fails: open again.
    noteFailure(t.i32, row, t.now(), cfg);
    noteRelease(t.i32, row, probe);
    expect(t.i32[row + BK_CIRCUIT]).toBe(CIRCUIT_OPEN);
    t.i32[row + BK_CIRCUIT_OPENED_AT] = t.now() - 2000;
    expect(isUsable(t.i32, row, t.epoch, cfg)).toBe(true);
    const probe2 = noteDispatch(t.i32, row);
    noteSuccess(t.i32, row, 500);
    noteRelease(t.i32, row, probe2);
    expect(t.i32[row + BK_CIRCUIT]).toBe(CIRCUIT_CLOSED);
    expect(t.i32[row + BK_IN_FLIGHT]).toBe(0);
  });

  it('a crashed worker\'s unreleased in-flight requests are taken back, the others\' kept', () => {
    const t = new BackendTable(BackendTable.create(2, 2));
    const row = t.row(1);
    noteDispatch(t.i32, row, t.ownSlot(0, 1));
    noteDispatch(t.i32, row, t.ownSlot(0, 1));
    noteDispatch(t.i32, row, t.ownSlot(1, 1));
    noteRelease(t.i32, row, false, t.ownSlot(0, 1));
    expect(t.i32[row + BK_IN_FLIGHT]).toBe(2);
    expect(t.reclaimWorker(0)).toBe(1);
    expect(t.i32[row + BK_IN_FLIGHT]).toBe(1);
    expect(t.reclaimWorker(0)).toBe(0);
    expect(() => t.ownSlot(2, 0)).toThrow(RangeError);
  });

  it('EWMA starts at the first sample and moves toward new ones', () => {
    const t = table();
    const row = t.row(2);
    noteSuccess(t.i32, row, 10_000);
    expect(t.i32[row + BK_EWMA_US]).toBe(10_000);
    for (let i = 0; i < 30; i++) noteSuccess(t.i32, row, 1000);
    expect(t.i32[row + BK_EWMA_US]).toBeLessThan(1100);
  });
});

describe('backend row allocator', () => {
  const cfg = (urls: string[]) => buildConfig({ upstream: urls }, null);

  it('keeps rows of backends that stay, reuses free ones, resets new rows, refuses when full', () => {
    const t = new BackendTable(BackendTable.create(3));
    const alloc = new BackendRowAllocator(t);
    expect(alloc.assign(cfg(['http://a:1', 'http://b:1']))).toEqual([[0, 1]]);
    t.i32[t.row(0) + BK_EJECTIONS] = 7;
    t.i32[t.row(1) + BK_EJECTIONS] = 5;
    // a leaves (idle), c arrives: b keeps row 1, c takes row 0, which is reset.
    expect(alloc.assign(cfg(['http://b:1', 'http://c:1']))).toEqual([[1, 0]]);
    expect(t.i32[t.row(0) + BK_EJECTIONS]).toBe(0);
    expect(t.i32[t.row(1) + BK_EJECTIONS]).toBe(5);
    // A row with requests in flight is not reused.
    t.i32[t.row(0) + BK_IN_FLIGHT] = 1;
    expect(alloc.assign(cfg(['http://b:1', 'http://d:1']))).toEqual([[1, 2]]);
    expect(typeof alloc.assign(cfg(['http://e:1', 'http://f:1', 'http://g:1']))).toBe('string');
    // Refused: the previous assignment stands.
    expect(alloc.assign(cfg(['http://b:1', 'http://d:1']))).toEqual([[1, 2]]);
  });
});
