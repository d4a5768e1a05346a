// Real upstream servers on loopback port 0 that record what reached them.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect as connectSocket, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';

export interface SeenRequest {
  method: string;
  url: string;
  /** Raw header pairs as received, names in their original case. */
  rawHeaders: string[];
  headers: IncomingMessage['headers'];
  bodyBytes: number;
  bodySha256: string;
  /** The request body stream ended normally (false: aborted / cut). */
  complete: boolean;
}

export interface Origin {
  readonly server: Server;
  readonly port: number;
  readonly url: string;
  readonly seen: SeenRequest[];
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, seen: SeenRequest) => void;

/** An HTTP origin. By default it reads the whole body (hashing it) and then calls `handler`. */
export async function startOrigin(handler: Handler, opts: { readBodyFirst?: boolean } = {}): Promise<Origin> {
  const seen: SeenRequest[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const s: SeenRequest = { method: req.method!, url: req.url!, rawHeaders: req.rawHeaders, headers: req.headers, bodyBytes: 0, bodySha256: '', complete: false };
    seen.push(s);
    if (opts.readBodyFirst === false) {
      handler(req, res, s);
      return;
    }
    const hash = createHash('sha256');
    req.on('data', (d: Buffer) => {
      s.bodyBytes += d.length;
      hash.update(d);
    });
    req.on('end', () => {
      s.complete = true;
      s.bodySha256 = hash.digest('hex');
      handler(req, res, s);
    });
  });
  server.on('connection', (sock) => {
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
  });
  return { server, seen, ...(await listenLoopback(server, sockets)) };
}

/** Listen on 127.0.0.1 port 0; `close` also destroys the connections still open. */
async function listenLoopback(server: Server | NetServer, sockets: Set<Socket>): Promise<{ port: number; url: string; close(): Promise<void> }> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A raw TCP origin for misbehaviour HTTP servers won't produce (resets, bad framing). */
export async function startRawOrigin(onConnection: (socket: Socket) => void): Promise<{ server: NetServer; port: number; url: string; connections: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const state = { connections: 0 };
  const server = createNetServer((sock) => {
    state.connections++;
    sockets.add(sock);
    sock.on('error', () => {});
    sock.once('close', () => sockets.delete(sock));
    onConnection(sock);
  });
  const listening = await listenLoopback(server, sockets);
  return {
    server,
    ...listening,
    get connections() {
      return state.connections;
    },
  };
}

/** A port on which nothing listens (bound, then released). */
export async function closedPort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A port where connecting hangs, as at a backend whose host stopped answering: a listener
 * whose process is stopped (SIGSTOP, so it never accepts) and whose backlog is already full,
 * so the kernel drops further SYNs. close() kills that process. */
export async function hangingConnectPort(): Promise<{ port: number; url: string; close(): Promise<void> }> {
  const child = spawn(process.execPath, ['-e', "require('net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, function () { console.log(this.address().port) })"], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve) => child.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
  process.kill(child.pid!, 'SIGSTOP');
  // The accept queue holds backlog + 1 connections; fill it.
  const fillers: Socket[] = [];
  for (;;) {
    const s = connectSocket(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
    const connected = await new Promise<boolean>((resolve) => {
      s.once('connect', () => resolve(true));
      setTimeout(() => resolve(false), 300);
    });
    if (!connected) break;
  }
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of fillers) s.destroy();
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    },
  };
}
