/**
 * Background traffic: another internal host that opens new UDP sessions at a steady random rate, so
 * a NAT's allocation counter moves between port prediction and punch, as it does on a real NAT
 * shared by a household or an office.
 */

import type { Rng } from '../../util/rng.ts';
import type { Endpoint } from '../address.ts';
import type { Clock, Timer } from '../clock.ts';
import type { Network } from '../types.ts';

export interface BackgroundTrafficInit {
  /** Mean new sessions per second (Poisson arrivals). */
  readonly sessionsPerSecond: number;
  /** Where each session sends its one datagram (a discard port on a public host). */
  readonly target: Endpoint;
  /** Stop after this many sessions; the generator never runs unbounded. Default 100 000. */
  readonly maxSessions?: number;
}

export interface BackgroundTrafficComponents {
  readonly network: Network;
  readonly clock: Clock;
  readonly rng: Rng;
}

export class BackgroundTraffic {
  #timer?: Timer;
  #stopped = false;
  #sessions = 0;
  readonly #maxSessions: number;

  constructor(
    private readonly components: BackgroundTrafficComponents,
    private readonly init: BackgroundTrafficInit,
  ) {
    if (!(init.sessionsPerSecond > 0)) throw new RangeError('sessionsPerSecond must be > 0');
    this.#maxSessions = init.maxSessions ?? 100_000;
    this.#schedule();
  }

  get sessions(): number {
    return this.#sessions;
  }

  /** Idempotent. */
  stop(): void {
    this.#stopped = true;
    this.#timer?.clear();
  }

  #schedule(): void {
    if (this.#stopped || this.#sessions >= this.#maxSessions) return;
    const meanMs = 1000 / this.init.sessionsPerSecond;
    const delayMs = -Math.log(1 - this.components.rng.next()) * meanMs;
    this.#timer = this.components.clock.setTimeout(() => {
      this.#openSession().catch(() => {});
      this.#schedule();
    }, delayMs);
  }

  async #openSession(): Promise<void> {
    if (this.#stopped) return;
    this.#sessions++;
    const socket = await this.components.network.bindUdp();
    socket.send(new TextEncoder().encode('bg'), this.init.target);
    socket.close();
  }
}
