// Main → worker over the control ring, on SIGHUP: the new config and the backend-table row of
// each of its backends (src/backend-rows.ts). Workers keep listening; only routes, pools and
// per-request settings change.
import type { GatewayConfig } from '../config/config';
import type { BackendRows } from './backend-table';

export interface ReloadFrame {
  readonly t: 'reload';
  /** Config generation, tags later telemetry frames (route indexes change with routes). */
  readonly gen: number;
  readonly config: GatewayConfig;
  readonly rows: BackendRows;
}
