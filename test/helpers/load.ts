// Bounded client load: `total` requests over `concurrency` keep-alive connections.
import { Agent, request } from 'undici';

export interface LoadResult {
  statuses: Map<number, number>;
  errors: string[];
  failed: number;
}

export async function load(
  url: string,
  total: number,
  opts: { concurrency?: number; path?: (i: number) => string; headers?: (i: number) => Record<string, string>; onDone?: (done: number) => void } = {},
): Promise<LoadResult> {
  const agent = new Agent({ connections: opts.concurrency ?? 4 });
  const statuses = new Map<number, number>();
  const errors: string[] = [];
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      try {
        const res = await request(url + (opts.path?.(i) ?? '/'), { dispatcher: agent, headers: opts.headers?.(i) });
        await res.body.dump();
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      } catch (err) {
        errors.push(String(err));
      }
      opts.onDone?.(++done);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 4 }, worker));
  await agent.close();
  let failed = errors.length;
  for (const [s, n] of statuses) if (s !== 200) failed += n;
  return { statuses, errors, failed };
}

/** How many requests each origin saw, in order. */
export function counts(origins: { seen: unknown[] }[]): number[] {
  return origins.map((o) => o.seen.length);
}
