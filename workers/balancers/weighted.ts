// weighted: smooth weighted round robin (nginx's algorithm). Every pick adds each candidate's
// weight to its running score, takes the highest, and subtracts the total from the winner.
// Weights 3:1 give A A B A: exactly 3:1 in every window of 4, and heavy backends are spread
// out instead of served in bursts. Scores of backends that are out keep their value.
import type { Exchange } from '../exchange';
import type { RuntimeBackend } from '../worker-state';
import type { Balancer } from './balancer';

export class WeightedBalancer implements Balancer {
  private readonly score: Float64Array;

  constructor(backends: readonly RuntimeBackend[]) {
    this.score = new Float64Array(backends.length);
  }

  pick(_x: Exchange, candidates: readonly RuntimeBackend[]): RuntimeBackend | null {
    const score = this.score;
    let total = 0;
    let best: RuntimeBackend | null = null;
    let bestScore = -Infinity;
    for (let i = 0; i < candidates.length; i++) {
      const b = candidates[i];
      const w = b.config.weight;
      const s = (score[b.index] += w);
      total += w;
      if (s > bestScore) {
        bestScore = s;
        best = b;
      }
    }
    if (best !== null) score[best.index] -= total;
    return best;
  }
}
