// Stage "balance": choose the backend for this request with the route's balancer
// (workers/balancers/), among the backends that may take a request now. 503 when none may.
import { E } from '../../src/shared/errors';
import { collectCandidates } from '../balancers/candidates';
import type { Exchange } from '../exchange';
import type { RuntimeBackend } from '../worker-state';

export function balance(x: Exchange): number {
  const b = pickBackend(x);
  if (b === null) return E.NO_BACKEND;
  x.backend = b;
  return 0;
}

/** Also used for retries: x.tried excludes the backends this request already failed on. */
export function pickBackend(x: Exchange): RuntimeBackend | null {
  const r = x.route!;
  const candidates = collectCandidates(r.backends, r.candidates, r.config.lb, x.worker.backendTable.epoch, x.tried);
  if (candidates.length === 0) return null;
  return r.balancer.pick(x, candidates);
}
