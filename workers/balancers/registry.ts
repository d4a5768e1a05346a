// Every balancing algorithm by its --balance name. A route gets its own instance (per worker).
import type { BalanceAlgorithm, BalancingConfig } from '../../src/config/config';
import type { RuntimeBackend } from '../worker-state';
import type { Balancer } from './balancer';
import { HashBalancer } from './hash';
import { LeastConnBalancer } from './least-conn';
import { LeastTimeBalancer } from './least-time';
import { RoundRobinBalancer } from './round-robin';
import { StickyBalancer } from './sticky';
import { WeightedBalancer } from './weighted';

const BALANCERS: Readonly<Record<BalanceAlgorithm, (lb: BalancingConfig, backends: readonly RuntimeBackend[]) => Balancer>> = {
  'round-robin': () => new RoundRobinBalancer(),
  weighted: (_lb, backends) => new WeightedBalancer(backends),
  'least-conn': () => new LeastConnBalancer(),
  'least-time': () => new LeastTimeBalancer(),
  hash: (lb, backends) => new HashBalancer(backends, lb),
  sticky: () => new StickyBalancer(),
};

export function createBalancer(lb: BalancingConfig, backends: readonly RuntimeBackend[]): Balancer {
  return BALANCERS[lb.balance](lb, backends);
}
