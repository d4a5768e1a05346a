// round-robin: each usable backend in turn (cursor per route, per worker).
import type { Exchange } from '../exchange';
import type { RuntimeBackend } from '../worker-state';
import type { Balancer } from './balancer';

export class RoundRobinBalancer implements Balancer {
  private next = 0;

  pick(_x: Exchange, candidates: readonly RuntimeBackend[]): RuntimeBackend | null {
    const n = candidates.length;
    if (n === 0) return null;
    if (this.next >= n) this.next = 0;
    return candidates[this.next++];
  }
}
