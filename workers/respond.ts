// The gateway's own answers: a status, a one-line reason, and the stable error code.
import { errorSpec } from '../src/shared/errors';
import { Exchange, Phase } from './exchange';
import { record } from './stages/record';

export function respondError(x: Exchange, id: number): void {
  // Requests coalesced behind this one get the same answer.
  if (x.cacheFill !== null) x.cacheFill.onLeaderError(id);
  if (x.clientGone || x.phase === Phase.Done) return;
  const spec = errorSpec(id);
  x.errorId = id;
  x.status = spec.status;
  x.phase = Phase.Done;
  // An unread or half-read request body would be parsed as the next request: close instead.
  const close = spec.source === 'client' || (x.body !== null && !x.body.readableEnded) || x.worker.draining;
  const res = x.res;
  res.cork(() => {
    res.writeStatus(`${spec.status} ${spec.reason}`);
    res.writeHeader('content-type', 'text/plain; charset=utf-8');
    res.writeHeader('x-ugate-error', spec.code);
    if (spec.status === 503) res.writeHeader('retry-after', '1');
    res.end(`${spec.status} ${spec.reason}\n`, close);
  });
  record(x);
}
