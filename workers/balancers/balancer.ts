// One interface for every balancing algorithm (one module each in this folder, listed in
// registry.ts). The balance stage collects the usable backends first (health, drain, ejection,
// circuit, backups only when every primary is out: candidates.ts), so an algorithm only
// chooses among `candidates`, which is never empty and is reused between requests: a
// balancer must not keep a reference to it.
import type { Exchange } from '../exchange';
import type { RuntimeBackend } from '../worker-state';

export interface Balancer {
  pick(x: Exchange, candidates: readonly RuntimeBackend[]): RuntimeBackend | null;
}

/** 32-bit FNV-1a (as a signed int32; `>>> 0` for the unsigned value). */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h;
}

/** FNV-1a with a murmur3 finaliser (FNV alone clusters similar keys on the ring). */
export function hash32(s: string): number {
  let h = fnv1a(s);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Value of a request header (lower-case name), or null. Hop-by-hop fields are not kept. */
export function requestHeader(x: Exchange, name: string): string | null {
  const h = x.headers;
  for (let i = 0; i < h.length; i += 2) if (h[i] === name) return h[i + 1];
  return null;
}

/** Value of cookie `name` in the request's Cookie header(s), or null. */
export function requestCookie(x: Exchange, name: string): string | null {
  const h = x.headers;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] !== 'cookie') continue;
    const v = h[i + 1];
    let at = 0;
    while (at < v.length) {
      while (v.charCodeAt(at) === 32) at++;
      const end = v.indexOf(';', at);
      const stop = end === -1 ? v.length : end;
      if (v.startsWith(name, at) && v.charCodeAt(at + name.length) === 61 /* = */) return v.slice(at + name.length + 1, stop).trim();
      at = stop + 1;
    }
  }
  return null;
}
