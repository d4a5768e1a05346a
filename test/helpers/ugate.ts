// Start the built ugate (dist/) as a real process on loopback, ports chosen by the kernel.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { onTestFinished } from 'vitest';
import type { BackendRow } from '../../src/backend-admin';

export const ROOT = resolve(__dirname, '..', '..');
export const CLI = resolve(ROOT, 'dist', 'src', 'cli.js');

export interface Ugate {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly adminPort: number;
  readonly url: string;
  readonly adminUrl: string;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Send a signal and wait for the exit code (or signal name). */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
  exited: Promise<number | string>;
  stats(): Promise<Stats>;
  metrics(): Promise<string>;
  /** Resident set size of the whole process (all worker threads), bytes. */
  rss(): number;
}

export interface Stats {
  requests: { total: number; byStatus: Record<string, number>; byRoute: Record<string, number> };
  latencyMs: Record<string, number>;
  workers: { index: number; phase: string; requests: number; inFlight: number; heap: { usedBytes: number; externalBytes: number; limitBytes: number } | null }[];
  workerRestarts: number;
  backends: BackendRow[];
  /** Response cache counters; absent when the cache is off. */
  cache?: Record<string, number>;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startUgate(args: string[], opts: { workers?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Ugate> {
  const argv = [CLI, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--workers', String(opts.workers ?? 2), ...args];
  const proc = spawn(process.execPath, argv, { cwd: ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | string>((res) => proc.once('exit', (code, signal) => res(code ?? signal ?? -1)));
  const ports = await new Promise<{ port: number; adminPort: number }>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`ugate did not start within 10 s:\n${out}`)), 10_000);
    const check = () => {
      const p = /listening on http:\/\/(?:127\.0\.0\.1|\[::\]):(\d+)/.exec(out);
      const a = /admin API on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (p && a) {
        clearTimeout(timer);
        res({ port: Number(p[1]), adminPort: Number(a[1]) });
      }
    };
    proc.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`ugate exited (${code}) before listening:\n${out}`));
    });
  });
  const adminUrl = `http://127.0.0.1:${ports.adminPort}`;
  const u: Ugate = {
    proc,
    pid: proc.pid!,
    ...ports,
    url: `http://127.0.0.1:${ports.port}`,
    adminUrl,
    output: () => out,
    exited,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
    async stats() {
      return (await (await fetch(`${adminUrl}/stats`)).json()) as Stats;
    },
    async metrics() {
      return (await fetch(`${adminUrl}/metrics`)).text();
    },
    rss() {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : 0;
    },
  };
  return u;
}

/** startUgate for one test: stopped when that test ends, passed or failed. */
export async function startUgateForTest(args: string[], opts: { workers?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Ugate> {
  const g = await startUgate(args, opts);
  onTestFinished(async () => {
    await g.stop();
  });
  return g;
}

/** Run the CLI to completion (for flag errors, --help). */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const proc = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}

/** Poll until `check` returns a truthy value (telemetry reaches main every 250 ms). */
export async function eventually<T>(check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  // What the last check returned or threw, so a failure on CI says what it saw.
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms; last check: ${last instanceof Error ? last : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
