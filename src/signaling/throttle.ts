/**
 * Failed-login throttling (issue 16): after `limit` failures from one key (a source address) within
 * `windowMs`, further attempts are refused without checking the password until the oldest of
 * those failures leaves the window. A bounded table: the least recently failed keys go first.
 */

export interface ThrottleInit {
  /** Failures allowed in the window. Default 5 (Kamailio's pike and fail2ban's SIP jails use a handful). */
  readonly limit?: number;
  /** Default 30 000 ms. */
  readonly windowMs?: number;
  /** Keys tracked at once. Default 10 000. */
  readonly maxKeys?: number;
}

export class FailureThrottle {
  readonly #failures = new Map<string, number[]>();
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #maxKeys: number;

  constructor(init: ThrottleInit = {}) {
    this.#limit = init.limit ?? 5;
    this.#windowMs = init.windowMs ?? 30_000;
    this.#maxKeys = init.maxKeys ?? 10_000;
  }

  /** Milliseconds until `key` may try again; 0 when it may now. */
  retryAfterMs(key: string, nowMs: number): number {
    const times = this.#recent(key, nowMs);
    if (times.length < this.#limit) return 0;
    return times[times.length - this.#limit]! + this.#windowMs - nowMs;
  }

  /** Records a failure; true when this one starts a block (log once per burst). */
  fail(key: string, nowMs: number): boolean {
    const times = this.#recent(key, nowMs);
    times.push(nowMs);
    if (times.length > this.#limit) times.splice(0, times.length - this.#limit);
    this.#failures.delete(key);
    this.#failures.set(key, times);
    if (this.#failures.size > this.#maxKeys) {
      const oldest = this.#failures.keys().next().value;
      if (oldest !== undefined) this.#failures.delete(oldest);
    }
    return times.length === this.#limit;
  }

  get size(): number {
    return this.#failures.size;
  }

  #recent(key: string, nowMs: number): number[] {
    const times = this.#failures.get(key);
    if (!times) return [];
    const kept = times.filter((t) => nowMs - t < this.#windowMs);
    if (kept.length === 0) this.#failures.delete(key);
    return kept;
  }
}
