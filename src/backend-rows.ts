// Which backend-table row each backend uses, kept stable across config reloads: a backend that
// stays (same route name, same URL) keeps its row, so its health, ejection, circuit and
// in-flight count carry over, and requests still in flight on the old config release the row
// they took. New backends get a free row; rows of removed backends are reused only once
// nothing is in flight on them.
import type { GatewayConfig } from './config/config';
import { BackendTable, backendCount, resetRow, type BackendRows } from './shared/backend-table';
import { BK_IN_FLIGHT } from './shared/layout';

/** Rows allocated up front: reloads can add backends up to this without a new buffer. */
export function tableCapacity(config: GatewayConfig): number {
  return Math.max(64, 4 * backendCount(config));
}

export class BackendRowAllocator {
  private byKey = new Map<string, number>();

  constructor(private readonly table: BackendTable) {}

  /** Rows for `config`, or an error message when the table is full. Commits only on success. */
  assign(config: GatewayConfig): BackendRows | string {
    // Rows of backends that stay are reserved first; every other row is free again.
    const next = new Map<string, number>();
    for (const r of config.routes) for (const b of r.backends) {
      const key = keyOf(r.name, b.url);
      const row = this.byKey.get(key);
      if (row !== undefined) next.set(key, row);
    }
    const used = new Set(next.values());
    let free = 0;
    const takeFree = (): number => {
      for (; free < this.table.count; free++) {
        if (used.has(free) || Atomics.load(this.table.i32, this.table.row(free) + BK_IN_FLIGHT) !== 0) continue;
        used.add(free);
        return free++;
      }
      return -1;
    };
    const fresh: number[] = [];
    const rows = config.routes.map((r) =>
      r.backends.map((b) => {
        const key = keyOf(r.name, b.url);
        let row = next.get(key);
        if (row === undefined) {
          row = takeFree();
          if (row === -1) return -1;
          next.set(key, row);
          fresh.push(row);
        }
        return row;
      }),
    );
    if (rows.some((list) => list.includes(-1))) return `the backend table is full (${this.table.count} rows); restart ugate to grow it`;
    for (const row of fresh) resetRow(this.table.i32, this.table.row(row));
    this.byKey = next;
    return rows;
  }
}

function keyOf(route: string, url: string): string {
  return `${route}\u0000${url}`;
}
