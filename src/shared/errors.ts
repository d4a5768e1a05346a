// Every error ugate answers with, defined once: a stable code, the HTTP status it maps to,
// where it came from, and whether the request may be retried on another backend.
// Errors cross threads as these numeric ids, never as Error objects.

export type ErrorSource = 'client' | 'upstream' | 'internal';

export interface ErrorSpec {
  readonly code: string;
  readonly status: number;
  readonly reason: string;
  readonly source: ErrorSource;
  readonly retryable: boolean;
}

export const ERRORS = [
  { code: 'UGATE_ERR_NONE', status: 200, reason: '', source: 'internal', retryable: false },
  { code: 'UGATE_ERR_BAD_REQUEST', status: 400, reason: 'malformed request', source: 'client', retryable: false },
  { code: 'UGATE_ERR_MISSING_HOST', status: 400, reason: 'missing Host header', source: 'client', retryable: false },
  { code: 'UGATE_ERR_DUPLICATE_HOST', status: 400, reason: 'more than one Host header', source: 'client', retryable: false },
  { code: 'UGATE_ERR_BAD_HOST', status: 400, reason: 'invalid Host header', source: 'client', retryable: false },
  { code: 'UGATE_ERR_BAD_CONTENT_LENGTH', status: 400, reason: 'invalid or conflicting Content-Length', source: 'client', retryable: false },
  { code: 'UGATE_ERR_BAD_TARGET', status: 400, reason: 'invalid request-target', source: 'client', retryable: false },
  { code: 'UGATE_ERR_BAD_HEADER', status: 400, reason: 'invalid header value', source: 'client', retryable: false },
  { code: 'UGATE_ERR_BODY_LENGTH_MISMATCH', status: 400, reason: 'request body does not match Content-Length', source: 'client', retryable: false },
  { code: 'UGATE_ERR_NO_ROUTE', status: 404, reason: 'no route for this host and path', source: 'client', retryable: false },
  { code: 'UGATE_ERR_BODY_TOO_LARGE', status: 413, reason: 'request body larger than max-body-size', source: 'client', retryable: false },
  { code: 'UGATE_ERR_HEADERS_TOO_LARGE', status: 431, reason: 'request header block larger than max-header-size', source: 'client', retryable: false },
  { code: 'UGATE_ERR_UNSUPPORTED_TRANSFER_CODING', status: 501, reason: 'unsupported Transfer-Encoding', source: 'client', retryable: false },
  { code: 'UGATE_ERR_UNSUPPORTED_METHOD', status: 501, reason: 'method not supported', source: 'client', retryable: false },
  { code: 'UGATE_ERR_UPSTREAM_CONNECT', status: 502, reason: 'upstream connection failed', source: 'upstream', retryable: true },
  { code: 'UGATE_ERR_UPSTREAM_RESET', status: 502, reason: 'upstream closed the connection before responding', source: 'upstream', retryable: true },
  { code: 'UGATE_ERR_UPSTREAM_BAD_RESPONSE', status: 502, reason: 'upstream sent an invalid response', source: 'upstream', retryable: false },
  { code: 'UGATE_ERR_NO_BACKEND', status: 503, reason: 'no backend available', source: 'internal', retryable: false },
  { code: 'UGATE_ERR_UPSTREAM_CONNECT_TIMEOUT', status: 504, reason: 'upstream connect timed out', source: 'upstream', retryable: true },
  { code: 'UGATE_ERR_UPSTREAM_HEADERS_TIMEOUT', status: 504, reason: 'upstream did not send headers in time', source: 'upstream', retryable: false },
  { code: 'UGATE_ERR_NOT_CACHED', status: 504, reason: 'not in the cache (only-if-cached)', source: 'client', retryable: false },
  { code: 'UGATE_ERR_INTERNAL', status: 500, reason: 'internal gateway error', source: 'internal', retryable: false },
] as const satisfies readonly ErrorSpec[];

export type ErrorCode = (typeof ERRORS)[number]['code'];

/** Numeric id of each code (its index in ERRORS): what stages return and threads exchange. */
export const E = Object.freeze(
  Object.fromEntries(ERRORS.map((spec, i) => [spec.code.slice('UGATE_ERR_'.length), i])),
) as { readonly [K in ErrorCode as K extends `UGATE_ERR_${infer N}` ? N : never]: number };

export function errorSpec(id: number): ErrorSpec {
  return ERRORS[id] ?? ERRORS[E.INTERNAL];
}

/** Operator-facing error: bad flag, bad config field. `field` names what to fix. */
export class ConfigError extends Error {
  readonly code = 'UGATE_ERR_CONFIG';
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'ConfigError';
  }
}
