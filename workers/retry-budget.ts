// Retry budget, per worker: retries may be at most `percent`% of the requests seen over the
// last 10 s (ten 1-second buckets), plus a floor of MIN_RETRIES so a quiet worker can still
// retry. Under a total outage this caps the extra load ugate adds at the budget, instead of
// multiplying every request by (1 + retries).
const BUCKETS = 10;
const BUCKET_MS = 1000;
const MIN_RETRIES = 10;

export class RetryBudget {
  private readonly requests = new Int32Array(BUCKETS);
  private readonly retries = new Int32Array(BUCKETS);
  private bucket = 0;
  private bucketStart = 0;

  noteRequest(now: number): void {
    this.advance(now);
    this.requests[this.bucket]++;
  }

  /** Take a retry from the budget if there is one left. */
  tryRetry(now: number, percent: number): boolean {
    this.advance(now);
    let req = 0;
    let ret = 0;
    for (let i = 0; i < BUCKETS; i++) {
      req += this.requests[i];
      ret += this.retries[i];
    }
    if (ret >= MIN_RETRIES && ret * 100 >= req * percent) return false;
    this.retries[this.bucket]++;
    return true;
  }

  private advance(now: number): void {
    if (now - this.bucketStart < BUCKET_MS) return;
    const steps = Math.min(BUCKETS, Math.floor((now - this.bucketStart) / BUCKET_MS));
    for (let i = 0; i < steps; i++) {
      this.bucket = (this.bucket + 1) % BUCKETS;
      this.requests[this.bucket] = 0;
      this.retries[this.bucket] = 0;
    }
    this.bucketStart = now - ((now - this.bucketStart) % BUCKET_MS);
  }
}
