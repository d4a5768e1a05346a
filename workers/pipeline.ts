// The data path, in order. Each synchronous stage either passes (returns 0) or returns the id
// of the error the gateway answers with; the last stage hands the request to the backend.
//
//   accept → validate → route → limits → balance → upstream → stream-back → record
//
// Later stages slot in here: rate-limit after limits, cache-lookup and coalesce before balance.
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { respondError } from './respond';
import { accept } from './stages/accept';
import { balance } from './stages/balance';
import { limits } from './stages/limits';
import { route } from './stages/route';
import { upstream } from './stages/upstream';
import { validate } from './stages/validate';
import type { Exchange } from './exchange';
import type { WorkerState } from './worker-state';

type Stage = (x: Exchange) => number;

export const STAGES: readonly Stage[] = [validate, route, limits, balance];

export function handleRequest(res: HttpResponse, req: HttpRequest, worker: WorkerState): void {
  const x = accept(res, req, worker);
  for (let i = 0; i < STAGES.length; i++) {
    const err = STAGES[i](x);
    if (err !== 0) {
      respondError(x, err);
      return;
    }
  }
  upstream(x);
}
