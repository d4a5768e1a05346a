// The data path, in order. Each synchronous stage either passes (returns 0) or returns the id
// of the error the gateway answers with; the last stage hands the request to the backend.
//
//   accept → validate → route → limits → cache-lookup → balance → upstream → stream-back → record
//
// Later stages slot in here: rate-limit after limits.
//
// A stage may also return TAKEN: it answered the exchange itself, or it parked it and will
// resume the rest of the pipeline with continueFrom (cache-lookup: coalesced waiters).
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { respondError } from './respond';
import { accept } from './stages/accept';
import { balance } from './stages/balance';
import { cacheLookup } from './stages/cache-lookup';
import { limits } from './stages/limits';
import { route, routedBeforeReload } from './stages/route';
import { upstream } from './stages/upstream';
import { validate } from './stages/validate';
import type { Exchange } from './exchange';
import { TAKEN } from './stage';
import type { WorkerState } from './worker-state';

type Stage = (x: Exchange) => number;

export const STAGES: readonly Stage[] = [validate, route, limits, cacheLookup, balance];

/** Where an exchange parked by cache-lookup picks up again: the lookup itself (to look again,
 * or lead a new fill), or the stage after it (to go upstream on its own). */
export const CACHE_LOOKUP = STAGES.indexOf(cacheLookup);
export const CACHE_RESUME = CACHE_LOOKUP + 1;
const ROUTE = STAGES.indexOf(route);

export function handleRequest(res: HttpResponse, req: HttpRequest, worker: WorkerState): void {
  continueFrom(accept(res, req, worker), 0);
}

/** Run the stages from `from` on, then go upstream. Also how a parked exchange resumes
 * (outside a uWS callback: whatever writes to `res` from here corks, see respond.ts). */
export function continueFrom(x: Exchange, from: number): void {
  // Parked across a reload: its route (and the pools it names, which a reload may close) is
  // the old config's. Nothing went upstream for it yet, so it is matched again under the new
  // one; the stages it already passed are not run again (a fill it leads stays its own).
  if (from > ROUTE && routedBeforeReload(x)) {
    const err = route(x);
    if (err !== 0) {
      respondError(x, err);
      return;
    }
  }
  for (let i = from; i < STAGES.length; i++) {
    const err = STAGES[i](x);
    if (err !== 0) {
      if (err !== TAKEN) respondError(x, err);
      return;
    }
  }
  upstream(x);
}
