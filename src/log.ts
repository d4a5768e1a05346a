// Plain one-line logs on stderr: time, level, message. Operators grep them; no framework needed.
export type Level = 'info' | 'warn' | 'error';

export function log(level: Level, message: string): void {
  process.stderr.write(`${new Date().toISOString()} ${level} ${message}\n`);
}
