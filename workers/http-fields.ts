// HTTP facts the stages, the cache and the upstream client share, defined once.
import { STATUS_CODES } from 'node:http';

/** What ugate appends to Via, on requests and on responses. */
export const VIA = '1.1 ugate';

/** Response fields never forwarded to a client: hop-by-hop ones (RFC 9110 §7.6.1), and the
 * two uWS always writes itself (Date, Content-Length), which would otherwise appear twice. */
export const RESPONSE_HOP_FIELDS = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length', 'date', 'proxy-authenticate'];

/** Methods that may be sent twice without harm (RFC 9110 §9.2.2): retries to another backend
 * (retry.ts) and re-sends after a stale keep-alive connection (upstream-pool). */
export function isIdempotent(method: string): boolean {
  switch (method) {
    case 'GET':
    case 'HEAD':
    case 'PUT':
    case 'DELETE':
    case 'OPTIONS':
    case 'TRACE':
      return true;
    default:
      return false;
  }
}

/** The field names a Connection header value lists, lower-cased, added to `into`: those
 * fields are hop-by-hop too (RFC 9110 §7.6.1). "close" and "keep-alive" are options, not
 * field names. Returns `into`, or null when nothing was listed and `into` was null. */
export function connectionNamed(value: string, into: string[] | null): string[] | null {
  for (const raw of value.toLowerCase().split(',')) {
    const n = raw.trim();
    if (n !== '' && n !== 'close' && n !== 'keep-alive') (into ??= []).push(n);
  }
  return into;
}

/** Case-insensitive compare of the bytes at `from` with a lower-case field name (the caller
 * checks the length). OR 0x20 lower-cases letters and leaves "-" (0x2d) unchanged. */
export function equalsLower(data: Buffer, from: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) if ((data[from + i] | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

/** A control character a field value or reason phrase may not hold: all below 0x20 but HTAB,
 * and DEL (RFC 9110 §5.5, RFC 9112 §4). */
export function isControl(c: number): boolean {
  return c < 0x20 ? c !== 0x09 : c === 0x7f;
}

/** The reason phrase forwardableStatus last found clean: nearly every answer repeats one
 * ("OK"), so the check is mostly a string compare. */
let cleanReason = 'OK';

/** A status line ugate may pass on to a client: a status in 100-599 (600-999 are not HTTP
 * status codes, RFC 9110 §15, and clients may choke on them) and a reason phrase of HTAB, SP,
 * VCHAR and obs-text only (RFC 9112 §4). The lean client's parser refuses other heads itself;
 * undici hands over 600-999 (and a 099 as 99) and control characters such as ESC and NUL in
 * the reason, so stream-back checks what either client delivers. No regex: a range check and,
 * for a reason phrase not seen last, a loop over its few characters. */
export function forwardableStatus(status: number, reason: string): boolean {
  if (status < 100 || status > 599) return false;
  if (reason === cleanReason) return true;
  for (let i = 0; i < reason.length; i++) if (isControl(reason.charCodeAt(i))) return false;
  cleanReason = reason;
  return true;
}

const STATUS_LINES = new Map<number, string>();

/** The last status line statusLineOut found plain ASCII: nearly every answer repeats one (the
 * same interned string from statusLine), so the check is a compare, not a regex per answer. */
let asciiLine = '200 OK';

/** A status line as uWS writeStatus must get it. uWS writes a string as UTF-8, which would turn
 * an obs-text byte (0x80-0xff) of a latin-1 reason phrase into two: such a line goes as the
 * bytes the backend sent. */
export function statusLineOut(line: string): string | Buffer {
  if (line === asciiLine) return line;
  if (/[^\x00-\x7f]/.test(line)) return Buffer.from(line, 'latin1');
  asciiLine = line;
  return line;
}

/** "200 OK": the backend's reason phrase when it has its own, the standard one (cached) when
 * it has none or the same. */
export function statusLine(status: number, text: string): string {
  const standard = STATUS_CODES[status];
  if (text === '' || text === standard) {
    let line = STATUS_LINES.get(status);
    if (line === undefined) {
      line = `${status} ${standard ?? 'Unknown'}`;
      STATUS_LINES.set(status, line);
    }
    return line;
  }
  return `${status} ${text}`;
}

/** A field value has bytes outside visible ASCII (tab allowed): it needs fieldBytes. */
export const NON_ASCII_VALUE = /[^\t\x20-\x7e]/;

/** A client's field value as the bytes it sent, or null when that cannot be: uWS hands over
 * UTF-8-decoded strings and the upstream clients write heads as latin1, so non-ASCII is
 * re-encoded; control bytes, or invalid UTF-8 (already U+FFFD in uWS, unrecoverable), are a
 * 400. The one rule for forwarded fields and for those ugate rewrites (Via, X-Forwarded-*). */
export function fieldBytes(v: string): string | null {
  if (!NON_ASCII_VALUE.test(v)) return v;
  if (/[\x00-\x08\x0a-\x1f\x7f\ufffd]/.test(v)) return null;
  return Buffer.from(v, 'utf8').toString('latin1');
}
