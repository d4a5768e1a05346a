// A small origin server built in for `make run`, so ugate can be tried with nothing else
// installed. Not for production; it runs on the main thread with node:http.
import { createServer, type Server } from 'node:http';
import type { HostPort } from './config/config';

export function startDemoOrigin(address: HostPort): Promise<Server> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://demo');
    const bytes = /^\/bytes\/(\d+)$/.exec(url.pathname);
    const delay = /^\/delay\/(\d+)$/.exec(url.pathname);
    if (url.pathname === '/echo') {
      res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/octet-stream' });
      req.pipe(res);
    } else if (bytes) {
      const n = Math.min(Number(bytes[1]), 1024 ** 3);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
      const chunk = Buffer.alloc(Math.min(n, 65536), 'u');
      let left = n;
      const pump = () => {
        while (left > 0) {
          const part = left >= chunk.length ? chunk : chunk.subarray(0, left);
          left -= part.length;
          if (!res.write(part)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    } else if (delay) {
      setTimeout(() => res.end(`waited ${delay[1]} ms\n`), Math.min(Number(delay[1]), 60_000));
    } else if (url.pathname === '/') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ hello: 'from the ugate demo origin', method: req.method, url: req.url, headers: req.headers }, null, 2) + '\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('demo origin: try /, /bytes/N, /delay/MS, POST /echo\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`demo-origin: cannot listen on ${address.host}:${address.port}: ${err.message}`)));
    server.listen(address.port, address.host, () => resolve(server));
  });
}
