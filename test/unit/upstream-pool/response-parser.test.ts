// The lean upstream client's HTTP/1.1 response parser: framing, strictness, backpressure,
// and the shared-read-buffer contract (the caller overwrites execute()'s input as soon as it
// returns, so whatever the parser keeps must be its own copy).
import { describe, expect, it } from 'vitest';
import { ParseError, ResponseParser, type ResponseSink } from '../../../workers/upstream-pool/response-parser';

const MAX_HEAD = 8192;
/** Stands in for the pool's one read buffer per thread: every read lands here. */
const SHARED = Buffer.alloc(64 * 1024);
const GARBAGE = 0x58; // 'X'

interface HeadSnapshot {
  status: number;
  statusText: string;
  headers: [string, string][];
}

/** Copies body chunks as they come (they are only lent), keeps the head buffers as given and
 * reads them only at onEnd, to prove they outlive the reads they came in. */
class Collector implements ResponseSink {
  readonly rawHeads: { status: number; statusText: string; raw: Buffer[] }[] = [];
  readonly chunks: Buffer[] = [];
  readonly ends: boolean[] = [];
  /** Order of events: 'head:200', 'body:<latin1>', 'end:true'. */
  readonly log: string[] = [];
  /** Heads as strings, taken at onEnd time. */
  headsAtEnd: HeadSnapshot[] | null = null;
  /** Hooks: return false to pause. */
  headResult: (status: number) => boolean = () => true;
  bodyResult: (n: number, chunk: Buffer) => boolean = () => true;
  onEndHook: () => void = () => {};
  /** Sink calls in progress: the parser must never call the sink from inside a sink call. */
  private depth = 0;
  nested = 0;

  private enter(): void {
    if (this.depth++ > 0) this.nested++;
  }

  onHead(status: number, statusText: string, rawHeaders: Buffer[]): boolean {
    this.enter();
    try {
      this.rawHeads.push({ status, statusText, raw: rawHeaders });
      this.log.push(`head:${status}`);
      return this.headResult(status);
    } finally {
      this.depth--;
    }
  }

  onBody(chunk: Buffer): boolean {
    this.enter();
    try {
      const copy = Buffer.from(chunk);
      this.chunks.push(copy);
      this.log.push(`body:${copy.toString('latin1')}`);
      return this.bodyResult(this.chunks.length, copy);
    } finally {
      this.depth--;
    }
  }

  onEnd(reusable: boolean, extra: boolean): void {
    this.enter();
    try {
      // Without a pipelined request, bytes after the response make the connection unusable.
      this.ends.push(reusable && !extra);
      this.log.push(`end:${reusable && !extra}`);
      this.headsAtEnd = this.snapshotHeads();
      this.onEndHook();
    } finally {
      this.depth--;
    }
  }

  snapshotHeads(): HeadSnapshot[] {
    return this.rawHeads.map((h) => {
      const headers: [string, string][] = [];
      for (let i = 0; i < h.raw.length; i += 2) headers.push([h.raw[i].toString('latin1'), h.raw[i + 1].toString('latin1')]);
      return { status: h.status, statusText: h.statusText, headers };
    });
  }

  get body(): string {
    return Buffer.concat(this.chunks).toString('latin1');
  }
}

/** Copy `bytes` into the shared read buffer, execute, then scribble over the shared buffer. */
function feed(p: ResponseParser, bytes: Buffer | string): void {
  const b = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
  b.copy(SHARED);
  try {
    p.execute(SHARED.subarray(0, b.length));
  } finally {
    SHARED.fill(GARBAGE);
  }
}

function setup(head = false, maxHead = MAX_HEAD): { p: ResponseParser; sink: Collector } {
  const sink = new Collector();
  const p = new ResponseParser(sink, maxHead);
  p.reset(head);
  return { p, sink };
}

// ---- valid responses, fed whole, split in two at every offset, and one byte at a time ----

interface Case {
  name: string;
  raw: string;
  head?: boolean;
  /** Close-delimited: ends only when eof() is called. */
  endsOnEof?: boolean;
  heads: HeadSnapshot[];
  body: string;
  reusable: boolean;
  keepAliveHint?: number;
}

interface Outcome {
  heads: HeadSnapshot[] | null;
  body: string;
  ends: boolean[];
  endedBeforeEof: boolean;
  idleBeforeEof: boolean;
  eof: boolean;
  idle: boolean;
  keepAliveHint: number;
}

function run(c: Case, pieces: Buffer[]): Outcome {
  const { p, sink } = setup(c.head ?? false);
  expect(p.idle).toBe(false);
  for (const piece of pieces) feed(p, piece);
  const endedBeforeEof = sink.ends.length > 0;
  const idleBeforeEof = p.idle;
  const eof = p.eof();
  expect(sink.nested).toBe(0);
  return {
    heads: sink.headsAtEnd,
    body: sink.body,
    ends: sink.ends,
    endedBeforeEof,
    idleBeforeEof,
    eof,
    idle: p.idle,
    keepAliveHint: p.keepAliveHint,
  };
}

function expected(c: Case): Outcome {
  return {
    heads: c.heads,
    body: c.body,
    ends: [c.reusable],
    endedBeforeEof: !c.endsOnEof,
    idleBeforeEof: !c.endsOnEof,
    eof: true,
    idle: true,
    keepAliveHint: c.keepAliveHint ?? -1,
  };
}

const CHUNKED_BODY = 'hello' + '0123456789' + 'abcdefghijk' + 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

const cases: Case[] = [
  // RFC 9112 §2.2: a stray empty line before the status line is tolerated (up to 4 of them).
  {
    name: 'a CRLF before the status line',
    raw: '\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    heads: [{ status: 200, statusText: 'OK', headers: [['Content-Length', '2']] }],
    body: 'ok',
    reusable: true,
  },
  {
    name: 'a bare LF before the status line',
    raw: '\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    heads: [{ status: 200, statusText: 'OK', headers: [['Content-Length', '2']] }],
    body: 'ok',
    reusable: true,
  },
  {
    name: 'four empty lines, CRLF and LF mixed, before the status line',
    raw: '\r\n\n\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    heads: [{ status: 200, statusText: 'OK', headers: [['Content-Length', '2']] }],
    body: 'ok',
    reusable: true,
  },
  {
    name: 'an empty line before the final head after an interim one (four in all)',
    raw: '\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\r\n\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    heads: [
      { status: 103, statusText: 'Early Hints', headers: [['Link', '</a>']] },
      { status: 200, statusText: 'OK', headers: [['Content-Length', '2']] },
    ],
    body: 'ok',
    reusable: true,
  },
  {
    name: 'Content-Length body',
    raw: 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world',
    heads: [{ status: 200, statusText: 'OK', headers: [['Content-Type', 'text/plain'], ['Content-Length', '11']] }],
    body: 'hello world',
    reusable: true,
  },
  {
    name: 'Content-Length: 0',
    raw: 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
    heads: [{ status: 200, statusText: 'OK', headers: [['Content-Length', '0']] }],
    body: '',
    reusable: true,
  },
  {
    name: 'chunked: several chunks, hex in both cases, extensions, trailers',
    raw:
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '5;ext=1\r\nhello\r\n' +
      'A\r\n0123456789\r\n' +
      'b ; a=1;b="x;y"\r\nabcdefghijk\r\n' +
      '1A\r\nABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n' +
      '0;last\r\nX-Checksum: abc\r\nX-Other:  1 \r\n\r\n',
    heads: [{ status: 200, statusText: 'OK', headers: [['Transfer-Encoding', 'chunked']] }],
    body: CHUNKED_BODY,
    reusable: true,
  },
  {
    name: 'chunked as the last of several codings',
    raw: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    heads: [{ status: 200, statusText: 'OK', headers: [['Transfer-Encoding', 'gzip, Chunked']] }],
    body: 'abc',
    reusable: true,
  },
  {
    name: 'close-delimited body',
    raw: 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nstreamed until the peer closes',
    endsOnEof: true,
    heads: [{ status: 200, statusText: 'OK', headers: [['Content-Type', 'text/plain']] }],
    body: 'streamed until the peer closes',
    reusable: false,
  },
  {
    name: 'a Transfer-Encoding other than chunked reads to close',
    raw: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    endsOnEof: true,
    heads: [{ status: 200, statusText: 'OK', headers: [['Transfer-Encoding', 'gzip']] }],
    body: '3\r\nabc\r\n0\r\n\r\n',
    reusable: false,
  },
  {
    name: 'HEAD request with Content-Length: 10, no body bytes',
    raw: 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n',
    head: true,
    heads: [{ status: 200, statusText: 'OK', headers: [['Content-Length', '10']] }],
    body: '',
    reusable: true,
  },
  {
    name: 'HEAD request with Transfer-Encoding: chunked, no body bytes',
    raw: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n',
    head: true,
    heads: [{ status: 200, statusText: 'OK', headers: [['Transfer-Encoding', 'chunked']] }],
    body: '',
    reusable: true,
  },
  {
    name: '204 with a Content-Length',
    raw: 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n',
    heads: [{ status: 204, statusText: 'No Content', headers: [['Content-Length', '5']] }],
    body: '',
    reusable: true,
  },
  {
    name: '304 with a Content-Length',
    raw: 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 1234\r\n\r\n',
    heads: [{ status: 304, statusText: 'Not Modified', headers: [['ETag', '"x"'], ['Content-Length', '1234']] }],
    body: '',
    reusable: true,
  },
  {
    name: '100 Continue and 103 Early Hints before the 200',
    raw:
      'HTTP/1.1 100 Continue\r\n\r\n' +
      'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n' +
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    heads: [
      { status: 100, statusText: 'Continue', headers: [] },
      { status: 103, statusText: 'Early Hints', headers: [['Link', '</style.css>; rel=preload']] },
      { status: 200, statusText: 'OK', headers: [['Content-Length', '2']] },
    ],
    body: 'ok',
    reusable: true,
  },
  {
    name: 'Connection: close',
    raw: 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye',
    heads: [{ status: 200, statusText: 'OK', headers: [['Connection', 'close'], ['Content-Length', '3']] }],
    body: 'bye',
    reusable: false,
  },
  {
    name: 'Connection: close among other tokens',
    raw: 'HTTP/1.1 200 OK\r\nConnection: Upgrade, Close\r\nContent-Length: 0\r\n\r\n',
    heads: [{ status: 200, statusText: 'OK', headers: [['Connection', 'Upgrade, Close'], ['Content-Length', '0']] }],
    body: '',
    reusable: false,
  },
  {
    name: 'HTTP/1.0 without keep-alive',
    raw: 'HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nold!',
    heads: [{ status: 200, statusText: 'OK', headers: [['Content-Length', '4']] }],
    body: 'old!',
    reusable: false,
  },
  {
    name: 'HTTP/1.0 with Connection: keep-alive and a Content-Length',
    raw: 'HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 4\r\n\r\nkept',
    heads: [{ status: 200, statusText: 'OK', headers: [['Connection', 'Keep-Alive'], ['Content-Length', '4']] }],
    body: 'kept',
    reusable: true,
  },
  {
    name: 'a 304 with both Transfer-Encoding and Content-Length has no body to frame',
    raw: 'HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n',
    heads: [{ status: 304, statusText: 'Not Modified', headers: [['Content-Length', '100'], ['Transfer-Encoding', 'chunked']] }],
    body: '',
    reusable: true,
  },
  {
    name: 'status line without a reason phrase',
    raw: 'HTTP/1.1 200\r\nContent-Length: 3\r\n\r\nabc',
    heads: [{ status: 200, statusText: '', headers: [['Content-Length', '3']] }],
    body: 'abc',
    reusable: true,
  },
  {
    name: 'header values trimmed of spaces and tabs',
    raw: 'HTTP/1.1 404 Not Found\r\nX-A: \t padded value \t\r\nX-B:tight\r\nX-Empty:  \t \r\nContent-Length:\t2 \r\n\r\nno',
    heads: [
      {
        status: 404,
        statusText: 'Not Found',
        headers: [['X-A', 'padded value'], ['X-B', 'tight'], ['X-Empty', ''], ['Content-Length', '2']],
      },
    ],
    body: 'no',
    reusable: true,
  },
  {
    name: 'Keep-Alive: timeout=5 sets the hint',
    raw: 'HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nContent-Length: 1\r\n\r\n!',
    heads: [{ status: 200, statusText: 'OK', headers: [['Keep-Alive', 'timeout=5, max=100'], ['Content-Length', '1']] }],
    body: '!',
    reusable: true,
    keepAliveHint: 5,
  },
  {
    name: 'status 599, a tab inside a value and obs-text bytes in the value and the reason phrase',
    raw: 'HTTP/1.1 599 Caf\xe9\r\nX-A: a\tb \xe9\r\nContent-Length: 2\r\n\r\nok',
    heads: [{ status: 599, statusText: 'Caf\xe9', headers: [['X-A', 'a\tb \xe9'], ['Content-Length', '2']] }],
    body: 'ok',
    reusable: true,
  },
  {
    name: 'repeated identical Content-Length',
    raw: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nfive!',
    heads: [{ status: 200, statusText: 'OK', headers: [['Content-Length', '5'], ['content-length', '5']] }],
    body: 'five!',
    reusable: true,
  },
];

describe('ResponseParser: valid responses, however the reads fall', () => {
  for (const c of cases) {
    describe(c.name, () => {
      const bytes = Buffer.from(c.raw, 'latin1');

      it('fed whole', () => {
        expect(run(c, [bytes])).toEqual(expected(c));
      });

      it('split in two at every offset', () => {
        for (let i = 1; i < bytes.length; i++) {
          const out = run(c, [bytes.subarray(0, i), bytes.subarray(i)]);
          expect(out, `split at ${i}`).toEqual(expected(c));
        }
      });

      it('one byte per execute()', () => {
        const pieces: Buffer[] = [];
        for (let i = 0; i < bytes.length; i++) pieces.push(bytes.subarray(i, i + 1));
        expect(run(c, pieces)).toEqual(expected(c));
      });
    });
  }

  it('a close-delimited body is not ended before eof(), and eof() ends it not reusable', () => {
    const { p, sink } = setup();
    feed(p, 'HTTP/1.1 200 OK\r\n\r\nabc');
    feed(p, 'def');
    expect(sink.ends).toEqual([]);
    expect(p.idle).toBe(false);
    expect(p.eof()).toBe(true);
    expect(sink.ends).toEqual([false]);
    expect(sink.body).toBe('abcdef');
    expect(p.idle).toBe(true);
  });

  it('the interim head does not leave its Keep-Alive hint behind', () => {
    const { p } = setup();
    feed(p, 'HTTP/1.1 103 Early Hints\r\nKeep-Alive: timeout=9\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    expect(p.keepAliveHint).toBe(-1);
  });

  it('reset() readies the parser for the next response on the same connection', () => {
    const { p, sink } = setup();
    feed(p, 'HTTP/1.1 200 OK\r\nKeep-Alive: timeout=7\r\nContent-Length: 1\r\n\r\na');
    expect(p.idle).toBe(true);
    expect(p.keepAliveHint).toBe(7);
    p.reset(false);
    expect(p.idle).toBe(false);
    expect(p.keepAliveHint).toBe(-1);
    feed(p, 'HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nb');
    expect(sink.log).toEqual(['head:200', 'body:a', 'end:true', 'head:201', 'body:b', 'end:true']);
  });

  it('a head of exactly maxHeadSize bytes is accepted', () => {
    const start = 'HTTP/1.1 200 OK\r\nX-Pad: ';
    const tail = '\r\nContent-Length: 0\r\n\r\n';
    const max = 256;
    const raw = start + 'p'.repeat(max - start.length - tail.length) + tail;
    expect(raw.length).toBe(max);
    for (const pieces of [[raw], [raw.slice(0, 100), raw.slice(100)], [...raw]]) {
      const { p, sink } = setup(false, max);
      for (const piece of pieces) feed(p, piece);
      expect(sink.ends).toEqual([true]);
    }
  });
});

// ---- bytes after the message ----

describe('ResponseParser: bytes after a complete response', () => {
  it('extra bytes after a Content-Length body in the same read make it not reusable', () => {
    const { p, sink } = setup();
    feed(p, 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA');
    expect(sink.body).toBe('abc');
    expect(sink.ends).toEqual([false]);
    expect(p.idle).toBe(true);
  });

  it('extra bytes after a chunked body in the same read make it not reusable', () => {
    const { p, sink } = setup();
    feed(p, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n');
    expect(sink.body).toBe('abc');
    expect(sink.ends).toEqual([false]);
  });

  it('extra bytes after a bodiless 204 make it not reusable', () => {
    const { p, sink } = setup();
    feed(p, 'HTTP/1.1 204 No Content\r\n\r\nsurprise');
    expect(sink.body).toBe('');
    expect(sink.ends).toEqual([false]);
  });

  it('extra bytes held during a pause still make it not reusable on resume', () => {
    const { p, sink } = setup();
    sink.bodyResult = () => false;
    feed(p, 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA');
    expect(sink.ends).toEqual([]);
    p.resume();
    expect(sink.body).toBe('abc');
    expect(sink.ends).toEqual([false]);
  });
});

describe('ResponseParser: empty lines after a complete response', () => {
  const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc';
  const CHUNKED = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n';

  it('up to 4 (CRLF or bare LF) in the read that ends the response, after a Content-Length or a chunked body: reusable', () => {
    for (const [raw, after] of [
      [OK, '\r\n'],
      [CHUNKED, '\r\n'],
      [OK, '\n'],
      [CHUNKED, '\r\n\n\r\n\r\n'],
    ]) {
      const { p, sink } = setup();
      feed(p, raw + after);
      expect([after, sink.body, sink.ends]).toEqual([after, 'abc', [true]]);
    }
  });

  it('a fifth, in the same read or read later (skipTrailing), or any other byte after them: not reusable', () => {
    const { p, sink } = setup();
    feed(p, OK + '\r\n\r\n\r\n\r\n\r\n');
    expect(sink.ends).toEqual([false]);
    const later = setup();
    feed(later.p, OK + '\r\n\r\n\r\n');
    expect(later.sink.ends).toEqual([true]);
    expect(later.p.skipTrailing(Buffer.from('\r\n'))).toBe(true);
    expect(later.p.skipTrailing(Buffer.from('\n'))).toBe(false);
    for (const bytes of ['x', '\r\nx', '\rx', '\r\r\n']) {
      const { p: q } = setup();
      feed(q, OK);
      expect([bytes, q.skipTrailing(Buffer.from(bytes, 'latin1'))]).toEqual([bytes, false]);
    }
  });

  it('a CR whose LF comes in a later read is one empty line; its LF may come with the next response', () => {
    const { p, sink } = setup();
    feed(p, OK + '\r');
    expect(sink.ends).toEqual([true]);
    expect(p.skipTrailing(Buffer.from('\n\r'))).toBe(true);
    p.reset(false);
    expect(p.started).toBe(false);
    feed(p, '\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ndef');
    expect(sink.body).toBe('abcdef');
    expect(sink.ends).toEqual([true, true]);
  });

  it('a CR left after the last response, then a next response that does not start with its LF: refused', () => {
    const { p } = setup();
    feed(p, OK + '\r');
    p.reset(false);
    expect(() => feed(p, 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ndef')).toThrow(ParseError);
  });

  it('read while a slow client holds the complete response: counted after the ones held with it', () => {
    const { p, sink } = setup();
    sink.bodyResult = () => false;
    feed(p, OK + '\r\n\r\n');
    expect(p.skipTrailing(Buffer.from('\r\n\r\n'))).toBe(true);
    p.resume();
    expect(sink.ends).toEqual([true]);
    expect(p.skipTrailing(Buffer.from('\r\n'))).toBe(false);
  });

  it('bytes held with the paused response that are not empty lines: skipTrailing refuses the connection', () => {
    const { p, sink } = setup();
    sink.bodyResult = () => false;
    feed(p, OK + 'EXTRA');
    expect(p.skipTrailing(Buffer.from('\r\n'))).toBe(false);
  });

  it('empty lines alone do not start a response (started): a connection closing after them was not answering', () => {
    const { p } = setup();
    feed(p, '\r\n');
    feed(p, '\n\r');
    expect(p.started).toBe(false);
    expect(p.eof()).toBe(false);
    const q = setup().p;
    feed(q, '\r\nH');
    expect(q.started).toBe(true);
  });
});

// ---- pipelined responses: the sink arms the parser for the next one from onEnd ----

describe('ResponseParser: pipelined responses (next())', () => {
  const THREE =
    'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none' +
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n' +
    'HTTP/1.1 204 No Content\r\nX-N: 3\r\n\r\n';

  /** Three responses; the sink asks for two more, as a connection with two requests behind. */
  function pipelined(pauseEveryBody = false) {
    const { p, sink } = setup();
    let behind = 2;
    const extras: boolean[] = [];
    const orig = sink.onEnd.bind(sink);
    sink.onEnd = (reusable: boolean, extra: boolean) => {
      extras.push(extra);
      orig(reusable, false);
      if (behind-- > 0) p.next(false);
    };
    if (pauseEveryBody) sink.bodyResult = () => false;
    return { p, sink, extras };
  }

  it('three responses in one read: each delivered in order, the parser idle after the last', () => {
    const { p, sink, extras } = pipelined();
    feed(p, THREE);
    expect(sink.log).toEqual(['head:200', 'body:one', 'end:true', 'head:200', 'body:two', 'end:true', 'head:204', 'end:true']);
    expect(extras).toEqual([true, true, false]);
    expect(p.idle).toBe(true);
    expect(sink.nested).toBe(0);
  });

  /** THREE's events, whichever offset `bytes` is split at into two reads. */
  function expectThreeSplitAnywhere(bytes: Buffer): void {
    for (let at = 1; at < bytes.length; at++) {
      const { p, sink } = pipelined();
      feed(p, bytes.subarray(0, at));
      feed(p, bytes.subarray(at));
      // A body may come in two pieces; merge them.
      const log = sink.log.join('|').replace(/\|body:([^|]*)\|body:/g, '|body:$1');
      expect(log.split('|'), `split at ${at}`).toEqual(['head:200', 'body:one', 'end:true', 'head:200', 'body:two', 'end:true', 'head:204', 'end:true']);
      expect(p.idle).toBe(true);
    }
  }

  it('split at every offset: the same events, whatever the reads', () => {
    expectThreeSplitAnywhere(Buffer.from(THREE, 'latin1'));
  });

  it('a pause in the first body holds the next responses (copied out of the shared buffer) until resume', () => {
    const { p, sink } = pipelined(true);
    feed(p, THREE);
    expect(sink.log).toEqual(['head:200', 'body:one']);
    p.resume();
    expect(sink.log).toEqual(['head:200', 'body:one', 'end:true', 'head:200', 'body:two']);
    p.resume();
    expect(sink.log.slice(5)).toEqual(['end:true', 'head:204', 'end:true']);
    expect(sink.headsAtEnd!.at(-1)!.headers).toEqual([['X-N', '3']]);
  });

  it('next() with nothing read yet: waits for the bytes, started only once they come', () => {
    const { p, sink } = pipelined();
    feed(p, 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none');
    expect(p.idle).toBe(false);
    expect(p.started).toBe(false);
    feed(p, 'HTTP/1.1 200 OK\r\nContent-Len');
    expect(p.started).toBe(true);
    feed(p, 'gth: 3\r\n\r\ntwo');
    expect(sink.body).toBe('onetwo');
  });

  it('a CRLF between pipelined responses: skipped, each delivered, split at every offset', () => {
    expectThreeSplitAnywhere(Buffer.from(THREE.replace(/(?=HTTP\/1\.1 )/g, '\r\n'), 'latin1'));
  });

  it('the empty-line allowance is per response: four before each of three pipelined responses', () => {
    const { p, sink } = pipelined();
    feed(p, THREE.replace(/(?=HTTP\/1\.1 )/g, '\r\n\n\r\n\r\n'));
    expect(sink.log).toEqual(['head:200', 'body:one', 'end:true', 'head:200', 'body:two', 'end:true', 'head:204', 'end:true']);
  });

  it('a malformed second response still throws', () => {
    const { p } = pipelined();
    expect(() => feed(p, 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\noneHTTP/1.1 200 OK\nContent-Length: 1\n\nx')).toThrow(ParseError);
  });
});

// ---- malformed responses ----

function expectParseError(raw: string | Buffer, code: string, maxHead = MAX_HEAD): void {
  const bytes = typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw;
  const modes: [string, Buffer[]][] = [
    ['whole', [bytes]],
    ['byte by byte', [...bytes].map((b) => Buffer.from([b]))],
  ];
  for (const [mode, pieces] of modes) {
    const { p } = setup(false, maxHead);
    let thrown: unknown = null;
    try {
      for (const piece of pieces) feed(p, piece);
    } catch (err) {
      thrown = err;
    }
    expect(thrown, `${mode}: should throw`).toBeInstanceOf(ParseError);
    const e = thrown as ParseError;
    expect(e.name).toBe('HTTPParserError');
    expect(e.code).toMatch(/^HPE_/);
    expect(e.code, mode).toBe(code);
  }
}

describe('ResponseParser: malformed responses throw ParseError', () => {
  const errors: [string, string, string][] = [
    ['not HTTP', 'NONSENSE\r\n\r\n', 'HPE_INVALID_CONSTANT'],
    ['HTTP/2 status line', 'HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_CONSTANT'],
    ['bad status code', 'HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['status code below 100', 'HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['four-digit status code', 'HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['bare LF ending the status line', 'HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n', 'HPE_LF_EXPECTED'],
    ['bare LF ending a header line', 'HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 0\r\n\r\n', 'HPE_LF_EXPECTED'],
    ['bare CR inside a header value', 'HTTP/1.1 200 OK\r\nX-A: one\rtwo\r\nContent-Length: 0\r\n\r\n', 'HPE_LF_EXPECTED'],
    ['bare CR inside the reason phrase', 'HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n', 'HPE_LF_EXPECTED'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['obs-fold with a tab', 'HTTP/1.1 200 OK\r\nX-A: one\r\n\ttwo\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['space before the colon', 'HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['empty header name', 'HTTP/1.1 200 OK\r\n: value\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['header line without a colon', 'HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['conflicting Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!', 'HPE_UNEXPECTED_CONTENT_LENGTH'],
    ['non-numeric Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n', 'HPE_INVALID_CONTENT_LENGTH'],
    ['signed Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello', 'HPE_INVALID_CONTENT_LENGTH'],
    ['Content-Length list', 'HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello', 'HPE_INVALID_CONTENT_LENGTH'],
    ['empty Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n', 'HPE_INVALID_CONTENT_LENGTH'],
    ['NUL in a header value', 'HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['NUL in the reason phrase', 'HTTP/1.1 200 O\0K\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['invalid chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 'HPE_INVALID_CHUNK_SIZE'],
    ['chunk size followed by junk', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n', 'HPE_INVALID_CHUNK_SIZE'],
    ['empty chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;ext\r\n', 'HPE_INVALID_CHUNK_SIZE'],
    ['chunk size of 13 hex digits', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0000000000001\r\nx\r\n0\r\n\r\n', 'HPE_INVALID_CHUNK_SIZE'],
    ['chunk size line ended by a bare LF', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n', 'HPE_LF_EXPECTED'],
    ['chunk data longer than its size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n', 'HPE_INVALID_CHUNK_SIZE'],
    ['chunk data followed by a bare LF', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n', 'HPE_LF_EXPECTED'],
    ['a malformed trailer field', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    // Both framings at once: refused (RFC 9112 §6.3), not read as chunked.
    ['Transfer-Encoding with a Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwins\r\n0\r\n\r\n', 'HPE_UNEXPECTED_CONTENT_LENGTH'],
    ['Content-Length after Transfer-Encoding', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n4\r\nwins\r\n0\r\n\r\n', 'HPE_UNEXPECTED_CONTENT_LENGTH'],
    // Found by hardening: forwarded before, and undici refuses the control characters too.
    ['status code over 599', 'HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['status code 999', 'HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['vertical tab in a header value', 'HTTP/1.1 200 OK\r\nX-A: a\x0bb\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['form feed in a header value', 'HTTP/1.1 200 OK\r\nX-A: a\x0cb\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['DEL in a header value', 'HTTP/1.1 200 OK\r\nX-A: a\x7fb\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['ESC in the reason phrase', 'HTTP/1.1 200 O\x1bK\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['a control character in a trailer value', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\x01b\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['NUL in a trailer value', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\x00b\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    // Empty lines before the status line: a few are tolerated (above), not more, nor garbage.
    ['five empty lines before the status line', '\r\n\r\n\n\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_CONSTANT'],
    ['five empty lines around an interim head', '\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n\r\n\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_CONSTANT'],
    ['a CR not followed by LF before the status line', '\rHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'HPE_LF_EXPECTED'],
    ['a space line before the status line', ' \r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_CONSTANT'],
    ['garbage after an empty line before the status line', '\r\nx\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_CONSTANT'],
    ['101 Switching Protocols', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', 'HPE_INVALID_STATUS'],
  ];
  for (const [name, raw, code] of errors) {
    it(name, () => expectParseError(raw, code));
  }

  it('a head that grows past maxHeadSize without its terminator', () => {
    const max = 256;
    const raw = 'HTTP/1.1 200 OK\r\nX-Pad: ' + 'p'.repeat(max); // no blank line, ever
    expect(raw.length).toBeGreaterThan(max);
    expectParseError(raw, 'HPE_HEADER_OVERFLOW', max);
  });

  it('a head whose terminator arrives past maxHeadSize', () => {
    const max = 256;
    const start = 'HTTP/1.1 200 OK\r\nX-Pad: ';
    const tail = '\r\nContent-Length: 0\r\n\r\n';
    const raw = start + 'p'.repeat(max - start.length - tail.length + 1) + tail;
    expect(raw.length).toBe(max + 1);
    expectParseError(raw, 'HPE_HEADER_OVERFLOW', max);
    // Two reads: all but the last byte (under the limit, so kept), then the terminator's end.
    const { p } = setup(false, max);
    feed(p, raw.slice(0, -1));
    expect(() => feed(p, raw.slice(-1))).toThrow(ParseError);
  });

  it('a head past maxHeadSize is refused before a byte of it reaches the sink', () => {
    const { p, sink } = setup(false, 64);
    expect(() => feed(p, 'HTTP/1.1 200 OK\r\nX-Pad: ' + 'p'.repeat(64) + '\r\n\r\n')).toThrow(ParseError);
    expect(sink.log).toEqual([]);
  });

  it('a head of bare-LF lines is refused without waiting for a CRLF CRLF that never comes', () => {
    expectParseError('HTTP/1.1 200 OK\nContent-Length: 0\n\n', 'HPE_LF_EXPECTED');
    const { p } = setup();
    feed(p, 'HTTP/1.1 200 OK\r');
    expect(() => feed(p, 'X\n')).toThrow(ParseError);
  });

  it('the chunk line limit is the same for a line read whole and one read in pieces', () => {
    const line = (len: number) => '3;' + 'e'.repeat(len - 4) + '\r\n';
    const raw = (len: number) => 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' + line(len) + 'abc\r\n0\r\n\r\n';
    expect(line(4096).length).toBe(4096);
    for (const pieces of [[raw(4096)], [...raw(4096)], [raw(4096).slice(0, 2000), raw(4096).slice(2000)]]) {
      const { p, sink } = setup();
      for (const piece of pieces) feed(p, piece);
      expect(sink.ends).toEqual([true]);
    }
    expectParseError(raw(4097), 'HPE_CHUNK_EXTENSIONS_OVERFLOW');
    const trailer = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: ' + 't'.repeat(5000) + '\r\n\r\n';
    expectParseError(trailer, 'HPE_CHUNK_EXTENSIONS_OVERFLOW');
  });

  it('a chunk-size line longer than the line limit is refused however it is split', () => {
    const raw = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=' + 'e'.repeat(5000) + '\r\nabc\r\n0\r\n\r\n';
    expectParseError(raw, 'HPE_CHUNK_EXTENSIONS_OVERFLOW');
  });

  it('a chunk-size line within the line limit is accepted however it is split', () => {
    const raw = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=' + 'e'.repeat(3000) + '\r\nabc\r\n0\r\n\r\n';
    for (const pieces of [[raw], [...raw]]) {
      const { p, sink } = setup();
      for (const piece of pieces) feed(p, piece);
      expect(sink.body).toBe('abc');
      expect(sink.ends).toEqual([true]);
    }
  });
});

// ---- backpressure ----

describe('ResponseParser: backpressure', () => {
  it('pausing on the first onBody holds the rest of a chunked body until resume()', () => {
    const { p, sink } = setup();
    let calls = 0;
    sink.bodyResult = () => ++calls !== 1;
    feed(p, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n5\r\nhijkl\r\n0\r\nX-T: 1\r\n\r\n');
    expect(sink.log).toEqual(['head:200', 'body:abc']);
    // The shared read buffer has been scribbled over (feed does it); nothing more comes out.
    p.resume(); // first resume delivers the rest
    expect(sink.log).toEqual(['head:200', 'body:abc', 'body:defg', 'body:hijkl', 'end:true']);
    expect(sink.headsAtEnd).toEqual([{ status: 200, statusText: 'OK', headers: [['Transfer-Encoding', 'chunked']] }]);
  });

  it('nothing is delivered while paused, even when more reads arrive', () => {
    const { p, sink } = setup();
    sink.bodyResult = (n) => n !== 1;
    feed(p, 'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n01234');
    expect(sink.log).toEqual(['head:200', 'body:01234']);
    feed(p, '56789');
    feed(p, 'abcde');
    expect(sink.log).toEqual(['head:200', 'body:01234']);
    expect(p.idle).toBe(false);
    p.resume();
    expect(sink.body).toBe('0123456789abcde');
    expect(sink.ends).toEqual([true]);
    expect(p.idle).toBe(true);
  });

  it('pausing again and again delivers every byte once, in order', () => {
    const raw =
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '2\r\nab\r\n3\r\ncde\r\n1\r\nf\r\n0\r\n\r\n';
    const { p, sink } = setup();
    sink.headResult = () => false;
    sink.bodyResult = () => false;
    feed(p, raw);
    let resumes = 0;
    while (sink.ends.length === 0 && resumes < 20) {
      p.resume();
      resumes++;
    }
    expect(sink.body).toBe('abcdef');
    expect(sink.ends).toEqual([true]);
    expect(resumes).toBe(4); // after the head and after each of the three chunks
  });

  it('pausing in onHead keeps the body bytes of the same read', () => {
    const { p, sink } = setup();
    sink.headResult = () => false;
    feed(p, 'HTTP/1.1 200 OK\r\nX-A: a\r\nContent-Length: 10\r\n\r\n01234');
    expect(sink.log).toEqual(['head:200']);
    feed(p, '56789');
    expect(sink.log).toEqual(['head:200']);
    p.resume();
    expect(sink.body).toBe('0123456789');
    expect(sink.ends).toEqual([true]);
    expect(sink.headsAtEnd).toEqual([
      { status: 200, statusText: 'OK', headers: [['X-A', 'a'], ['Content-Length', '10']] },
    ]);
  });

  it('pausing in onHead of a bodiless response ends it on resume', () => {
    const { p, sink } = setup();
    sink.headResult = () => false;
    feed(p, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    expect(sink.ends).toEqual([]);
    expect(p.idle).toBe(false);
    p.resume();
    expect(sink.ends).toEqual([true]);
  });

  it('a false from an interim head does not pause the parser', () => {
    const { p, sink } = setup();
    sink.headResult = (status) => status >= 200;
    feed(p, 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    expect(sink.log).toEqual(['head:100', 'head:200', 'body:ok', 'end:true']);
  });

  it('resume() without a pause does nothing', () => {
    const { p, sink } = setup();
    feed(p, 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab');
    p.resume();
    p.resume();
    expect(sink.log).toEqual(['head:200', 'body:ab']);
    feed(p, 'cd');
    expect(sink.log).toEqual(['head:200', 'body:ab', 'body:cd', 'end:true']);
  });

  it('resume() from inside onBody does not deliver anything twice', () => {
    const { p, sink } = setup();
    sink.bodyResult = (n) => {
      if (n === 1) return false;
      p.resume(); // re-entrant: the loop already running goes on
      return true;
    };
    sink.onEndHook = () => p.resume();
    feed(p, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n3\r\nghi\r\n0\r\n\r\n');
    expect(sink.log).toEqual(['head:200', 'body:abc']);
    p.resume();
    expect(sink.log).toEqual(['head:200', 'body:abc', 'body:def', 'body:ghi', 'end:true']);
    p.resume();
    expect(sink.log).toEqual(['head:200', 'body:abc', 'body:def', 'body:ghi', 'end:true']);
    expect(sink.nested).toBe(0);
  });

  it('eof() from inside onBody does not end the response under the sink, nor past its pause', () => {
    const { p, sink } = setup();
    let eofResult: boolean | null = null;
    sink.bodyResult = (n) => {
      if (n === 1) eofResult = p.eof(); // the close noticed while handing over the body
      return n !== 1;
    };
    feed(p, 'HTTP/1.1 200 OK\r\n\r\nclose-delimited');
    expect(eofResult).toBe(true);
    expect(sink.nested).toBe(0);
    expect(sink.log).toEqual(['head:200', 'body:close-delimited']);
    expect(p.endsAtEof).toBe(true);
    p.resume();
    expect(sink.log).toEqual(['head:200', 'body:close-delimited', 'end:false']);
    expect(sink.nested).toBe(0);
  });

  it('resume() from inside onHead does not deliver anything twice', () => {
    const { p, sink } = setup();
    sink.headResult = () => {
      p.resume();
      return true;
    };
    feed(p, 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc');
    expect(sink.log).toEqual(['head:200', 'body:abc', 'end:true']);
    expect(sink.nested).toBe(0);
  });

  it('a whole chunk held through a pause survives the read buffer being overwritten', () => {
    const { p, sink } = setup();
    sink.bodyResult = (n) => n !== 1;
    const body = 'A'.repeat(100) + 'B'.repeat(100);
    feed(p, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n' + body.slice(0, 100) + '\r\n64\r\n' + body.slice(100) + '\r\n0\r\n\r\n');
    p.resume();
    expect(sink.body).toBe(body);
    expect(sink.ends).toEqual([true]);
  });
});

// ---- eof ----

describe('ResponseParser: eof()', () => {
  it('mid Content-Length body: cut short', () => {
    const { p, sink } = setup();
    feed(p, 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234');
    expect(p.eof()).toBe(false);
    expect(p.endsAtEof).toBe(false);
    expect(sink.ends).toEqual([]);
    expect(p.idle).toBe(false);
  });

  it('mid head: cut short', () => {
    const { p, sink } = setup();
    feed(p, 'HTTP/1.1 200 OK\r\nContent-Len');
    expect(p.eof()).toBe(false);
    expect(sink.log).toEqual([]);
  });

  it('before any byte: cut short', () => {
    const { p } = setup();
    expect(p.eof()).toBe(false);
  });

  it('mid chunked body: cut short', () => {
    const { p, sink } = setup();
    feed(p, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n');
    expect(p.eof()).toBe(false);
    expect(sink.ends).toEqual([]);
  });

  it('chunked body missing only its last CRLF: cut short', () => {
    const { p, sink } = setup();
    feed(p, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n');
    expect(p.eof()).toBe(false);
    expect(sink.ends).toEqual([]);
  });

  it('after a complete response: true, and no second onEnd', () => {
    const { p, sink } = setup();
    feed(p, 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx');
    expect(p.eof()).toBe(true);
    expect(sink.ends).toEqual([true]);
  });

  it('close-delimited: true, onEnd(false)', () => {
    const { p, sink } = setup();
    feed(p, 'HTTP/1.1 200 OK\r\n\r\nall of it');
    expect(sink.ends).toEqual([]);
    expect(p.eof()).toBe(true);
    expect(sink.ends).toEqual([false]);
    expect(sink.body).toBe('all of it');
    expect(p.eof()).toBe(true);
    expect(sink.ends).toEqual([false]);
  });

  it('close-delimited, empty body: true, onEnd(false)', () => {
    const { p, sink } = setup();
    feed(p, 'HTTP/1.1 200 OK\r\n\r\n');
    expect(p.eof()).toBe(true);
    expect(sink.log).toEqual(['head:200', 'end:false']);
  });

  it('paused close-delimited body: onEnd only after resume(), every held byte delivered first', () => {
    const { p, sink } = setup();
    sink.bodyResult = (n) => n !== 1;
    feed(p, 'HTTP/1.1 200 OK\r\n\r\nfirst');
    expect(sink.log).toEqual(['head:200', 'body:first']);
    feed(p, '-second');
    feed(p, '-third');
    expect(p.endsAtEof).toBe(false);
    expect(p.eof()).toBe(true);
    expect(p.endsAtEof).toBe(true);
    expect(sink.log).toEqual(['head:200', 'body:first']);
    expect(p.idle).toBe(false);
    p.resume();
    expect(sink.body).toBe('first-second-third');
    expect(sink.ends).toEqual([false]);
    expect(sink.log[sink.log.length - 1]).toBe('end:false');
    expect(p.idle).toBe(true);
  });

  it('paused close-delimited body that pauses again after eof() still ends once drained', () => {
    const { p, sink } = setup();
    sink.bodyResult = () => false;
    feed(p, 'HTTP/1.1 200 OK\r\n\r\none');
    feed(p, 'two');
    expect(p.eof()).toBe(true);
    p.resume(); // delivers 'two', which pauses again
    expect(sink.log).toEqual(['head:200', 'body:one', 'body:two']);
    expect(sink.ends).toEqual([]);
    p.resume();
    expect(sink.log).toEqual(['head:200', 'body:one', 'body:two', 'end:false']);
  });

  it('paused on the last bytes of a Content-Length body: eof() is not a cut, onEnd comes on resume()', () => {
    const { p, sink } = setup();
    sink.bodyResult = () => false;
    feed(p, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwhole');
    expect(sink.ends).toEqual([]);
    expect(p.eof()).toBe(true);
    expect(p.endsAtEof).toBe(true);
    p.resume();
    expect(sink.log).toEqual(['head:200', 'body:whole', 'end:true']);
  });
});

describe('ResponseParser: HTTP/1.0 framing', () => {
  it('an HTTP/1.0 response with Transfer-Encoding closes the connection even with keep-alive (RFC 9112 §6.1)', () => {
    const { p, sink } = setup();
    feed(p, 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n');
    expect(sink.body).toBe('ok');
    expect(sink.ends).toEqual([false]);
  });
});
