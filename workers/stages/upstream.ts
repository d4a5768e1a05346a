// Stage "upstream": build the backend request (hop-by-hop fields out, X-Forwarded-* and Via in)
// and dispatch it on the backend's undici pool. The Exchange itself is the undici handler,
// so no per-request handler object or closure is created.
import type { Dispatcher } from 'undici';
import { E } from '../../src/shared/errors';
import type { Exchange } from '../exchange';
import { Phase } from '../exchange';
import { RequestBody } from '../request-body';
import { respondError } from '../respond';
import { UpstreamHandler } from './stream-back';

const VIA = '1.1 ugate';

export function upstream(x: Exchange): void {
  if (x.connection !== null) dropConnectionNamed(x);
  const headers = x.headers;
  const trusted = x.worker.trustedProxies.has(x.peer);
  headers.push('x-forwarded-for', trusted && x.forwardedFor !== null ? x.forwardedFor + ', ' + x.peer : x.peer);
  headers.push('x-forwarded-proto', trusted && x.forwardedProto !== null ? x.forwardedProto : 'http');
  headers.push('x-forwarded-host', trusted && x.forwardedHost !== null ? x.forwardedHost : x.host);
  headers.push('via', x.via === null ? VIA : x.via + ', ' + VIA);

  const hasBody = x.contentLength > 0 || x.transferEncoding !== null;
  if (x.contentLength >= 0) headers.push('content-length', String(x.contentLength));
  if (hasBody) {
    x.body = new RequestBody(x);
    x.res.onData((chunk, isLast) => onClientData(x, chunk, isLast));
  }
  const opts: Dispatcher.DispatchOptions = {
    path: x.target,
    method: x.method as Dispatcher.HttpMethod,
    headers,
    body: x.body,
  };
  x.dispatchOptions = opts;
  x.phase = Phase.Waiting;
  x.worker.inFlight++;
  x.backend!.pool.dispatch(opts, new UpstreamHandler(x));
}

function onClientData(x: Exchange, chunk: ArrayBuffer, isLast: boolean): void {
  x.bytesIn += chunk.byteLength;
  const max = x.route!.config.maxBodySize;
  if (max > 0 && x.bytesIn > max) {
    // Chunked bodies have no declared length: the limit is enforced while streaming.
    // Answer first: aborting may call the handler's onError at once, which would answer 502.
    respondError(x, E.BODY_TOO_LARGE);
    if (x.abortUpstream !== null) x.abortUpstream();
    x.body!.destroy();
    return;
  }
  x.body!.pushChunk(chunk, isLast);
}

// Fields named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
function dropConnectionNamed(x: Exchange): void {
  const names = x.connection!.toLowerCase().split(',');
  let drop: string[] | null = null;
  for (const raw of names) {
    const n = raw.trim();
    if (n !== '' && n !== 'close' && n !== 'keep-alive') (drop ??= []).push(n);
  }
  if (drop === null) return;
  const kept: string[] = [];
  const h = x.headers;
  for (let i = 0; i < h.length; i += 2) if (!drop.includes(h[i])) kept.push(h[i], h[i + 1]);
  x.headers = kept;
}
