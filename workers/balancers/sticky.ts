// sticky: the first response pins the client to a backend with a cookie (ugate_sticky, set
// by stream-back from x.stickyCookie); later requests carrying it go to the same backend while
// it is usable, and are re-pinned (round robin, new cookie) when it is not.
import type { Exchange } from '../exchange';
import { STICKY_COOKIE, type RuntimeBackend } from '../worker-state';
import { requestCookie, type Balancer } from './balancer';

export class StickyBalancer implements Balancer {
  private next = 0;

  pick(x: Exchange, candidates: readonly RuntimeBackend[]): RuntimeBackend | null {
    const n = candidates.length;
    if (n === 0) return null;
    const id = requestCookie(x, STICKY_COOKIE);
    if (id !== null) {
      for (let i = 0; i < n; i++) if (candidates[i].stickyId === id) return candidates[i];
    }
    if (this.next >= n) this.next = 0;
    const b = candidates[this.next++];
    x.stickyCookie = b.stickyCookie;
    return b;
  }
}
