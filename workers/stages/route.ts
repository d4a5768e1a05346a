// Stage "route": pick the route whose host and path prefix match (most specific first). 404 if none.
import { E } from '../../src/shared/errors';
import type { Exchange } from '../exchange';

export function route(x: Exchange): number {
  const routes = x.worker.routes;
  const path = x.target;
  let host: string | null = null;
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i];
    const want = r.config.host;
    if (want !== null) {
      if (host === null) host = hostWithoutPort(x.host);
      if (want.startsWith('*.') ? !host.endsWith(want.slice(1)) : host !== want) continue;
    }
    if (matchesPrefix(path, r.config.path)) {
      x.route = r;
      return 0;
    }
  }
  return E.NO_ROUTE;
}

function matchesPrefix(path: string, prefix: string): boolean {
  if (prefix === '/') return true;
  if (!path.startsWith(prefix)) return false;
  const next = path.charCodeAt(prefix.length);
  // Match on segment boundaries: "/api" takes "/api", "/api/x", "/api?q", not "/apix".
  return Number.isNaN(next) || next === 47 /* / */ || next === 63 /* ? */;
}

function hostWithoutPort(host: string): string {
  const h = host.toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.indexOf(':');
  return colon === -1 ? h : h.slice(0, colon);
}
