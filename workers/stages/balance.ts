// Stage "balance": choose the backend for this request. Round robin per worker for now;
// the balancing issue replaces this with strategies behind one interface.
import { E } from '../../src/shared/errors';
import type { Exchange } from '../exchange';

export function balance(x: Exchange): number {
  const r = x.route!;
  const n = r.backends.length;
  if (n === 0) return E.NO_BACKEND;
  x.backend = r.backends[r.next];
  r.next = r.next + 1 === n ? 0 : r.next + 1;
  return 0;
}
