// Applying a config reload inside a worker (SIGHUP in main → ReloadFrame on the control ring).
// New requests use the new routes at once. Exchanges in flight keep their old route and backend
// objects and finish on the old pools; a pool whose backend is gone (or whose settings changed)
// is closed gracefully: undici's close() waits for its queued and running requests.
import type { ReloadFrame } from '../src/shared/reload-frame';
import { configState, poolKey, type UpstreamPool, type WorkerState } from './worker-state';

/** `flush` sends the telemetry gathered under the old routes before they are replaced. */
export function applyReload(state: WorkerState, frame: ReloadFrame, flush: () => void): Promise<void> {
  flush();
  // A route may list the same origin more than once, each entry with its own pool: every old
  // pool goes in, so each is either taken over once or closed once.
  const reuse = new Map<string, UpstreamPool[]>();
  for (const r of state.routes) {
    for (const b of r.backends) {
      const key = poolKey(r.config, b.config);
      reuse.set(key, [...(reuse.get(key) ?? []), b.pool]);
    }
  }
  Object.assign(state, configState(frame.config, state.backendTable, state.index, frame.rows, frame.gen, reuse));
  // What was not taken over: backends removed or re-configured. Their in-flight requests finish.
  return Promise.all([...reuse.values()].flat().map((p) => p.close().catch(() => {}))).then(() => {});
}
