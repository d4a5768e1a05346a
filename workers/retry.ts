// Retries and passive health, from the undici handler's point of view.
//
// A request is re-sent to another backend only when nothing can have gone wrong by sending it
// twice and nothing reached the client yet: an idempotent method (GET, HEAD, PUT, DELETE,
// OPTIONS), no streamed request body (its stream is consumed; a body that arrived whole is a
// Buffer undici can send again), no response head from the backend, an
// error that is retryable (connect refused/timeout, reset before headers), retries left for
// this request, and room in the worker's retry budget.
import { noteFailure, noteSuccess } from '../src/shared/backend-table';
import { BT_RETRIES_TOTAL } from '../src/shared/layout';
import { errorSpec } from '../src/shared/errors';
import type { Exchange } from './exchange';
import { isIdempotent } from './http-fields';
import { pickBackend } from './stages/balance';
import { route, routedBeforeReload } from './stages/route';
import { dispatchAttempt, releaseBackend } from './stages/upstream';

/** Feed passive health: the backend answered with `status` (called once per attempt). */
export function noteAnswer(x: Exchange, status: number): void {
  const b = x.backend!;
  if (status >= 500) noteAttemptFailed(x);
  else noteSuccess(b.state, b.row, (performance.now() - x.dispatchedAt) * 1000);
}

/** Feed passive health: the attempt failed (5xx, or no response head: connect error, reset, timeout). */
export function noteAttemptFailed(x: Exchange): void {
  const b = x.backend!;
  noteFailure(b.state, b.row, x.worker.backendTable.now(), x.route!.config.lb, x.route!.backends.length > 1);
}

/** The attempt failed before any response head (connect error, reset, timeout). Counts the
 * failure, and re-dispatches when allowed. Returns true when a retry was sent. */
export function failAttempt(x: Exchange, errorId: number): boolean {
  const b = x.backend!;
  const lb = x.route!.config.lb;
  const table = x.worker.backendTable;
  noteAttemptFailed(x);
  // A send the cache asked for (a 304 for another representation) used no retry.
  if (!errorSpec(errorId).retryable || x.attempts - x.redispatches > lb.retries || x.body !== null || !isIdempotent(x.method)) return false;
  (x.tried ??= []).push(b);
  if (routedBeforeReload(x) && !rerouteAfterReload(x)) return false;
  const next = pickBackend(x);
  if (next === null) return false;
  if (!x.worker.retryBudget.tryRetry(performance.now(), lb.retryBudgetPercent)) return false;
  releaseBackend(x);
  x.backend = next;
  x.abortUpstream = null;
  Atomics.add(table.i32, BT_RETRIES_TOTAL, 1);
  dispatchAttempt(x);
  return true;
}

/** A reload came while the attempt was in flight: the other backends of the old route may be
 * gone, their pools closed (a retry there was a 502), so the retry picks among the new config's
 * backends for this request. Those it already failed on stay excluded: a backend kept by the
 * reload keeps its backend-table row. False when no route of the new config takes it. */
function rerouteAfterReload(x: Exchange): boolean {
  if (route(x) !== 0) return false;
  const failed = x.tried!;
  x.tried = x.route!.backends.filter((n) => failed.some((old) => old.row === n.row));
  return true;
}
