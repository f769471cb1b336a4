/**
 * The SC2C coordinator (paper §2.3, steps 17-19, carried further): it keeps each registered
 * party's round trip on its own signaling connection fresh, and on a sync sends the two go
 * messages so that they arrive together. Transport-free: it sends through `request`.
 */

import type { Clock, Timer } from '../net/clock.ts';
import type { SyncFields } from '../protocol/sc2c-info.ts';

export interface GoSchedule {
  readonly callId: string;
  readonly rttMs: { readonly caller: number; readonly callee: number };
  /** Delay before each go was sent; the nearer party waits for the farther one. */
  readonly delayMs: { readonly caller: number; readonly callee: number };
}

export interface CoordinatorInit<C> {
  readonly clock: Clock;
  /** Sends OPTIONS (`body` empty) or the go INFO on a connection; resolves on its final answer. */
  readonly request: (
    connection: C,
    method: 'OPTIONS' | 'INFO',
    callId: string,
    body?: string,
  ) => Promise<unknown>;
  /**
   * Re-measure each registered party's round trip this often, so a sync can use a fresh figure
   * instead of measuring while both parties wait (which gives ports more time to move). Default
   * 20 000 ms; figures older than 3 periods are measured again at sync time.
   */
  readonly rttRefreshMs?: number;
  /** Go schedules kept for inspection. Default 1000; older ones are dropped. */
  readonly maxSchedules?: number;
}

interface RttEntry {
  rttMs?: number;
  atMs: number;
  timer?: Timer;
}

export class Coordinator<C> {
  readonly schedules: GoSchedule[] = [];
  readonly #rtts = new Map<C, RttEntry>();
  readonly #timers = new Set<Timer>();
  #serial = 0;

  constructor(private readonly init: CoordinatorInit<C>) {}

  get #refreshMs(): number {
    return this.init.rttRefreshMs ?? 20_000;
  }

  /** Starts measuring `connection` now and every `rttRefreshMs`, unless it already is. */
  track(connection: C): void {
    if (this.#rtts.has(connection)) return;
    const entry: RttEntry = { atMs: 0 };
    this.#rtts.set(connection, entry);
    const measure = (): void => {
      if (this.#rtts.get(connection) !== entry) return;
      this.#rtt(connection, `rtt-${++this.#serial}`)
        .then((rttMs) => {
          entry.rttMs = rttMs;
          entry.atMs = this.init.clock.now();
        })
        .catch(() => {})
        .finally(() => {
          if (this.#rtts.get(connection) === entry)
            entry.timer = this.init.clock.setTimeout(measure, this.#refreshMs);
        });
    };
    measure();
  }

  forget(connection: C): void {
    this.#rtts.get(connection)?.timer?.clear();
    this.#rtts.delete(connection);
  }

  /** Stops every timer. */
  close(): void {
    for (const entry of this.#rtts.values()) entry.timer?.clear();
    this.#rtts.clear();
    for (const timer of this.#timers) timer.clear();
    this.#timers.clear();
  }

  /**
   * Steps 17-19. Each go should arrive when the other does, so the party with the shorter one-way
   * delay (half its round trip) gets its go later, by the difference. `naive` sends both at once,
   * as the paper does, for comparison.
   */
  async sync(
    callId: string,
    parties: { caller: C; callee: C },
    naive: boolean,
    /** Extra fields for one party's go: the other side's pinned port (issue 19). */
    extra?: { readonly to: 'caller' | 'callee'; readonly fields: SyncFields },
    /**
     * Issue 24: a party on another node is reached over the link to that node; its round trip is
     * the link's (measured here) plus this, the other node's to the party.
     */
    beyond: { readonly caller?: number; readonly callee?: number } = {},
  ): Promise<GoSchedule> {
    const [caller, callee] = await Promise.all([
      this.#recentRtt(parties.caller, callId).then((ms) => ms + (beyond.caller ?? 0)),
      this.#recentRtt(parties.callee, callId).then((ms) => ms + (beyond.callee ?? 0)),
    ]);
    const far = Math.max(caller, callee) / 2;
    const delayMs = naive ? { caller: 0, callee: 0 } : { caller: far - caller / 2, callee: far - callee / 2 };
    const schedule = { callId, rttMs: { caller, callee }, delayMs };
    this.schedules.push(schedule);
    const max = this.init.maxSchedules ?? 1000;
    if (this.schedules.length > max) this.schedules.splice(0, this.schedules.length - max);
    const go = (party: 'caller' | 'callee', afterMs: number): void => {
      const body = JSON.stringify({ type: 'go', ...(extra?.to === party ? extra.fields : {}) });
      const timer = this.init.clock.setTimeout(() => {
        this.#timers.delete(timer);
        void this.init.request(parties[party], 'INFO', callId, body).catch(() => {});
      }, afterMs);
      this.#timers.add(timer);
    };
    go('caller', delayMs.caller);
    go('callee', delayMs.callee);
    return schedule;
  }

  /** The last round trip measured on `connection` (OPTIONS, every `rttRefreshMs`), if any. */
  rttOf(connection: C): number | undefined {
    return this.#rtts.get(connection)?.rttMs;
  }

  /** A recent round trip for `connection`, measuring it now only when none is fresh enough. */
  async #recentRtt(connection: C, callId: string): Promise<number> {
    const entry = this.#rtts.get(connection);
    if (entry?.rttMs !== undefined && this.init.clock.now() - entry.atMs <= 3 * this.#refreshMs)
      return entry.rttMs;
    return this.#rtt(connection, callId);
  }

  /** Round trip to a party over its own connection: the least of two OPTIONS exchanges. */
  async #rtt(connection: C, callId: string): Promise<number> {
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 2; i++) {
      const sent = this.init.clock.now();
      await this.init.request(connection, 'OPTIONS', `${callId}-rtt`);
      best = Math.min(best, this.init.clock.now() - sent);
    }
    return best;
  }
}
