// Stage "limits": the route's own limits. A declared body over max-body-size is refused
// before any of it is read (413); chunked bodies are counted while they stream (upstream.ts).
import { E } from '../../src/shared/errors';
import type { Exchange } from '../exchange';

export function limits(x: Exchange): number {
  const max = x.route!.config.maxBodySize;
  if (max > 0 && x.contentLength > max) return E.BODY_TOO_LARGE;
  return 0;
}
