// Ending a response that has no body (HEAD, 204, 304), in one place for every writer.
import type { HttpResponse } from 'uWebSockets.js';

/** End `res` with no body, reporting `length` as its Content-Length when it is >= 0.
 * The length goes out as a header: this uWS build's endWithoutBody(length) leaves the
 * response open, which stalls the next request on a keep-alive connection. */
export function endBodiless(res: HttpResponse, length: number): void {
  if (length >= 0) res.writeHeader('content-length', String(length));
  res.endWithoutBody();
}
