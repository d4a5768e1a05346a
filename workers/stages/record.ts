// Stage "record": count the finished exchange once, whatever way it ended.
import type { Exchange } from '../exchange';
import { routedBeforeReload } from './route';
import { releaseBackend } from './upstream';

export function record(x: Exchange): void {
  const w = x.worker;
  if (x.dispatchOptions !== null) w.inFlight--;
  releaseBackend(x);
  const route = x.route;
  let index = route === null ? -1 : route.index;
  // Routed before a reload: the telemetry is the new generation's, whose routes may be in
  // another order. Counted under the route of the same name; one the reload removed counts
  // with the requests that matched no route.
  if (routedBeforeReload(x)) index = w.routes.findIndex((r) => r.config.name === route!.config.name);
  w.telemetry.record(index, x.status, (performance.now() - x.startedAt) / 1000);
}
