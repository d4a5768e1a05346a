// The backends a request may go to: usable (health, drain, ejection, circuit: shared table)
// and not already tried by this request. Backups only when no primary is usable.
// Fills the route's reused array: no allocation per request.
import type { BalancingConfig } from '../../src/config/config';
import { isUsable } from '../../src/shared/backend-table';
import type { RuntimeBackend } from '../worker-state';

export function collectCandidates(
  backends: readonly RuntimeBackend[],
  out: RuntimeBackend[],
  lb: BalancingConfig,
  epoch: number,
  tried: readonly RuntimeBackend[] | null,
): RuntimeBackend[] {
  out.length = 0;
  let backups = false;
  for (let i = 0; i < backends.length; i++) {
    const b = backends[i];
    if (b.config.backup) {
      backups = true;
      continue;
    }
    if (isUsable(b.state, b.row, epoch, lb) && (tried === null || !tried.includes(b))) out.push(b);
  }
  if (out.length > 0 || !backups) return out;
  for (let i = 0; i < backends.length; i++) {
    const b = backends[i];
    if (b.config.backup && isUsable(b.state, b.row, epoch, lb) && (tried === null || !tried.includes(b))) out.push(b);
  }
  return out;
}
