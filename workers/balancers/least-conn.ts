// least-conn: the candidate with the fewest requests in flight across ALL workers (the shared
// table's in-flight slot, Atomics), relative to its weight. Ties rotate, so an idle pool is
// spread instead of always hitting the first backend.
import { BK_IN_FLIGHT } from '../../src/shared/layout';
import type { Exchange } from '../exchange';
import type { RuntimeBackend } from '../worker-state';
import type { Balancer } from './balancer';

export class LeastConnBalancer implements Balancer {
  private start = 0;

  pick(_x: Exchange, candidates: readonly RuntimeBackend[]): RuntimeBackend | null {
    const n = candidates.length;
    if (n === 0) return null;
    if (++this.start >= n) this.start = 0;
    let best: RuntimeBackend | null = null;
    let bestLoad = 0;
    let bestWeight = 1;
    for (let k = 0; k < n; k++) {
      const b = candidates[(this.start + k) % n];
      const load = Atomics.load(b.state, b.row + BK_IN_FLIGHT);
      const w = b.config.weight;
      // load/w < bestLoad/bestWeight, without division.
      if (best === null || load * bestWeight < bestLoad * w) {
        best = b;
        bestLoad = load;
        bestWeight = w;
      }
    }
    return best;
  }
}
