// The gateway's own answers: a status, a one-line reason, and the stable error code.
import { E, errorSpec } from '../src/shared/errors';
import { endBodiless } from './end-bodiless';
import { Exchange, Phase } from './exchange';
import { record } from './stages/record';

export function respondError(x: Exchange, id: number): void {
  // Requests coalesced behind this one get the same answer.
  if (x.cacheFill !== null) x.cacheFill.onLeaderError(id);
  if (x.clientGone || x.phase === Phase.Done) return;
  const spec = errorSpec(id);
  x.status = spec.status;
  x.phase = Phase.Done;
  const close = mustClose(x, id) || x.worker.draining;
  const res = x.res;
  res.cork(() => {
    res.writeStatus(`${spec.status} ${spec.reason}`);
    res.writeHeader('content-type', 'text/plain; charset=utf-8');
    res.writeHeader('x-ugate-error', spec.code);
    if (spec.status === 503) res.writeHeader('retry-after', '1');
    const body = `${spec.status} ${spec.reason}\n`;
    // A HEAD answer carries no body (RFC 9110 §9.3.2). The body used to be sent anyway, and on
    // a kept-alive connection the client read it as the start of the next response. Kept
    // alive: the GET length as a header (end-bodiless.ts says why). Closing: an empty end(),
    // so "Content-Length: 0"; this build's endWithoutBody(length, true) does not close until
    // the client writes again, and endWithoutBody(undefined, true) writes a garbage length.
    if (x.method !== 'HEAD') res.end(body, close);
    else if (close) res.end('', true);
    else endBodiless(res, body.length);
  });
  record(x);
}

// Errors that leave the connection's framing in doubt, or a request body unread: the rest of
// the body would be parsed as the next request, so the connection is closed instead.
const FRAMING_ERRORS = new Set<number>([E.BAD_CONTENT_LENGTH, E.HEADERS_TOO_LARGE, E.UNSUPPORTED_TRANSFER_CODING, E.UNSUPPORTED_METHOD, E.BAD_TARGET, E.DUPLICATE_HOST, E.BAD_HOST, E.MISSING_HOST, E.BAD_REQUEST, E.BAD_HEADER]);

function mustClose(x: Exchange, id: number): boolean {
  if (FRAMING_ERRORS.has(id)) return true;
  return (x.contentLength > 0 || x.transferEncoding !== null) && !x.bodyComplete;
}
