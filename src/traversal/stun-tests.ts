/**
 * RFC 5780 behaviour tests run from behind a NAT, shared by natcheck and the gateway's NAT probe
 * (the paper's TEST/TEST_200, steps 5-8): mapping (§4.3), filtering (§4.4), and allocation from
 * fresh sockets. Sockets it opens are closed by `close()`.
 */

import type { FilteringBehaviour, MappingBehaviour } from '../nat/behaviour.ts';
import { type Endpoint, sameEndpoint } from '../net/address.ts';
import { type Clock, sleep } from '../net/clock.ts';
import type { Network, UdpSocket } from '../net/types.ts';
import { type StunBindingResult, stunBinding } from './stun-client.ts';

export interface StunTestsComponents {
  readonly network: Network;
  readonly clock: Clock;
  readonly transactionId?: () => Uint8Array;
}

export interface StunTestsInit {
  readonly primary: Endpoint;
  readonly alternate: Endpoint;
  /** STUN retransmission timeout. Default 500 ms (RFC 8489). */
  readonly rtoMs?: number;
  /** Attempts before a test counts as "no answer". Default 3. */
  readonly attempts?: number;
  readonly signal?: AbortSignal;
}

export interface AllocationObservation {
  readonly allocation: 'preserve-if-free' | 'sequential' | 'random';
  readonly delta: number | null;
  readonly preservation: boolean;
  /** The public port of the newest session: the base for predicting the next ones. */
  readonly lastPort: number;
}

/** A STUN server that never answered: UDP to it is likely blocked. */
export class NoStunAnswerError extends Error {
  constructor(server: Endpoint, attempts: number) {
    super(
      `no STUN answer from ${server.address}:${server.port} after ${attempts} attempts: is UDP to it blocked?`,
    );
    this.name = 'NoStunAnswerError';
  }
}

export class StunTests {
  readonly #sockets = new Set<UdpSocket>();
  readonly rtoMs: number;
  readonly attempts: number;

  constructor(
    private readonly c: StunTestsComponents,
    readonly init: StunTestsInit,
  ) {
    this.rtoMs = init.rtoMs ?? 500;
    this.attempts = init.attempts ?? 3;
  }

  async fresh(port?: number): Promise<UdpSocket> {
    const socket = await this.c.network.bindUdp(port === undefined ? {} : { port });
    this.#sockets.add(socket);
    return socket;
  }

  retire(socket: UdpSocket): void {
    this.#sockets.delete(socket);
    socket.close();
  }

  /** Stops tracking `socket` (the caller keeps it, e.g. as an RTP socket). */
  adopt(socket: UdpSocket): UdpSocket {
    this.#sockets.delete(socket);
    return socket;
  }

  binding(socket: UdpSocket, server: Endpoint, change?: { changeIp: boolean; changePort: boolean }) {
    return stunBinding(
      socket,
      { clock: this.c.clock, transactionId: this.c.transactionId },
      { server, changeRequest: change, rtoMs: this.rtoMs, attempts: this.attempts, signal: this.init.signal },
    );
  }

  async mustBind(socket: UdpSocket, server: Endpoint): Promise<StunBindingResult> {
    const result = await this.binding(socket, server);
    if (!result) throw new NoStunAnswerError(server, this.attempts);
    return result;
  }

  /** The server has one address: its alternate differs by port only. */
  get singleAddress(): boolean {
    return this.init.alternate.address === this.init.primary.address;
  }

  /**
   * RFC 5780 §4.3: one socket to A:p1, B:p1, B:p2. With one server address, A:p1 then A:p2: a
   * new mapping for a new port is address-and-port-dependent; the same one is read as
   * endpoint-independent (an address-dependent NAT, rare, looks the same from one address).
   */
  async mapping(): Promise<{ mapping: MappingBehaviour; publicAddress: string }> {
    const { primary, alternate } = this.init;
    const socket = await this.fresh();
    try {
      const first = await this.mustBind(socket, primary);
      const publicAddress = first.mapped.address;
      // One server address: the second test is A:p2, and there is no third.
      const one = this.singleAddress;
      const second = await this.mustBind(
        socket,
        one ? alternate : { address: alternate.address, port: primary.port },
      );
      if (sameEndpoint(first.mapped, second.mapped))
        return { mapping: 'endpoint-independent', publicAddress };
      if (one) return { mapping: 'address-and-port-dependent', publicAddress };
      const third = await this.mustBind(socket, alternate);
      return {
        mapping: sameEndpoint(second.mapped, third.mapped)
          ? 'address-dependent'
          : 'address-and-port-dependent',
        publicAddress,
      };
    } finally {
      this.retire(socket);
    }
  }

  /**
   * RFC 5780 §4.4: ask for answers from the other address and port, then the other port only. With
   * one server address only the second test runs: an answer from the other port filtered out is
   * address-and-port-dependent, one let in is `unknown` (endpoint-independent or address-dependent).
   */
  async filtering(): Promise<FilteringBehaviour | 'unknown'> {
    const socket = await this.fresh();
    try {
      await this.mustBind(socket, this.init.primary);
      const one = this.singleAddress;
      if (!one && (await this.binding(socket, this.init.primary, { changeIp: true, changePort: true })))
        return 'endpoint-independent';
      const fromOtherPort = await this.binding(socket, this.init.primary, {
        changeIp: false,
        changePort: true,
      });
      if (!fromOtherPort) return 'address-and-port-dependent';
      return one ? 'unknown' : 'address-dependent';
    } finally {
      this.retire(socket);
    }
  }

  /**
   * Fresh sockets' Bindings, sent back to back; the public ports reveal preservation, the step, or
   * randomness. Back to back (issue 19): on a busy NAT, other hosts' sessions taken between samples a
   * round trip apart hid the step (deltas 2, 3, 2 are no step at 20 sessions/s); microseconds apart
   * they rarely come between.
   */
  async allocation(samples = 6): Promise<AllocationObservation> {
    const sockets: UdpSocket[] = [];
    let pairs: { local: number; mapped: number }[];
    try {
      for (let i = 0; i < samples; i++) sockets.push(await this.fresh());
      const results = await Promise.all(sockets.map((socket) => this.mustBind(socket, this.init.primary)));
      pairs = results.map((result, i) => ({ local: sockets[i]!.local.port, mapped: result.mapped.port }));
    } finally {
      for (const socket of sockets) this.retire(socket);
    }
    const lastPort = pairs.at(-1)!.mapped;
    if (pairs.every((p) => p.local === p.mapped))
      return { allocation: 'preserve-if-free', delta: null, preservation: true, lastPort };
    const step = sequentialStep(pairs.slice(1).map((p, i) => p.mapped - pairs[i]!.mapped));
    if (step !== null) return { allocation: 'sequential', delta: step, preservation: false, lastPort };
    return { allocation: 'random', delta: null, preservation: false, lastPort };
  }

  /**
   * Does an ICMP error close this NAT's mapping (IPS)? A datagram to a closed port on the STUN
   * server's host draws port-unreachable; if the next Binding from the same socket maps to a new
   * port, the NAT dropped the mapping. Only a mapping the closed port shares can be seen: `null` on
   * an address-and-port-dependent NAT, or when the first mapping could not be re-read.
   */
  async icmpSensitive(mapping: MappingBehaviour, closedPort = 9): Promise<boolean | null> {
    if (mapping === 'address-and-port-dependent') return null;
    const socket = await this.fresh();
    try {
      const before = await this.mustBind(socket, this.init.primary);
      // Something answering on the "closed" port draws no ICMP error: then nothing can be read.
      let answered = false;
      const off = socket.on('message', (_data, from) => {
        if (from.port === closedPort) answered = true;
      });
      socket.send(new Uint8Array(4), { address: this.init.primary.address, port: closedPort });
      // Time for the error to come back: a round trip plus slack.
      await sleep(this.c.clock, 2 * before.rttMs + 50, this.init.signal);
      const after = await this.binding(socket, this.init.primary);
      off();
      if (!after || answered) return null;
      return !sameEndpoint(before.mapped, after.mapped);
    } finally {
      this.retire(socket);
    }
  }

  /**
   * IPS on a NAT that maps per destination with a known step, where `icmpSensitive` sees nothing.
   * A trigger socket sends to a closed port on the STUN server's host (a new mapping) and waits for
   * the ICMP error; then the counter is read right before and right after the trigger's second
   * datagram, all three leaving back to back. A NAT that kept the trigger's mapping gave it no new
   * port: the two reads are 1 step apart; an IPS NAT closed it, so the second datagram took one:
   * 2 steps. The reads are microseconds apart, so another host's session rarely comes between
   * (it adds a step: 3 reads as unknown, 2 on a NAT that kept it is what `ipsFromRuns` outvotes).
   */
  async icmpSensitiveSequential(step: number, closedPort = 9): Promise<boolean | null> {
    const timing = await this.fresh();
    const trigger = await this.fresh();
    const before = await this.fresh();
    const after = await this.fresh();
    try {
      const { rttMs } = await this.mustBind(timing, this.init.primary);
      const closed = { address: this.init.primary.address, port: closedPort };
      // Something answering on the "closed" port draws no ICMP error: then nothing can be read.
      let answered = false;
      const off = trigger.on('message', () => {
        answered = true;
      });
      trigger.send(new Uint8Array(4), closed);
      // Time for the error to come back: a round trip plus slack.
      await sleep(this.c.clock, 2 * rttMs + 50, this.init.signal);
      const first = this.binding(before, this.init.primary);
      trigger.send(new Uint8Array(4), closed);
      const second = this.binding(after, this.init.primary);
      const [p, q] = await Promise.all([first, second]);
      off();
      if (!p || !q || answered) return null;
      const moved = q.mapped.port - p.mapped.port;
      if (moved === step) return false;
      if (moved === 2 * step) return true;
      return null;
    } finally {
      for (const socket of [timing, trigger, before, after]) this.retire(socket);
    }
  }

  close(): void {
    for (const socket of this.#sockets) socket.close();
    this.#sockets.clear();
  }
}

/**
 * The allocation step from consecutive deltas: all equal, or (when other hosts' sessions took
 * ports in between, as background traffic does) all positive multiples of the smallest, within
 * a few steps of it. Anything else is not sequential. Pure.
 */
export function sequentialStep(deltas: readonly number[]): number | null {
  if (deltas.length === 0) return null;
  const step = Math.min(...deltas);
  if (step <= 0) return null;
  return deltas.every((d) => d % step === 0 && d <= MAX_SKIPPED_STEPS * step) ? step : null;
}

/** A delta above this many steps is not read as sessions taken in between. */
const MAX_SKIPPED_STEPS = 4;
