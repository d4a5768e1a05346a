// uws-floor.mjs: the least a proxy on ugate's stack can do, to measure what the stack itself
// costs. uWebSockets.js in front, node:net to the upstream, one thread, and nothing else: no
// routing, no header checks, no hop-by-hop handling, no timeouts, no retries, no telemetry.
// It forwards the method, target and Host, adds X-Forwarded-For (every proxy in the bench
// does), and answers with the status, Content-Type and body. No proxy built on uWS.js and
// node:net can spend less CPU per request than this, so its ratio to nginx bounds ugate's.
//
// Only what the bench sends works: requests with no body or a Content-Length body, responses
// with Content-Length whose head arrives in one read (the native-bench upstream). Slow
// clients get backpressure (the upstream socket pauses), as in ugate.
//
// usage: node uws-floor.mjs --listen 127.0.0.1:PORT --upstream http://127.0.0.1:UPORT
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'package.json'));
const uWS = require('uWebSockets.js');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const [listenHost, listenPort] = arg('--listen', '127.0.0.1:0').split(':');
const upstream = new URL(arg('--upstream', 'http://127.0.0.1:8080'));
/** Upstream connections at most (ugate's --pool-connections default); requests beyond wait. */
const MAX_CONNECTIONS = 1024;

const idle = [];
const queue = [];
let connections = 0;
// One read buffer for every upstream socket, as ugate's lean client does.
const READ = Buffer.allocUnsafe(256 * 1024);

function connect() {
  connections++;
  const c = { sock: null, res: null, total: 0, left: 0, tail: null, tailAt: 0 };
  c.sock = net.connect({
    host: upstream.hostname,
    port: Number(upstream.port),
    onread: { buffer: READ, callback: (n, buf) => onUpstreamData(c, buf.subarray(0, n)) },
  });
  c.sock.setNoDelay(true);
  c.sock.on('error', () => {});
  c.sock.on('close', () => {
    connections--;
    const i = idle.indexOf(c);
    if (i >= 0) idle.splice(i, 1);
    if (c.res !== null && !c.res.aborted) c.res.close();
  });
  return c;
}

function send(res, head, body) {
  res.head = head;
  res.body = body;
  const c = idle.pop() ?? (connections < MAX_CONNECTIONS ? connect() : null);
  if (c === null) queue.push(res);
  else start(c, res);
}

function start(c, res) {
  c.res = res;
  res.conn = c;
  if (res.body === null) c.sock.write(res.head + '\r\n', 'latin1');
  else {
    const out = Buffer.allocUnsafe(res.head.length + 2 + res.body.length);
    out.write(res.head + '\r\n', 0, 'latin1');
    res.body.copy(out, res.head.length + 2);
    c.sock.write(out);
  }
}

function done(c) {
  c.res = null;
  const next = queue.shift();
  if (next !== undefined) start(c, next);
  else idle.push(c);
}

function onUpstreamData(c, buf) {
  const res = c.res;
  let body = buf;
  if (c.left === 0) {
    const end = buf.indexOf('\r\n\r\n');
    const head = buf.toString('latin1', 0, end + 2);
    const i = head.indexOf('Content-Length: ');
    c.total = Number(head.slice(i + 16, head.indexOf('\r', i)));
    c.left = c.total;
    body = buf.subarray(end + 4);
    if (!res.aborted) {
      res.status = head.slice(9, head.indexOf('\r\n'));
      const t = head.indexOf('Content-Type: ');
      res.type = t < 0 ? 'application/octet-stream' : head.slice(t + 14, head.indexOf('\r', t));
      res.headPending = true;
    }
  }
  if (body.length > c.left) body = body.subarray(0, c.left);
  c.left -= body.length;
  if (!res.aborted) {
    floorConn = c;
    floorChunk = body;
    res.cork(writeCorked);
  }
  if (c.left === 0 && c.tail === null) done(c);
}

let floorConn;
let floorChunk;
function writeCorked() {
  const c = floorConn;
  const res = c.res;
  if (res.headPending) {
    res.headPending = false;
    res.writeStatus(res.status).writeHeader('content-type', res.type);
  }
  const before = c.total - c.left - floorChunk.length;
  const [ok, finished] = res.tryEnd(floorChunk, c.total);
  if (ok || finished) return;
  // The client's socket is full: keep the rest, stop reading the upstream until it drains.
  const taken = res.getWriteOffset() - before;
  c.tail = Buffer.from(floorChunk.subarray(taken));
  c.tailAt = before + taken;
  c.sock.pause();
  res.onWritable((offset) => {
    const [ok2, finished2] = res.tryEnd(c.tail.subarray(offset - c.tailAt), c.total);
    if (!ok2 && !finished2) return false;
    c.tail = null;
    c.sock.resume();
    if (c.left === 0) done(c);
    return true;
  });
}

uWS
  .App()
  .any('/*', (res, req) => {
    res.onAborted(() => {
      res.aborted = true;
      // Paused for this client's backpressure: nothing will resume the connection.
      if (res.conn !== undefined && res.conn.tail !== null) res.conn.sock.destroy();
    });
    const query = req.getQuery();
    let head = `${req.getCaseSensitiveMethod()} ${req.getUrl()}${query ? '?' + query : ''} HTTP/1.1\r\nhost: ${req.getHeader('host')}\r\n`;
    head += `x-forwarded-for: ${Buffer.from(res.getRemoteAddressAsText()).toString('latin1')}\r\n`;
    const length = req.getHeader('content-length');
    if (length === '' || length === '0') {
      send(res, head, null);
      return;
    }
    head += `content-length: ${length}\r\n`;
    const parts = [];
    res.onData((chunk, isLast) => {
      parts.push(Buffer.from(new Uint8Array(chunk)));
      if (isLast) send(res, head, parts.length === 1 ? parts[0] : Buffer.concat(parts));
    });
  })
  .listen(listenHost, Number(listenPort), (token) => {
    if (!token) {
      console.error(`cannot listen on ${listenHost}:${listenPort}`);
      process.exit(1);
    }
    console.log(`listening ${uWS.us_socket_local_port(token)}`);
  });
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
