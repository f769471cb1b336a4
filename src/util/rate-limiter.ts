/** Token buckets keyed by a source (an address, a dialog): how fast each may go. Time passed in. */

/** A token bucket per source address; idle buckets are forgotten so the table stays small. */
export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; atMs: number }>();
  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly maxSources = 10_000,
  ) {}

  allow(source: string, nowMs: number): boolean {
    let bucket = this.#buckets.get(source);
    if (!bucket) {
      if (this.#buckets.size >= this.maxSources) this.prune(nowMs);
      if (this.#buckets.size >= this.maxSources) return false;
      bucket = { tokens: this.burst, atMs: nowMs };
      this.#buckets.set(source, bucket);
    }
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((nowMs - bucket.atMs) * this.perSecond) / 1000);
    bucket.atMs = nowMs;
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  prune(nowMs: number): void {
    for (const [source, bucket] of this.#buckets)
      if (bucket.tokens + ((nowMs - bucket.atMs) * this.perSecond) / 1000 >= this.burst)
        this.#buckets.delete(source);
  }
}
