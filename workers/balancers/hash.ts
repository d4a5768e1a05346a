// hash: consistent hashing on a key (client IP, a header or a cookie) over a ring of virtual
// nodes (VNODES × weight points per backend). A key goes to the first point clockwise whose
// backend is a candidate, so when one of N backends is out only its ≈1/N of the keys move.
// A request without the key (no such header/cookie) hashes the client IP instead.
import type { BalancingConfig } from '../../src/config/config';
import type { Exchange } from '../exchange';
import type { RuntimeBackend } from '../worker-state';
import { hash32, requestCookie, requestHeader, type Balancer } from './balancer';

const VNODES = 160;
const KEY_IP = 0;
const KEY_HEADER = 1;
const KEY_COOKIE = 2;

export class HashBalancer implements Balancer {
  private readonly points: Uint32Array;
  private readonly owners: Uint16Array;
  /** Candidate marks for the current pick: mark[i] === generation means "usable". */
  private readonly mark: Uint32Array;
  private generation = 0;
  private readonly keyKind: number;
  private readonly keyName: string;

  constructor(backends: readonly RuntimeBackend[], lb: BalancingConfig) {
    const key = lb.hashKey;
    this.keyKind = key === 'ip' ? KEY_IP : key.startsWith('header:') ? KEY_HEADER : KEY_COOKIE;
    this.keyName = key.slice(key.indexOf(':') + 1);
    const pts: { p: number; o: number }[] = [];
    for (const b of backends) {
      for (let v = 0; v < VNODES * b.config.weight; v++) pts.push({ p: hash32(`${b.config.url}#${v}`), o: b.index });
    }
    pts.sort((a, b) => a.p - b.p || a.o - b.o);
    this.points = Uint32Array.from(pts, (x) => x.p);
    this.owners = Uint16Array.from(pts, (x) => x.o);
    this.mark = new Uint32Array(backends.length);
  }

  pick(x: Exchange, candidates: readonly RuntimeBackend[]): RuntimeBackend | null {
    if (candidates.length === 0) return null;
    if (candidates.length === 1) return candidates[0];
    return this.lookup(hash32(this.key(x)), candidates);
  }

  key(x: Exchange): string {
    if (this.keyKind === KEY_IP) return x.peer;
    const v = this.keyKind === KEY_HEADER ? requestHeader(x, this.keyName) : requestCookie(x, this.keyName);
    return v ?? x.peer;
  }

  lookup(h: number, candidates: readonly RuntimeBackend[]): RuntimeBackend | null {
    const gen = (this.generation = (this.generation + 1) >>> 0 || 1);
    const mark = this.mark;
    for (let i = 0; i < candidates.length; i++) mark[candidates[i].index] = gen;
    const points = this.points;
    const n = points.length;
    // First point >= h (binary search), then clockwise to the first candidate.
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid] < h) lo = mid + 1;
      else hi = mid;
    }
    for (let k = 0; k < n; k++) {
      const owner = this.owners[(lo + k) % n];
      if (mark[owner] === gen) {
        for (let i = 0; i < candidates.length; i++) if (candidates[i].index === owner) return candidates[i];
      }
    }
    return null;
  }
}
