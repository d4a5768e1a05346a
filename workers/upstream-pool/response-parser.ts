// HTTP/1.1 response parser for the lean upstream client (RFC 9112). Incremental: bytes go in
// as the socket delivers them, events come out. Strict where a lax reading could be abused:
// the head must use CRLF line ends, names must be tokens and values free of CR, LF and NUL
// (ugate re-serialises response headers for its clients, so a stray line break would become
// response splitting), and conflicting Content-Lengths are refused.
//
// The sink may return false from onHead/onBody: the parser then stops where it is, keeps the
// rest of the bytes, and goes on only when resume() is called (backpressure from the client).
//
// Input buffers may be reused by the caller once execute() returns (the pool reads every
// socket into one shared buffer): body chunks are only lent to the sink for the call, and
// whatever the parser keeps — the head, a split line, bytes held during a pause — is copied.

import { equalsLower, isControl } from '../http-fields';

export interface ResponseSink {
  /** Status line and fields, names and values as raw Buffers (views over the read buffer). */
  onHead(status: number, statusText: string, rawHeaders: Buffer[]): boolean;
  onBody(chunk: Buffer): boolean;
  /** The message is complete. `reusable`: the connection may carry another request.
   * `extra`: bytes other than a few empty lines followed it in the same read: a broken
   * connection, unless a request is pipelined behind (they are then its answer's first bytes;
   * the sink calls next() from here, `extra` or not). */
  onEnd(reusable: boolean, extra: boolean): void;
}

export class ParseError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'HTTPParserError';
  }
}

const enum State {
  Head,
  Length,
  ChunkSize,
  ChunkData,
  ChunkDataEnd,
  Trailers,
  UntilClose,
  Done,
}

const CR = 13;
const LF = 10;
/** Longest chunk-size line (size, extensions) or trailer section line, CRLF included. */
const MAX_LINE = 4096;
/** Empty lines (CRLF or bare LF) tolerated before a status line (RFC 9112 §2.2), and after a
 * complete response: some backends send a stray CRLF after a body. A few are a sloppy peer;
 * more are refused as garbage (a backend streaming CRLFs must not keep a connection alive). */
const MAX_EMPTY_LINES = 4;
/** The CR of an empty line whose LF is still to come, kept (as `partial`) for the next read. */
const CR_ONLY = Buffer.from([CR]);
/** A chunk size above 2^48 is refused rather than lose precision. */
const MAX_CHUNK_HEX_DIGITS = 12;

// tchar (RFC 9110 §5.6.2)
const TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TOKEN[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TOKEN[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TOKEN[c] = 1;

export class ResponseParser {
  private state = State.Done;
  private headless = false;
  /** Bytes of a head (or a chunk-size / trailer line) that spans reads. */
  private partial: Buffer | null = null;
  /** Bytes read but not yet parsed because the sink asked to pause. */
  private held: Buffer | null = null;
  private remaining = 0;
  private reusable = true;
  private paused = false;
  private running = false;
  private eofSeen = false;
  /** Empty lines skipped before the status line of the current response. */
  private emptyLines = 0;
  /** Empty lines after the previous response (skipTrailing), and whether the last of them is
   * a CR still waiting for its LF. Counted until the next response is expected. */
  private trailingLines = 0;
  private trailingCR = false;
  /** Seconds from a Keep-Alive: timeout=N hint in the last head, or -1. */
  keepAliveHint = -1;
  /** Some byte of the current response has arrived, empty lines before it not counted: a
   * connection that brings only those and closes was closing, not answering (connection.ts
   * sends the request again then). */
  started = false;

  constructor(private readonly sink: ResponseSink, private readonly maxHeadSize: number) {}

  /** Expect a new response; `head` requests get one without a body. */
  reset(head: boolean): void {
    const cr = this.trailingCR;
    this.arm(head);
    // An empty line after the previous response was cut after its CR: the LF (or whatever
    // comes instead, refused then) is the first byte read for this one.
    if (cr) this.partial = CR_ONLY;
  }

  private arm(head: boolean): void {
    this.state = State.Head;
    this.headless = head;
    this.partial = null;
    this.held = null;
    this.remaining = 0;
    this.reusable = true;
    this.paused = false;
    this.keepAliveHint = -1;
    this.started = false;
    this.eofSeen = false;
    this.emptyLines = 0;
    this.trailingLines = 0;
    this.trailingCR = false;
  }

  /** Expect the response to the next pipelined request: like reset(), but the bytes already
   * read past the previous response are its first (empty lines among them are skipped as
   * the ones before its status line). Called from the sink's onEnd. */
  next(head: boolean): void {
    const held = this.held;
    this.arm(head);
    this.held = held;
  }

  /** The response being read closes the connection (Connection: close, HTTP/1.0, or a body
   * that runs until close). */
  get closing(): boolean {
    return !this.reusable;
  }

  get idle(): boolean {
    return this.state === State.Done;
  }

  /** The peer closed, and that will end the response once the sink resumes. */
  get endsAtEof(): boolean {
    return (this.eofSeen && this.state === State.UntilClose) || this.completeButPaused;
  }

  /** Every byte of the body arrived; onEnd waits for the sink to resume. */
  private get completeButPaused(): boolean {
    return this.paused && this.bodyComplete;
  }

  /** The body (of a response framed by Content-Length, or without one) has arrived whole: no
   * further byte belongs to this response. True from the sink's last onBody (or its onHead,
   * when there is no body) until onEnd. */
  get bodyComplete(): boolean {
    return this.state === State.Length && this.remaining === 0;
  }

  /** Feed bytes; throws ParseError on a malformed response. `buf` is not kept. */
  execute(buf: Buffer): void {
    if (this.held !== null) {
      this.held = Buffer.concat([this.held, buf]);
      return;
    }
    this.held = buf;
    if (!this.paused) this.run();
    if (this.held !== null) this.held = Buffer.from(this.held);
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.run();
  }

  /** The peer closed its side. True when that ends the response (a close-delimited body,
   * delivered in full once any pause is over); false when the response was cut short. */
  eof(): boolean {
    if (this.state === State.Done || this.completeButPaused) return true;
    if (this.state !== State.UntilClose) return false;
    this.eofSeen = true;
    this.run();
    return true;
  }

  private run(): void {
    if (this.running) return; // resume() from inside a sink call: the loop below goes on
    this.running = true;
    try {
      while (!this.paused && this.state !== State.Done) {
        // A message may complete without further bytes (Content-Length: 0, a body read whole).
        if (this.state === State.Length && this.remaining === 0) {
          this.end();
          continue;
        }
        const buf = this.held;
        if (buf === null) {
          if (this.eofSeen) this.end();
          break;
        }
        this.step(buf);
      }
    } finally {
      this.running = false;
    }
  }

  /** Keep what follows `used` bytes of `buf` for the next step (before any sink call). */
  private keep(buf: Buffer, used: number): void {
    this.held = used < buf.length ? buf.subarray(used) : null;
  }

  private step(buf: Buffer): void {
    switch (this.state) {
      case State.Head:
        this.head(buf);
        return;
      case State.Length:
      case State.ChunkData: {
        const n = Math.min(this.remaining, buf.length);
        this.remaining -= n;
        this.keep(buf, n);
        if (this.state === State.ChunkData && this.remaining === 0) this.state = State.ChunkDataEnd;
        if (!this.sink.onBody(n === buf.length ? buf : buf.subarray(0, n))) this.paused = true;
        return;
      }
      case State.UntilClose:
        this.held = null;
        if (!this.sink.onBody(buf)) this.paused = true;
        return;
      default:
        this.line(buf);
    }
  }

  private end(): void {
    // Empty lines alone are not `extra` (counted as trailing); before a pipelined response
    // they are skipped again, as its own leading empty lines (next() recounts from zero).
    const extra = this.held !== null && !this.trailingOnly(this.held);
    this.state = State.Done;
    this.sink.onEnd(this.reusable, extra);
    // Unless the sink armed the parser for a pipelined response (next()), what followed is
    // dropped: empty lines, or bytes that drop the connection.
    if (this.state === State.Done) this.held = null;
  }

  /** Bytes read after a complete response, while no other is expected: the connection is idle,
   * or its response is whole but held by a slow client. True when they are only empty lines
   * (CRLF or bare LF), at most MAX_EMPTY_LINES since that response ended: a backend's stray
   * CRLF after a body, harmless, and the connection stays usable. False for anything else:
   * bytes nobody asked for. `buf` is not kept. */
  skipTrailing(buf: Buffer): boolean {
    const held = this.held;
    if (held !== null) {
      // Held with the paused response, read before `buf`: they come first.
      this.held = null;
      if (!this.trailingOnly(held)) return false;
    }
    return this.trailingOnly(buf);
  }

  private trailingOnly(buf: Buffer): boolean {
    for (let i = 0; i < buf.length; i++) {
      const c = buf[i];
      if (this.trailingCR) {
        if (c !== LF) return false;
        this.trailingCR = false;
      } else if (c === CR) {
        this.trailingCR = true;
        continue;
      } else if (c !== LF) return false;
      if (++this.trailingLines > MAX_EMPTY_LINES) return false;
    }
    return true;
  }

  // ---- lines of the chunked framing: sizes, the CRLF after data, trailer fields ----

  private line(buf: Buffer): void {
    let data = buf;
    if (this.partial !== null) {
      data = Buffer.concat([this.partial, buf]);
      this.partial = null;
    }
    const lf = data.indexOf(LF);
    if (lf < 0) {
      if (data.length > MAX_LINE) throw new ParseError('HPE_CHUNK_EXTENSIONS_OVERFLOW', 'chunk line too long');
      this.partial = Buffer.from(data); // a copy: `buf` may be a view over a reused read buffer
      this.held = null;
      return;
    }
    // The same limit for a line read whole: otherwise its fate would depend on how reads fall.
    if (lf + 1 > MAX_LINE) throw new ParseError('HPE_CHUNK_EXTENSIONS_OVERFLOW', 'chunk line too long');
    this.keep(data, lf + 1);
    if (lf === 0 || data[lf - 1] !== CR) throw new ParseError('HPE_LF_EXPECTED', 'chunk line not ended by CRLF');
    const end = lf - 1;
    if (this.state === State.ChunkDataEnd) {
      if (end !== 0) throw new ParseError('HPE_INVALID_CHUNK_SIZE', 'chunk data longer than its size');
      this.state = State.ChunkSize;
    } else if (this.state === State.ChunkSize) {
      this.chunkSize(data, end);
    } else if (end === 0) {
      this.end(); // the blank line after the trailer section
    } else if (!isField(data, 0, end)) {
      throw new ParseError('HPE_INVALID_HEADER_TOKEN', 'invalid trailer field');
    }
  }

  private chunkSize(data: Buffer, end: number): void {
    let size = 0;
    let i = 0;
    for (; i < end; i++) {
      const d = hexValue(data[i]);
      if (d < 0) break;
      size = size * 16 + d;
    }
    if (i === 0 || i > MAX_CHUNK_HEX_DIGITS) throw new ParseError('HPE_INVALID_CHUNK_SIZE', 'invalid chunk size');
    // Chunk extensions (";name=value") are allowed and ignored; nothing else may follow.
    while (i < end && (data[i] === 0x20 || data[i] === 0x09)) i++;
    if (i < end && data[i] !== 0x3b) throw new ParseError('HPE_INVALID_CHUNK_SIZE', 'invalid chunk size');
    if (size === 0) this.state = State.Trailers;
    else {
      this.remaining = size;
      this.state = State.ChunkData;
    }
  }

  // ---- the head ----

  private head(buf: Buffer): void {
    let data = buf;
    let searchFrom = 0;
    if (this.partial !== null) {
      searchFrom = Math.max(0, this.partial.length - 3);
      data = Buffer.concat([this.partial, buf]);
      this.partial = null;
    }
    // No head starts with CR or LF: one byte compare, and empty lines are skipped only here.
    if (data[0] === CR || data[0] === LF) {
      const at = this.skipEmptyLines(data);
      if (at === data.length || (at === data.length - 1 && data[at] === CR)) {
        // All empty lines, or a CR whose LF is still to come: wait for the status line.
        this.partial = at === data.length ? null : CR_ONLY;
        this.held = null;
        return;
      }
      data = data.subarray(at);
      searchFrom = 0;
    }
    this.started = true;
    const blank = data.indexOf('\r\n\r\n', searchFrom, 'latin1');
    if (blank < 0 && bareLineFeed(data, searchFrom)) {
      // Refused at once: a head ended by bare LFs would otherwise wait for the headers timeout.
      throw new ParseError('HPE_LF_EXPECTED', 'response head line not ended by CRLF');
    }
    if (blank < 0 || blank + 4 > this.maxHeadSize) {
      if (blank >= 0 || data.length > this.maxHeadSize) {
        throw new ParseError('HPE_HEADER_OVERFLOW', `response head larger than ${this.maxHeadSize} bytes`);
      }
      this.partial = Buffer.from(data); // a copy: `buf` may be a view over a reused read buffer
      this.held = null;
      return;
    }
    this.keep(data, blank + 4);
    // The head is copied out (small: from Node's buffer pool): the sink keeps views over it.
    const head = Buffer.allocUnsafe(blank + 2); // with the CRLF of the last field line
    data.copy(head, 0, 0, blank + 2);
    this.parseHead(head, blank + 2);
  }

  /** Index past the empty lines that start `data` (counted across reads and interim heads);
   * throws past MAX_EMPTY_LINES or on a CR followed by anything but LF. Stops at a final CR. */
  private skipEmptyLines(data: Buffer): number {
    let i = 0;
    for (;;) {
      if (data[i] === LF) i++;
      else if (data[i] === CR && i + 1 < data.length) {
        if (data[i + 1] !== LF) throw new ParseError('HPE_LF_EXPECTED', 'empty line before the status line not ended by CRLF');
        i += 2;
      } else return i;
      if (++this.emptyLines > MAX_EMPTY_LINES) throw new ParseError('HPE_INVALID_CONSTANT', `more than ${MAX_EMPTY_LINES} empty lines before the status line`);
    }
  }

  private parseHead(data: Buffer, headEnd: number): void {
    // Status line: HTTP/1.x SP 3DIGIT SP reason
    if (headEnd < 14 || !isHttp1(data) || (data[7] !== 0x31 && data[7] !== 0x30) || data[8] !== 0x20) {
      throw new ParseError('HPE_INVALID_CONSTANT', 'not an HTTP/1.x status line');
    }
    const http10 = data[7] === 0x30;
    const status = digit(data[9]) * 100 + digit(data[10]) * 10 + digit(data[11]);
    // 600-999 are not HTTP status codes (RFC 9110 §15: a client should treat them as a 5xx):
    // refused, rather than forwarded to clients that may choke on them.
    if (!(status >= 100 && status <= 599) || (data[12] !== 0x20 && data[12] !== CR)) {
      throw new ParseError('HPE_INVALID_STATUS', 'invalid status code');
    }
    let cr = lineEnd(data, 12);
    const statusText = data[12] !== 0x20 ? '' : cr === 15 && data[13] === 0x4f && data[14] === 0x4b ? 'OK' : data.toString('latin1', 13, cr);

    const raw: Buffer[] = [];
    let length = -1;
    let chunked = false;
    let transferEncoding = false;
    let close = http10;
    let pos = cr + 2;
    while (pos < headEnd) {
      cr = lineEnd(data, pos);
      const end = cr;
      const colon = fieldColon(data, pos, end);
      let vs = colon + 1;
      while (vs < end && (data[vs] === 0x20 || data[vs] === 0x09)) vs++;
      let ve = end;
      while (ve > vs && (data[ve - 1] === 0x20 || data[ve - 1] === 0x09)) ve--;
      const nameLen = colon - pos;
      raw.push(data.subarray(pos, colon), data.subarray(vs, ve));
      if (nameLen === 14 && equalsLower(data, pos, 'content-length')) {
        const n = parseLength(data, vs, ve);
        if (length !== -1 && length !== n) throw new ParseError('HPE_UNEXPECTED_CONTENT_LENGTH', 'conflicting Content-Length');
        length = n;
      } else if (nameLen === 17 && equalsLower(data, pos, 'transfer-encoding')) {
        transferEncoding = true;
        // Only a final "chunked" frames the body; any other coding last means read to close.
        chunked = /(^|,)[ \t]*chunked[ \t]*$/i.test(data.toString('latin1', vs, ve));
      } else if (nameLen === 10 && equalsLower(data, pos, 'connection')) {
        if (ve - vs === 10 && equalsLower(data, vs, 'keep-alive')) {
          if (http10) close = false;
          pos = cr + 2;
          continue;
        }
        const v = data.toString('latin1', vs, ve).toLowerCase();
        if (/(^|,)\s*close\s*(,|$)/.test(v)) close = true;
        else if (http10 && /(^|,)\s*keep-alive\s*(,|$)/.test(v)) close = false;
      } else if (nameLen === 10 && equalsLower(data, pos, 'keep-alive')) {
        const m = /timeout\s*=\s*(\d+)/i.exec(data.toString('latin1', vs, ve));
        if (m !== null) this.keepAliveHint = Number(m[1]);
      }
      pos = cr + 2;
    }

    if (status < 200) {
      // Interim response (100, 103): its head is reported, then the real one follows.
      if (status === 101) throw new ParseError('HPE_INVALID_STATUS', 'unexpected 101 Switching Protocols');
      this.sink.onHead(status, statusText, raw);
      this.keepAliveHint = -1;
      return;
    }
    // An HTTP/1.0 message with Transfer-Encoding closes the connection (RFC 9112 §6.1).
    if (close || (http10 && transferEncoding)) this.reusable = false;
    if (this.headless || status === 204 || status === 304) {
      // No body whatever the fields say (RFC 9112 §6.3, items 1 and 2).
      this.state = State.Length;
      this.remaining = 0;
    } else if (transferEncoding) {
      // Both framings at once is a smuggling shape (RFC 9112 §6.3 says to treat it as an
      // error); forwarding it would also mean rewriting the length the client is told.
      if (length !== -1) throw new ParseError('HPE_UNEXPECTED_CONTENT_LENGTH', 'Content-Length together with Transfer-Encoding');
      if (chunked) this.state = State.ChunkSize;
      else {
        this.state = State.UntilClose;
        this.reusable = false;
      }
    } else if (length >= 0) {
      this.state = State.Length;
      this.remaining = length;
    } else {
      this.state = State.UntilClose;
      this.reusable = false;
    }
    if (!this.sink.onHead(status, statusText, raw)) this.paused = true;
  }
}

/** Index of the CR ending the head line that starts at `from`. Every line ends in CRLF; a
 * lone CR or LF anywhere in it is refused, and so is any other control character but HTAB
 * (NUL, VT, FF, ESC, DEL...): field values and reason phrases are VCHAR, SP, HTAB and obs-text
 * only (RFC 9110 §5.5, RFC 9112 §4), undici refuses them too, and ugate would otherwise hand
 * them on to its clients. One pass in JS: head lines are short, and native indexOf calls
 * cost more than the loop. */
function lineEnd(data: Buffer, from: number): number {
  for (let i = from; i < data.length; i++) {
    const c = data[i];
    if ((c >= 0x20 && c !== 0x7f) || c === 0x09) continue;
    if (c === CR && data[i + 1] === LF) return i;
    if (c === CR || c === LF) break;
    throw new ParseError('HPE_INVALID_HEADER_TOKEN', 'control character in response head');
  }
  throw new ParseError('HPE_LF_EXPECTED', 'response head line not ended by CRLF');
}

function isHttp1(d: Buffer): boolean {
  // "HTTP/1."
  return d[0] === 0x48 && d[1] === 0x54 && d[2] === 0x54 && d[3] === 0x50 && d[4] === 0x2f && d[5] === 0x31 && d[6] === 0x2e;
}

/** Some line of an unfinished head ends in LF without CR. */
function bareLineFeed(data: Buffer, from: number): boolean {
  for (let lf = data.indexOf(LF, from); lf >= 0; lf = data.indexOf(LF, lf + 1)) if (lf === 0 || data[lf - 1] !== CR) return true;
  return false;
}

/** Index of the colon of a field line [from, end), or throws (also for obs-fold). */
function fieldColon(data: Buffer, from: number, end: number): number {
  let i = from;
  while (i < end && TOKEN[data[i]] === 1) i++;
  if (i === from || i === end || data[i] !== 0x3a) throw new ParseError('HPE_INVALID_HEADER_TOKEN', 'invalid response header name');
  return i;
}

/** A trailer field line [from, end): a token, a colon, and a value without control
 * characters but HTAB (the same rule as head fields, though trailers are not forwarded). */
function isField(data: Buffer, from: number, end: number): boolean {
  let i = from;
  while (i < end && TOKEN[data[i]] === 1) i++;
  if (i === from || i === end || data[i] !== 0x3a) return false;
  for (i++; i < end; i++) if (isControl(data[i])) return false;
  return true;
}

function parseLength(data: Buffer, from: number, to: number): number {
  if (to - from < 1 || to - from > 15) throw new ParseError('HPE_INVALID_CONTENT_LENGTH', 'invalid Content-Length');
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = data[i] - 0x30;
    if (d < 0 || d > 9) throw new ParseError('HPE_INVALID_CONTENT_LENGTH', 'invalid Content-Length');
    n = n * 10 + d;
  }
  return n;
}

function digit(c: number): number {
  const d = c - 0x30;
  return d >= 0 && d <= 9 ? d : NaN;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}
