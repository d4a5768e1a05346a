// A proxy worker thread: its own uWS app on the shared listen port (SO_REUSEPORT: the kernel
// spreads accepted connections), its own undici pools, its own telemetry.
// Talks to the main thread through two rings: telemetry out, control in.
import { getHeapStatistics } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import uWS from 'uWebSockets.js';
import type { GatewayConfig } from '../src/config/config';
import { RingReader, RingWriter } from '../src/shared/ring';
import { TELEMETRY_INTERVAL_MS, type ControlFrame } from '../src/shared/telemetry-frame';
import { BackendTable, type BackendRows } from '../src/shared/backend-table';
import { applyReload } from './reload';
import { WorkerCache } from './cache/cache';
import { handleRequest } from './pipeline';
import { RetryBudget } from './retry-budget';
import { configState, type WorkerState } from './worker-state';

export interface WorkerInit {
  readonly index: number;
  readonly config: GatewayConfig;
  /** The port to bind: the configured one, or the one the first worker got for port 0. */
  readonly port: number;
  readonly telemetryRing: SharedArrayBuffer;
  readonly controlRing: SharedArrayBuffer;
  /** The per-backend table (src/shared/backend-table.ts), shared by main and every worker. */
  readonly backendTable: SharedArrayBuffer;
  /** Row of each backend in that table (after a reload, main's allocator decides). */
  readonly backendRows: BackendRows;
  /** Config generation (0 at start, +1 per reload). */
  readonly gen: number;
}

/** Messages to the main thread outside the rings: lifecycle events, once each. */
export type WorkerEvent =
  | { type: 'listening'; port: number; heapLimitBytes: number }
  | { type: 'listen-failed'; reason: string }
  | { type: 'drained' }
  | { type: 'cache-purged'; id: number; removed: number };

const init = workerData as WorkerInit;
const backendTable = new BackendTable(init.backendTable);
const state: WorkerState = {
  index: init.index,
  ...configState(init.config, backendTable, init.index, init.backendRows, init.gen),
  draining: false,
  inFlight: 0,
  backendTable,
  retryBudget: new RetryBudget(),
  cache: init.config.cache === null ? null : new WorkerCache(init.config.cache, init.index),
};
const telemetryOut = new RingWriter(init.telemetryRing);
const controlIn = new RingReader(init.controlRing);
let listenSocket: uWS.us_listen_socket | null = null;
let stopped = false;

const app = uWS.App().any('/*', (res, req) => handleRequest(res, req, state));

// Test-only fault injection: a request for this exact path throws inside the worker, so the
// tests can exercise crash handling and replacement end to end. An exact uWS route, so the
// proxy path pays nothing for it; never set it in production.
const crashPath = process.env.UGATE_TEST_CRASH_PATH;
if (crashPath) {
  app.get(crashPath, () => {
    throw new Error(`injected crash (UGATE_TEST_CRASH_PATH=${crashPath})`);
  });
}

app.listen(init.config.listen.host, init.port, (socket) => {
  if (!socket) {
    send({ type: 'listen-failed', reason: `cannot listen on ${init.config.listen.host}:${init.port}` });
    return;
  }
  listenSocket = socket;
  const port = uWS.us_socket_local_port(socket);
  if (state.cache) {
    const host = init.config.listen.host === '0.0.0.0' || init.config.listen.host === '::' ? '127.0.0.1' : init.config.listen.host;
    state.cache.warm(state, host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);
  }
  send({ type: 'listening', port, heapLimitBytes: getHeapStatistics().heap_size_limit });
});

const telemetryTimer = setInterval(flushTelemetry, TELEMETRY_INTERVAL_MS);
void controlLoop();

function flushTelemetry(): void {
  // A full ring drops the frame (counted by the ring); the data path never waits for main.
  const h = getHeapStatistics();
  const frame = state.telemetry.takeFrame(state.inFlight, [h.used_heap_size, h.external_memory, h.heap_size_limit]);
  telemetryOut.write(state.cache ? { ...frame, cache: state.cache.takeTelemetry() } : frame);
}

async function controlLoop(): Promise<void> {
  while (!stopped) {
    await controlIn.waitAsync(1000);
    controlIn.drain(onControl);
  }
}

function onControl(message: unknown): void {
  const frame = message as ControlFrame;
  if (frame.t === 'cache-purge') {
    const removed = state.cache ? state.cache.purge(frame.url !== undefined ? { url: frame.url } : { prefix: frame.prefix ?? '/' }) : 0;
    send({ type: 'cache-purged', id: frame.id, removed });
  } else if (frame.t === 'drain') void drain();
  // The drain deadline passed: closing every socket aborts what is still in flight.
  else if (frame.t === 'close-now') closeApp();
  else if (frame.t === 'reload') void applyReload(state, frame, flushTelemetry);
}

function closeApp(): void {
  // app.close() (not in this build's typings, present in its binary) closes idle keep-alive
  // sockets too; without it the thread would live until uWS's 10 s idle timeout, and any
  // forced exit while a uWS socket is open aborts the process (uv_loop_close assertion).
  (app as unknown as { close(): void }).close();
}

/** Stop accepting, let in-flight exchanges finish (main enforces the deadline), then close. */
async function drain(): Promise<void> {
  if (state.draining) return;
  state.draining = true;
  if (listenSocket) uWS.us_listen_socket_close(listenSocket);
  listenSocket = null;
  while (state.inFlight > 0) await new Promise((r) => setTimeout(r, 20));
  closeApp();
  clearInterval(telemetryTimer);
  flushTelemetry();
  stopped = true;
  // The Redis connection would keep this thread alive.
  state.cache?.close();
  await Promise.all(state.routes.flatMap((r) => r.backends.map((b) => b.pool.close())));
  send({ type: 'drained' });
}

// A thread that ends while a uWS socket is open aborts the whole process (uv_loop_close
// assertion), so a crash must close every uWS socket first; main then replaces this worker.
process.on('uncaughtException', (err) => {
  process.stderr.write(`${new Date().toISOString()} error worker ${init.index} uncaught exception: ${err.stack ?? err}\n`);
  stopped = true;
  clearInterval(telemetryTimer);
  try {
    // The answers since the last frame (up to 250 ms of them) are counted nowhere else; main
    // drains this ring once more when the thread has exited.
    flushTelemetry();
  } catch (flushErr) {
    process.stderr.write(`${new Date().toISOString()} error worker ${init.index} last telemetry frame lost: ${flushErr}\n`);
  }
  try {
    closeApp();
  } finally {
    // uWS finishes closing its sockets on the next loop turn.
    setImmediate(() => process.exit(1));
  }
});

function send(event: WorkerEvent): void {
  parentPort!.postMessage(event);
}
