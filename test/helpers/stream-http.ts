// Helpers for the streaming and lifecycle tests: a raw client connection that can wait for
// conditions on what it received (event-driven, bounded), a strict HTTP/1.1 response parser
// for pipelined responses, and a deterministic pseudo-random byte source.
import { createCipheriv, createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export interface RawConn {
  readonly socket: Socket;
  /** Everything received so far. */
  data(): Buffer;
  /** Bytes received so far. */
  received(): number;
  readonly connected: Promise<void>;
  /** Resolves when the peer closed (FIN/RST) or the socket was destroyed; `error` is the socket error code, if any. */
  readonly closed: Promise<{ error: string | null }>;
  isClosed(): boolean;
  /** Resolve once `pred(data)` is true (checked on every chunk and on close); reject after timeoutMs. */
  waitFor(pred: (data: Buffer, closed: boolean) => boolean, timeoutMs?: number, what?: string): Promise<Buffer>;
  destroy(): void;
}

/** Open a raw TCP connection to 127.0.0.1:port. Received bytes are kept up to `keepBytes`
 * (default: all); beyond that they are only counted, for large bodies. */
export function rawConnect(port: number, opts: { keepBytes?: number } = {}): RawConn {
  const keepBytes = opts.keepBytes ?? Infinity;
  let kept = 0;
  const socket = connect(port, '127.0.0.1');
  const parts: Buffer[] = [];
  let total = 0;
  let cached: Buffer | null = null;
  let closed = false;
  let closeError: string | null = null;
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  socket.on('data', (d: Buffer) => {
    total += d.length;
    if (kept < keepBytes) {
      const part = kept + d.length > keepBytes ? d.subarray(0, keepBytes - kept) : d;
      kept += part.length;
      parts.push(part);
      cached = null;
    }
    notify();
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    closeError = err.code ?? err.message;
  });
  const closedP = new Promise<{ error: string | null }>((resolve) =>
    socket.once('close', () => {
      closed = true;
      resolve({ error: closeError });
      notify();
    }),
  );
  const connected = new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  connected.catch(() => {});
  const data = () => (cached ??= Buffer.concat(parts));
  return {
    socket,
    data,
    received: () => total,
    connected,
    closed: closedP,
    isClosed: () => closed,
    waitFor(pred, timeoutMs = 10_000, what = 'condition') {
      return new Promise<Buffer>((resolve, reject) => {
        const check = () => {
          let ok = false;
          try {
            ok = pred(data(), closed);
          } catch (err) {
            done();
            reject(err);
            return;
          }
          if (ok) {
            done();
            resolve(data());
          } else if (closed) {
            done();
            reject(new Error(`connection closed before ${what}; received ${total} bytes: ${JSON.stringify(data().subarray(0, 300).toString('latin1'))}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received ${total} bytes: ${JSON.stringify(data().subarray(0, 300).toString('latin1'))}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    destroy: () => socket.destroy(),
  };
}

export interface ParsedResponse {
  status: number;
  /** Lower-cased names; repeated fields joined with ", ". */
  headers: Record<string, string>;
  /** Number of times each lower-cased field name appeared. */
  counts: Record<string, number>;
  body: Buffer;
}

/** Parse consecutive HTTP/1.1 responses, one per entry of `methods` (the request methods, in
 * order, so HEAD responses are framed without a body). Returns null while incomplete; throws on
 * malformed input. `rest` is anything after the last expected response. */
export function parseResponses(buf: Buffer, methods: string[]): { responses: ParsedResponse[]; rest: Buffer } | null {
  const responses: ParsedResponse[] = [];
  let pos = 0;
  for (const method of methods) {
    const end = buf.indexOf('\r\n\r\n', pos, 'latin1');
    if (end === -1) return null;
    const lines = buf.subarray(pos, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3})(?: .*)?$/.exec(lines[0]);
    if (!m) throw new Error(`bad status line at byte ${pos}: ${JSON.stringify(lines[0])}`);
    const status = Number(m[1]);
    const headers: Record<string, string> = {};
    const counts: Record<string, number> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) throw new Error(`bad header line ${JSON.stringify(line)}`);
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
      counts[name] = (counts[name] ?? 0) + 1;
    }
    pos = end + 4;
    let body: Buffer;
    const bodiless = method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
    if (bodiless) {
      body = Buffer.alloc(0);
    } else if (headers['transfer-encoding'] !== undefined) {
      if (!/(^|,)\s*chunked\s*$/i.test(headers['transfer-encoding'])) throw new Error(`unsupported transfer-encoding ${headers['transfer-encoding']}`);
      const chunks: Buffer[] = [];
      for (;;) {
        const lineEnd = buf.indexOf('\r\n', pos, 'latin1');
        if (lineEnd === -1) return null;
        const size = parseInt(buf.subarray(pos, lineEnd).toString('latin1').split(';')[0], 16);
        if (Number.isNaN(size)) throw new Error(`bad chunk size line ${JSON.stringify(buf.subarray(pos, lineEnd).toString('latin1'))}`);
        pos = lineEnd + 2;
        if (size === 0) {
          // No trailers expected: just the final CRLF.
          if (buf.length < pos + 2) return null;
          if (buf.subarray(pos, pos + 2).toString('latin1') !== '\r\n') throw new Error('trailers or bad chunked terminator');
          pos += 2;
          break;
        }
        if (buf.length < pos + size + 2) return null;
        chunks.push(buf.subarray(pos, pos + size));
        pos += size + 2;
      }
      body = Buffer.concat(chunks);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (!Number.isSafeInteger(n)) throw new Error(`bad content-length ${headers['content-length']}`);
      if (buf.length < pos + n) return null;
      body = buf.subarray(pos, pos + n);
      pos += n;
    } else {
      throw new Error(`response ${status} to ${method} has no framing (close-delimited)`);
    }
    responses.push({ status, headers, counts, body });
  }
  return { responses, rest: buf.subarray(pos) };
}

/** Deterministic pseudo-random bytes: AES-128-CTR keystream from a seed, produced chunk by chunk. */
export class PseudoRandom {
  private readonly cipher;
  private readonly zeros: Buffer;
  constructor(seed: string, readonly chunkSize = 64 * 1024) {
    const key = createHash('sha256').update(seed).digest();
    this.cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
    this.zeros = Buffer.alloc(chunkSize);
  }
  next(size = this.chunkSize): Buffer {
    return this.cipher.update(size === this.chunkSize ? this.zeros : Buffer.alloc(size));
  }
}

/** The sha256 of the first `total` bytes of PseudoRandom(seed), computed chunk by chunk. */
export function pseudoRandomSha256(seed: string, total: number, chunkSize = 64 * 1024): string {
  const gen = new PseudoRandom(seed, chunkSize);
  const h = createHash('sha256');
  for (let left = total; left > 0; left -= chunkSize) h.update(gen.next(Math.min(chunkSize, left)));
  return h.digest('hex');
}
