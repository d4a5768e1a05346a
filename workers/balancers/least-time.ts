// least-time: power of two choices over the EWMA of response-header time (shared table).
// Two random candidates, the lower score wins; score = EWMA × (in flight + 1), so a fast
// backend that is already loaded is not piled onto. A backend with no sample yet scores 0 and
// is tried first. Two random choices instead of the global minimum avoid every worker herding
// onto the same backend between EWMA updates.
import { BK_EWMA_US, BK_IN_FLIGHT } from '../../src/shared/layout';
import type { Exchange } from '../exchange';
import type { RuntimeBackend } from '../worker-state';
import type { Balancer } from './balancer';

export class LeastTimeBalancer implements Balancer {
  pick(_x: Exchange, candidates: readonly RuntimeBackend[]): RuntimeBackend | null {
    const n = candidates.length;
    if (n === 0) return null;
    if (n === 1) return candidates[0];
    const i = (Math.random() * n) | 0;
    let j = (Math.random() * (n - 1)) | 0;
    if (j >= i) j++;
    const a = candidates[i];
    const b = candidates[j];
    return score(a) <= score(b) ? a : b;
  }
}

function score(b: RuntimeBackend): number {
  return (Atomics.load(b.state, b.row + BK_EWMA_US) * (Atomics.load(b.state, b.row + BK_IN_FLIGHT) + 1)) / b.config.weight;
}
