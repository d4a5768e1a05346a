// Raw client sockets, for requests no HTTP client library would send.
import { connect, type Socket } from 'node:net';

export interface RawResult {
  /** Bytes received before the connection closed or the wait ended. */
  data: Buffer;
  text: string;
  /** The peer closed the connection (FIN or RST) within the wait. */
  closed: boolean;
  /** Status code of the first response, or 0 if none arrived. */
  status: number;
}

/** Write `chunks` (strings or buffers; numbers are pauses in ms) and collect the answer. */
export function rawRequest(port: number, chunks: (string | Buffer | number)[], waitMs = 2000): Promise<RawResult> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    const parts: Buffer[] = [];
    let closed = false;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const data = Buffer.concat(parts);
      const text = data.toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ data, text, closed, status: m ? Number(m[1]) : 0 });
    };
    const timer = setTimeout(finish, waitMs);
    sock.on('data', (d) => parts.push(d));
    sock.on('error', () => {
      closed = true;
      finish();
    });
    sock.on('close', () => {
      closed = true;
      finish();
    });
    sock.on('connect', async () => {
      for (const c of chunks) {
        if (done) return;
        if (typeof c === 'number') await new Promise((r) => setTimeout(r, c));
        else sock.write(c);
      }
    });
  });
}

/** Calls `onHead(path, head)` for each request head a raw backend socket receives (bodyless
 * requests: GET, HEAD), in order, however the bytes are split or batched. */
export function onRequestHeads(sock: Socket, onHead: (path: string, head: string) => void): void {
  let pending = '';
  sock.on('data', (d: Buffer) => {
    pending += d.toString('latin1');
    let at: number;
    while ((at = pending.indexOf('\r\n\r\n')) >= 0) {
      const head = pending.slice(0, at);
      pending = pending.slice(at + 4);
      onHead(head.split(' ')[1], head);
    }
  });
}
