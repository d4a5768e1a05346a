// Prometheus text exposition and the /stats JSON, both from the merged telemetry.
import { DURATION_BUCKETS } from './shared/telemetry-frame';
import { CACHE_COUNTERS, type TelemetryAggregate } from './telemetry';
import type { WorkerPhase } from './supervisor';

export function prometheusText(agg: TelemetryAggregate, phases: readonly WorkerPhase[]): string {
  const out: string[] = [];
  out.push('# HELP ugate_requests_total Requests answered, by route and status (499: client closed first).');
  out.push('# TYPE ugate_requests_total counter');
  for (const [key, n] of [...agg.requests].sort()) {
    const [route, status] = key.split('\u0000');
    out.push(`ugate_requests_total{route="${route}",status="${status}"} ${n}`);
  }
  out.push('# HELP ugate_request_duration_seconds Time from accepting a request to its last response byte handed to the socket.');
  out.push('# TYPE ugate_request_duration_seconds histogram');
  for (const [route, d] of [...agg.durations].sort()) {
    let cumulative = 0;
    DURATION_BUCKETS.forEach((le, i) => {
      cumulative += d.buckets[i];
      out.push(`ugate_request_duration_seconds_bucket{route="${route}",le="${le}"} ${cumulative}`);
    });
    out.push(`ugate_request_duration_seconds_bucket{route="${route}",le="+Inf"} ${d.count}`);
    out.push(`ugate_request_duration_seconds_sum{route="${route}"} ${d.sum}`);
    out.push(`ugate_request_duration_seconds_count{route="${route}"} ${d.count}`);
  }
  out.push('# HELP ugate_in_flight_requests Requests sent upstream and not yet finished, at the last telemetry frame.');
  out.push('# TYPE ugate_in_flight_requests gauge');
  out.push(`ugate_in_flight_requests ${agg.workerInFlight.reduce((a, b) => a + (b ?? 0), 0)}`);
  // Per worker: its L1 cache, requests and pools live on its own V8 heap, under its own limit.
  out.push('# HELP ugate_worker_heap_bytes V8 heap of a proxy worker at its last telemetry frame: used, external (Buffers: bodies, cached bodies) and limit.');
  out.push('# TYPE ugate_worker_heap_bytes gauge');
  agg.workerHeap.forEach((h, w) => {
    if (!h) return;
    out.push(`ugate_worker_heap_bytes{worker="${w}",kind="used"} ${h[0]}`, `ugate_worker_heap_bytes{worker="${w}",kind="external"} ${h[1]}`, `ugate_worker_heap_bytes{worker="${w}",kind="limit"} ${h[2]}`);
  });
  out.push('# HELP ugate_workers Proxy worker threads by phase.');
  out.push('# TYPE ugate_workers gauge');
  for (const phase of ['starting', 'listening', 'draining', 'exited'] as const) {
    out.push(`ugate_workers{phase="${phase}"} ${phases.filter((p) => p === phase).length}`);
  }
  out.push('# HELP ugate_worker_restarts_total Proxy workers that died and were replaced.');
  out.push('# TYPE ugate_worker_restarts_total counter');
  out.push(`ugate_worker_restarts_total ${agg.workerRestarts}`);
  out.push('# HELP ugate_telemetry_dropped_frames_total Telemetry frames dropped because a ring was full.');
  out.push('# TYPE ugate_telemetry_dropped_frames_total counter');
  out.push(`ugate_telemetry_dropped_frames_total ${agg.telemetryDropped}`);
  if (agg.cache !== null) cacheMetrics(agg, out);
  return out.join('\n') + '\n';
}

export function statsJson(agg: TelemetryAggregate, phases: readonly WorkerPhase[], startedAt: number): object {
  const byStatus: Record<string, number> = {};
  const byRoute: Record<string, number> = {};
  for (const [key, n] of agg.requests) {
    const [route, status] = key.split('\u0000');
    byStatus[status] = (byStatus[status] ?? 0) + n;
    byRoute[route] = (byRoute[route] ?? 0) + n;
  }
  const h = agg.latency;
  const ms = (micros: number) => Math.round(micros) / 1000;
  return {
    uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
    requests: { total: agg.total, byStatus, byRoute },
    latencyMs: {
      count: h.totalCount,
      p50: ms(h.getValueAtPercentile(50)),
      p90: ms(h.getValueAtPercentile(90)),
      p99: ms(h.getValueAtPercentile(99)),
      'p99.9': ms(h.getValueAtPercentile(99.9)),
      max: ms(h.maxValue),
      mean: ms(h.mean),
    },
    workers: phases.map((phase, index) => ({
      index,
      phase,
      requests: agg.workerRequests[index] ?? 0,
      inFlight: agg.workerInFlight[index] ?? 0,
      heap: heapJson(agg.workerHeap[index] ?? null),
    })),
    workerRestarts: agg.workerRestarts,
    telemetryDroppedFrames: agg.telemetryDropped,
    ...(agg.cache !== null ? { cache: cacheStats(agg) } : {}),
  };
}

const CACHE_HELP: Record<(typeof CACHE_COUNTERS)[number], [string, string]> = {
  hits: ['ugate_cache_hits_total', 'Requests answered from a fresh cache entry.'],
  l2Hits: ['ugate_cache_l2_hits_total', 'Of the hits, those found in the L2 (Redis) cache.'],
  misses: ['ugate_cache_misses_total', 'Cacheable requests that went upstream.'],
  stale: ['ugate_cache_stale_total', 'Requests answered from a stale entry (stale-while-revalidate, stale-if-error).'],
  revalidated: ['ugate_cache_revalidated_total', 'Stale entries refreshed by a 304 from the origin.'],
  coalesced: ['ugate_cache_coalesced_total', 'Requests that waited for a concurrent identical request instead of going upstream.'],
  stored: ['ugate_cache_stored_total', 'Responses written into the cache.'],
  evictions: ['ugate_cache_evictions_total', 'Entries evicted to stay under cache-size.'],
  purged: ['ugate_cache_purged_total', 'Entries removed by POST /cache/purge.'],
  l2Errors: ['ugate_cache_l2_errors_total', 'Failed or timed-out L2 (Redis) operations.'],
};

function cacheSize(agg: TelemetryAggregate): { bytes: number; entries: number; waiting: number } {
  let bytes = 0;
  let entries = 0;
  let waiting = 0;
  for (const s of agg.cacheSize) {
    if (!s) continue;
    bytes += s[0];
    entries += s[1];
    waiting += s[2];
  }
  return { bytes, entries, waiting };
}

function cacheMetrics(agg: TelemetryAggregate, out: string[]): void {
  const c = agg.cache!;
  for (const k of CACHE_COUNTERS) {
    const [name, help] = CACHE_HELP[k];
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`, `${name} ${c[k]}`);
  }
  const size = cacheSize(agg);
  out.push('# HELP ugate_cache_bytes Bytes held by the L1 caches of all workers.', '# TYPE ugate_cache_bytes gauge', `ugate_cache_bytes ${size.bytes}`);
  out.push('# HELP ugate_cache_entries Entries in the L1 caches of all workers.', '# TYPE ugate_cache_entries gauge', `ugate_cache_entries ${size.entries}`);
  out.push('# HELP ugate_cache_waiting Requests waiting on a concurrent identical request (coalesced), all workers.', '# TYPE ugate_cache_waiting gauge', `ugate_cache_waiting ${size.waiting}`);
}

function cacheStats(agg: TelemetryAggregate): object {
  return { ...agg.cache!, ...cacheSize(agg) };
}

function heapJson(h: readonly [number, number, number] | null): { usedBytes: number; externalBytes: number; limitBytes: number } | null {
  return h === null ? null : { usedBytes: h[0], externalBytes: h[1], limitBytes: h[2] };
}
