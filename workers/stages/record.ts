// Stage "record": count the finished exchange once, whatever way it ended.
import type { Exchange } from '../exchange';
import { releaseBackend } from './upstream';

export function record(x: Exchange): void {
  const w = x.worker;
  if (x.dispatchOptions !== null) w.inFlight--;
  releaseBackend(x);
  w.telemetry.record(x.route === null ? -1 : x.route.index, x.status, (performance.now() - x.startedAt) / 1000);
}
