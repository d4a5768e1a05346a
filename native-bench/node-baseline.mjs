// node-baseline.mjs: the "what plain Node does" reverse proxy, one process,
// node:http on both sides with a keep-alive Agent to the upstream. It is the
// floor ugate has to beat; no dependencies so it needs no npm install.
//
// usage: node node-baseline.mjs --listen 127.0.0.1:PORT --upstream http://127.0.0.1:UPORT
// Prints "listening PORT" once the server accepts connections.
import http from 'node:http';

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const [listenHost, listenPort] = arg('--listen', '127.0.0.1:0').split(':');
const upstream = new URL(arg('--upstream', 'http://127.0.0.1:8080'));

// Keep upstream connections open like nginx's `keepalive` and HAProxy's
// `http-reuse always`; maxFreeSockets high enough that c10k bursts do not
// churn connections.
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });

// Hop-by-hop headers are per connection and must not be forwarded.
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);
function forwardable(headers) {
  const out = {};
  for (const k in headers) if (!HOP.has(k)) out[k] = headers[k];
  return out;
}

const server = http.createServer((req, res) => {
  const headers = forwardable(req.headers);
  headers.host = upstream.host;
  // Like every target here, tell the backend who the client is.
  const xff = req.headers['x-forwarded-for'];
  headers['x-forwarded-for'] = xff ? `${xff}, ${req.socket.remoteAddress}` : req.socket.remoteAddress;
  const up = http.request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent },
    (ur) => {
      res.writeHead(ur.statusCode, forwardable(ur.headers));
      ur.pipe(res);
    },
  );
  up.on('error', () => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end('bad gateway\n');
  });
  req.pipe(up);
});
server.keepAliveTimeout = 60_000;
server.headersTimeout = 65_000;
server.listen(Number(listenPort), listenHost, () => {
  console.log(`listening ${server.address().port}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
