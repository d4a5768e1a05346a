// An origin whose caching headers are chosen by the query string, counting hits per path.
//   ?cc=<Cache-Control>  &etag=<tag>  &lm=<seconds ago>  &vary=<names>  &cookie=1
//   &status=<code>  &size=<body bytes>  &delay=<ms>  &expires=<seconds from now | "bad">  &cl304=1
//   &then=<Cache-Control from the path's second request on, 304s included> (the resource changed)
//   &thensize=<body bytes from the path's second request on>  &chunked=1 (no Content-Length: 64 KiB chunks)
// `down` holds paths answered 500 (or, with "reset", cut before any response).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startOrigin, type Origin } from './origin';

export interface CacheOrigin extends Origin {
  /** Requests that reached the origin for this path (query ignored). */
  hits(path: string): number;
  down: Map<string, 'error' | 'reset'>;
}

export async function startCacheOrigin(): Promise<CacheOrigin> {
  const counts = new Map<string, number>();
  const down = new Map<string, 'error' | 'reset'>();
  const origin = await startOrigin((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url!, 'http://x');
    const path = url.pathname;
    const n = (counts.get(path) ?? 0) + 1;
    counts.set(path, n);
    const q = url.searchParams;
    const answer = () => {
      const mode = down.get(path);
      if (mode === 'reset') {
        req.socket.destroy();
        return;
      }
      if (mode === 'error') {
        res.writeHead(500, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
        res.end('origin error');
        return;
      }
      const headers: Record<string, string> = { 'content-type': 'text/plain', 'x-origin-count': String(n) };
      if (q.has('cc')) headers['cache-control'] = q.get('cc')!;
      if (q.has('then') && n > 1) headers['cache-control'] = q.get('then')!;
      if (q.has('etag')) headers.etag = q.get('etag')!;
      if (q.has('lm')) headers['last-modified'] = new Date(Date.now() - Number(q.get('lm')) * 1000).toUTCString();
      if (q.has('vary')) headers.vary = q.get('vary')!;
      if (q.has('expires')) headers.expires = q.get('expires') === 'bad' ? '0' : new Date(Date.now() + Number(q.get('expires')) * 1000).toUTCString();
      if (q.get('cookie') === '1') headers['set-cookie'] = 'session=abc';
      const inm = req.headers['if-none-match'];
      if (q.has('etag') && inm !== undefined && inm === q.get('etag')) {
        // cl304: a 304 carrying the Content-Length of the full body (undici 7 rejects that).
        if (q.get('cl304') === '1') headers['content-length'] = '11';
        res.writeHead(304, headers);
        res.end();
        return;
      }
      const size = q.has('thensize') && n > 1 ? Number(q.get('thensize')) : q.has('size') ? Number(q.get('size')) : 0;
      const varied = q.has('vary') ? ` ${req.headers[q.get('vary')!.toLowerCase()] ?? '-'}` : '';
      const body = size > 0 ? Buffer.alloc(size, 97) : Buffer.from(`body ${n}${varied}`);
      if (q.get('chunked') === '1' && req.method !== 'HEAD') {
        res.writeHead(q.has('status') ? Number(q.get('status')) : 200, headers);
        for (let i = 0; i < body.length; i += 65536) res.write(body.subarray(i, i + 65536));
        res.end();
        return;
      }
      headers['content-length'] = String(body.length);
      res.writeHead(q.has('status') ? Number(q.get('status')) : 200, headers);
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    const delay = Number(q.get('delay') ?? 0);
    if (delay > 0) setTimeout(answer, delay);
    else answer();
  });
  return Object.assign(origin, { hits: (path: string) => counts.get(path) ?? 0, down });
}
