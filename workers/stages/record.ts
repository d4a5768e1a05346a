// Stage "record": count the finished exchange once, whatever way it ended.
import type { Exchange } from '../exchange';

export function record(x: Exchange): void {
  const w = x.worker;
  if (x.dispatchOptions !== null) w.inFlight--;
  w.telemetry.record(x.route === null ? -1 : x.route.index, x.status, (performance.now() - x.startedAt) / 1000);
}
