// Stage "route": pick the route whose host and path prefix match (most specific first). 404 if none.
import { E } from '../../src/shared/errors';
import type { Exchange } from '../exchange';

export function route(x: Exchange): number {
  const routes = x.worker.routes;
  const path = routingPath(x.target);
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

/** `x` was routed under a config that a reload has since replaced. */
export function routedBeforeReload(x: Exchange): boolean {
  return x.route !== null && x.worker.routes[x.route.index] !== x.route;
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

// Routes match the path the backend will serve: "." and ".." segments (also as %2e) resolved
// and repeated slashes merged, as nginx matches its locations. Before, "/api/../secret" went
// to the /api backend, which resolves it to its own /secret: a way out of a route's prefix.
// Only the matching uses this; the target is still forwarded byte for byte.
const MAY_RESOLVE = /\/\.|\/\/|%2e/i;

function routingPath(target: string): string {
  // One scan for the common case; a match in the query only costs the slow path.
  if (!MAY_RESOLVE.test(target)) return target;
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  const segs = path.replace(/%2e/gi, '.').split('/');
  const out: string[] = [];
  for (let i = 1; i < segs.length; i++) {
    const s = segs[i];
    const last = i === segs.length - 1;
    if (s === '..') out.pop();
    else if (s !== '.' && s !== '') out.push(s);
    // A path ending in "/", "/." or "/.." names a directory: keep its trailing slash.
    if (last && (s === '..' || s === '.' || s === '')) out.push('');
  }
  return '/' + out.join('/') + (q === -1 ? '' : target.slice(q));
}
