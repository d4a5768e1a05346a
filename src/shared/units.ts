// Parsers for the human units accepted by flags and YAML ("500ms", "16kb").
// They return undefined on bad input so the caller can name the field in its error.

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Record<string, number> = {
  b: 1, kb: 1024, k: 1024, kib: 1024, mb: 1024 ** 2, m: 1024 ** 2, mib: 1024 ** 2,
  gb: 1024 ** 3, g: 1024 ** 3, gib: 1024 ** 3,
};

const UNIT_RE = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/;

/** Milliseconds from "250ms", "5s", "1.5m", "1h"; a bare number is milliseconds. */
export function parseDuration(input: unknown): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? Math.round(input) : undefined;
  if (typeof input !== 'string') return undefined;
  const m = UNIT_RE.exec(input.trim().toLowerCase());
  if (!m) return undefined;
  const factor = m[2] === '' ? 1 : DURATION_UNITS[m[2]];
  if (factor === undefined) return undefined;
  return Math.round(Number(m[1]) * factor);
}

/** Bytes from "16kb", "1mb", "2g"; a bare number is bytes. Units are binary (1kb = 1024). */
export function parseSize(input: unknown): number | undefined {
  if (typeof input === 'number') return Number.isSafeInteger(input) && input >= 0 ? input : undefined;
  if (typeof input !== 'string') return undefined;
  const m = UNIT_RE.exec(input.trim().toLowerCase());
  if (!m) return undefined;
  const factor = m[2] === '' ? 1 : SIZE_UNITS[m[2]];
  if (factor === undefined) return undefined;
  const bytes = Math.floor(Number(m[1]) * factor);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

export function formatBytes(n: number): string {
  if (n >= 1024 ** 3 && n % 1024 ** 3 === 0) return `${n / 1024 ** 3}gb`;
  if (n >= 1024 ** 2 && n % 1024 ** 2 === 0) return `${n / 1024 ** 2}mb`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024}kb`;
  return `${n}b`;
}

export function formatDuration(ms: number): string {
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
