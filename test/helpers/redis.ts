// A real redis-server on a free loopback port, started and stopped by the test.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { closedPort } from './origin';

export const HAS_REDIS = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim() !== '';

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  proc: ChildProcess;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
  /** Start again on the same port. */
  restart(): Promise<void>;
}

export async function startRedis(port?: number): Promise<RedisServer> {
  const p = port ?? (await closedPort());
  const launch = async (): Promise<ChildProcess> => {
    const proc = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(p))) {
      if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`redis-server did not start on ${p}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return proc;
  };
  const server: RedisServer = {
    port: p,
    url: `redis://127.0.0.1:${p}`,
    proc: await launch(),
    async kill() {
      const proc = server.proc;
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGKILL');
      await exited;
    },
    async restart() {
      server.proc = await launch();
    },
  };
  return server;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
