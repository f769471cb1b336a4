/**
 * Black-box NAT behaviour discovery, run from a host behind the NAT. Every finding comes from
 * packets sent and received: STUN Binding tests (RFC 5780 §4.3-4.4) for mapping and filtering,
 * fresh sockets for allocation, knocks from the helper for PKS and the unsolicited-packet reply,
 * a looped-back exchange for hairpinning, and a closed helper port for IPS.
 */
import { type Endpoint, sameEndpoint } from '../../net/address.ts';
import { type Clock, sleep } from '../../net/clock.ts';
import type { Network } from '../../net/types.ts';
import type { Rng } from '../../util/rng.ts';
import { StunTests } from '../stun-tests.ts';
import type { NatcheckHelperControl } from './control.ts';
import type { NatcheckReport, NatObservation, ObservationKey } from './observation.ts';

export interface NatcheckComponents {
  readonly network: Network;
  readonly clock: Clock;
  readonly control: NatcheckHelperControl;
  /** Draws the ports knocked by the PKS test on a random-allocation NAT. */
  readonly rng: Rng;
  readonly transactionId?: () => Uint8Array;
}

export interface NatcheckInit {
  /** STUN retransmission timeout; a little above the path RTT is enough. Default 500 ms (RFC 8489). */
  readonly rtoMs?: number;
  /** STUN attempts before a test counts as "no answer". Default 3. */
  readonly attempts?: number;
  /** Fresh sessions used to measure allocation. Default 6. */
  readonly allocationSamples?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (step: string) => void;
}

/** Ports knocked, and sessions opened, for the statistical PKS test on a random NAT. With a 64 512-port
 * range, 4 096 knocks and 512 sessions expect 32.5 hits without PKS (Poisson): P(at most 8 hits) is
 * about 3e-7. A PKS NAT gives none, unless knocks were lost or reached it only after the sessions
 * took their ports (a loaded lab was seen to give 3), so up to 8 hits still read as PKS. Few
 * knocks and many sessions, because knocks can overrun a real path's queues. */
const RANDOM_PKS_KNOCKS = 4096;
const RANDOM_PKS_SESSIONS = 512;
const RANDOM_PKS_MAX_HITS = 8;

export async function runNatcheck(
  components: NatcheckComponents,
  init: NatcheckInit = {},
): Promise<NatcheckReport> {
  return new Natcheck(components, init).run();
}

class Natcheck {
  readonly #t: StunTests;
  readonly #unobservable: Partial<Record<ObservationKey, string>> = {};

  constructor(
    private readonly c: NatcheckComponents,
    private readonly init: NatcheckInit,
  ) {
    this.#t = new StunTests(c, {
      primary: c.control.primary,
      alternate: c.control.alternate,
      rtoMs: init.rtoMs ?? 500,
      attempts: init.attempts ?? 3,
      signal: init.signal,
    });
  }

  async run(): Promise<NatcheckReport> {
    try {
      this.#progress('mapping');
      const { mapping, publicAddress } = await this.#t.mapping();
      this.#progress('filtering');
      const filtering = await this.#t.filtering();
      // The lab's control server always has two addresses; one would leave filtering unread.
      if (filtering === 'unknown') throw new Error('natcheck needs a STUN server with two addresses');
      this.#progress('allocation');
      const alloc = await this.#t.allocation(this.init.allocationSamples ?? 6);
      this.#progress('pks and unsolicited reply');
      const knock = await this.#pks(alloc, publicAddress);
      this.#progress('hairpin');
      const hairpin = await this.#hairpin(mapping, { ...alloc, lastPort: knock.lastPort }, publicAddress);
      this.#progress('ips');
      const ips = await this.#ips();
      const observed: NatObservation = {
        mapping,
        filtering,
        allocation: alloc.allocation,
        delta: alloc.delta,
        preservation: alloc.preservation,
        hairpin,
        pks: knock.pks,
        ips,
        unsolicitedReply: knock.icmp ? 'icmp-port-unreachable' : 'drop',
      };
      return { observed, unobservable: this.#unobservable };
    } finally {
      this.#t.close();
    }
  }

  #progress(step: string): void {
    this.init.onProgress?.(step);
  }

  /**
   * Knock on the port the NAT will hand out next, then open a session: a PKS NAT skips the knocked
   * port. The same knock shows whether the NAT answers unsolicited packets with ICMP.
   */
  async #pks(
    alloc: { allocation: NatObservation['allocation']; delta: number | null; lastPort: number },
    publicAddress: string,
  ): Promise<{ pks: boolean | null; icmp: boolean; lastPort: number }> {
    const waitMs = 2 * this.#t.rtoMs;
    if (alloc.allocation === 'sequential') {
      const delta = alloc.delta!;
      const target = alloc.lastPort + delta;
      const { icmpReplies } = await this.c.control.knock([{ address: publicAddress, port: target }], waitMs);
      const socket = await this.#t.fresh();
      const got = (await this.#t.mustBind(socket, this.c.control.primary)).mapped.port;
      this.#t.retire(socket);
      if (got === target + delta) return { pks: true, icmp: icmpReplies > 0, lastPort: got };
      if (got === target) return { pks: false, icmp: icmpReplies > 0, lastPort: got };
      this.#unobservable.pks = `the next port moved unexpectedly (expected ${target} or ${target + delta}, got ${got}): other traffic on the NAT?`;
      return { pks: null, icmp: icmpReplies > 0, lastPort: got };
    }
    if (alloc.allocation === 'preserve-if-free') {
      const socket = await this.#t.fresh();
      const local = socket.local.port;
      const { icmpReplies } = await this.c.control.knock([{ address: publicAddress, port: local }], waitMs);
      const got = (await this.#t.mustBind(socket, this.c.control.primary)).mapped.port;
      this.#t.retire(socket);
      return { pks: got !== local, icmp: icmpReplies > 0, lastPort: got };
    }
    // Random allocation: no port can be predicted, so knock many and count how often a new
    // session lands on a knocked one.
    const knocked = new Set<number>();
    while (knocked.size < RANDOM_PKS_KNOCKS) knocked.add(this.c.rng.int(1024, 65535));
    const targets = [...knocked].map((port) => ({ address: publicAddress, port }));
    const { icmpReplies } = await this.c.control.knock(targets, waitMs);
    let hits = 0;
    let lastPort = alloc.lastPort;
    for (let i = 0; i < RANDOM_PKS_SESSIONS; i++) {
      const socket = await this.#t.fresh();
      lastPort = (await this.#t.mustBind(socket, this.c.control.primary)).mapped.port;
      if (knocked.has(lastPort)) hits++;
      this.#t.retire(socket);
    }
    return { pks: hits <= RANDOM_PKS_MAX_HITS, icmp: icmpReplies > 0, lastPort };
  }

  /**
   * Two sockets send to each other's public endpoint through the NAT's own address. With an
   * endpoint-independent mapping the endpoints are known from STUN. Otherwise each new destination
   * gets a new port, so the ports are predicted from the allocation step and both packets leave
   * together. With random allocation nothing can be predicted, and address-and-port filtering
   * then drops every looped-back packet: hairpinning cannot be observed.
   */
  async #hairpin(
    mapping: NatObservation['mapping'],
    alloc: { allocation: NatObservation['allocation']; delta: number | null; lastPort: number },
    publicAddress: string,
  ): Promise<boolean | null> {
    const a = await this.#t.fresh();
    const b = await this.#t.fresh();
    let targetOfA: Endpoint;
    let targetOfB: Endpoint;
    if (mapping === 'endpoint-independent') {
      targetOfB = (await this.#t.mustBind(a, this.c.control.primary)).mapped;
      targetOfA = (await this.#t.mustBind(b, this.c.control.primary)).mapped;
    } else if (alloc.allocation === 'sequential') {
      targetOfB = { address: publicAddress, port: alloc.lastPort + alloc.delta! };
      targetOfA = { address: publicAddress, port: alloc.lastPort + 2 * alloc.delta! };
    } else {
      this.#unobservable.hairpin =
        'with a destination-dependent mapping and random allocation, no looped-back packet can be addressed to a known port';
      return null;
    }
    let received = false;
    const offA = a.on('message', (_data, from) => {
      if (from.address === publicAddress) received = true;
    });
    const offB = b.on('message', (_data, from) => {
      if (from.address === publicAddress) received = true;
    });
    const probe = new TextEncoder().encode('sc2c-natcheck-hairpin');
    try {
      for (let round = 0; round < this.#t.attempts && !received; round++) {
        a.send(probe, targetOfA);
        b.send(probe, targetOfB);
        await sleep(this.c.clock, this.#t.rtoMs, this.init.signal);
      }
    } finally {
      offA();
      offB();
    }
    return received;
  }

  /**
   * Open a mapping to the helper, have the helper close that port so its host answers our next
   * packet with ICMP port-unreachable, reopen it and ask again. An IPS NAT closed the mapping on
   * that ICMP, so the second answer shows a new public port.
   */
  async #ips(): Promise<boolean | null> {
    const { primary } = this.c.control;
    const socket = await this.#t.fresh();
    const before = (await this.#t.mustBind(socket, primary)).mapped;
    await this.c.control.setListening(primary, false);
    try {
      socket.send(new TextEncoder().encode('sc2c-natcheck-ips'), primary);
      await sleep(this.c.clock, 2 * this.#t.rtoMs, this.init.signal);
    } finally {
      await this.c.control.setListening(primary, true);
    }
    const after = (await this.#t.mustBind(socket, primary)).mapped;
    this.#t.retire(socket);
    return !sameEndpoint(before, after);
  }
}
