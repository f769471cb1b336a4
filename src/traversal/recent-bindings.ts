/**
 * The STUN server's memory of the Bindings it just answered: transaction ID -> the source it saw
 * (issue 19, a pin read by the server). A gateway that pins opens its rungs and, back to back, sends
 * a Binding whose transaction ID it also puts in its sync; the signaling server, which runs this
 * STUN server, reads the pinned port from it here instead of waiting for the gateway to learn it
 * and say so (one round trip less before the go).
 *
 * Bounded: at most `max` entries, each kept `ttlMs`; a waiter gives up after its own timeout. The
 * clock is passed in.
 */
import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';

export interface RecentBindingsInit {
  /** Entries kept at most; the oldest go first. Default 4096. */
  readonly max?: number;
  /** How long an entry is kept. A sync follows its Binding within a round trip; default 5 s. */
  readonly ttlMs?: number;
  /** Waiters at once at most (each is one sync). Default 256. */
  readonly maxWaiters?: number;
}

export class RecentBindings {
  readonly #entries = new Map<string, { readonly from: Endpoint; readonly atMs: number }>();
  readonly #waiters = new Map<string, (from: Endpoint) => void>();
  readonly #max: number;
  readonly #ttlMs: number;
  readonly #maxWaiters: number;
  readonly #clock: Clock;

  constructor(clock: Clock, init: RecentBindingsInit = {}) {
    this.#clock = clock;
    this.#max = init.max ?? 4096;
    this.#ttlMs = init.ttlMs ?? 5000;
    this.#maxWaiters = init.maxWaiters ?? 256;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The Binding with this transaction ID (hex) was answered, its request seen from `from`. */
  record(transactionId: string, from: Endpoint): void {
    this.#entries.delete(transactionId);
    this.#entries.set(transactionId, { from, atMs: this.#clock.now() });
    while (this.#entries.size > this.#max) this.#entries.delete(this.#entries.keys().next().value!);
    const waiter = this.#waiters.get(transactionId);
    if (waiter) {
      this.#waiters.delete(transactionId);
      waiter(from);
    }
  }

  lookup(transactionId: string): Endpoint | undefined {
    const entry = this.#entries.get(transactionId);
    if (!entry) return undefined;
    if (this.#clock.now() - entry.atMs > this.#ttlMs) {
      this.#entries.delete(transactionId);
      return undefined;
    }
    return entry.from;
  }

  /**
   * The source of that Binding, as soon as it is answered (or at once when it was); undefined
   * after `timeoutMs`, or at once when too many wait already or another waits for the same ID.
   */
  wait(transactionId: string, timeoutMs: number): Promise<Endpoint | undefined> {
    const seen = this.lookup(transactionId);
    if (seen) return Promise.resolve(seen);
    if (this.#waiters.size >= this.#maxWaiters || this.#waiters.has(transactionId))
      return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const timer = this.#clock.setTimeout(() => {
        this.#waiters.delete(transactionId);
        resolve(undefined);
      }, timeoutMs);
      this.#waiters.set(transactionId, (from) => {
        timer.clear();
        resolve(from);
      });
    });
  }
}
