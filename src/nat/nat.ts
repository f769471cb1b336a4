/**
 * The NAT behaviour model: pure logic, no I/O, no timers. Time arrives as `nowMs` on every call and
 * randomness from the injected `random`, so the virtual network and the kernel lab drive the same
 * code and a seed reproduces a run exactly.
 */
import { type Endpoint, formatEndpoint } from '../net/address.ts';
import type { NatBehaviour, Protocol } from './behaviour.ts';

export interface Flow {
  readonly proto: Protocol;
  readonly src: Endpoint;
  readonly dst: Endpoint;
}

export interface MappingView {
  readonly proto: Protocol;
  readonly internal: Endpoint;
  readonly external: Endpoint;
  readonly expiresAtMs: number;
}

export type DropReason =
  | 'no-mapping'
  | 'filtered'
  | 'knocked'
  | 'ports-exhausted'
  | 'hairpin-disabled'
  | 'icmp-no-mapping';

export type OutboundResult =
  | { readonly action: 'forward'; readonly src: Endpoint; readonly created: boolean }
  | { readonly action: 'drop'; readonly reason: DropReason };

export type InboundResult =
  | { readonly action: 'forward'; readonly dst: Endpoint }
  | {
      readonly action: 'drop';
      readonly reason: DropReason;
      /** True when the NAT should answer with ICMP port-unreachable. */
      readonly replyIcmp: boolean;
      /** True when this packet knocked the port (PKS). */
      readonly knocked: boolean;
    };

export type HairpinResult =
  | { readonly action: 'forward'; readonly src: Endpoint; readonly dst: Endpoint }
  | { readonly action: 'drop'; readonly reason: DropReason; readonly replyIcmp: boolean };

export type IcmpInboundResult =
  | { readonly action: 'forward'; readonly internal: Endpoint; readonly closedMapping: boolean }
  | { readonly action: 'drop'; readonly reason: DropReason };

export type IcmpOutboundResult =
  | { readonly action: 'forward'; readonly external: Endpoint }
  | { readonly action: 'drop'; readonly reason: DropReason };

export interface NatInit {
  readonly behaviour: NatBehaviour;
  readonly publicAddress: string;
  /** Uniform in [0, 1); used for random allocation and the first sequential port. */
  readonly random: () => number;
  /** First port of sequential allocation; default a random port in range. */
  readonly firstPort?: number;
}

interface Mapping {
  readonly proto: Protocol;
  readonly internal: Endpoint;
  readonly externalPort: number;
  readonly key: string;
  /** Remote addresses (ADF) and remote address:port pairs (APDF) this mapping has sent to. */
  readonly sentToAddresses: Set<string>;
  readonly sentToEndpoints: Set<string>;
  expiresAtMs: number;
}

/** Sweep expired mappings every this many operations, so a long run does not grow without bound. */
const SWEEP_EVERY_OPS = 4096;

export class Nat {
  readonly behaviour: NatBehaviour;
  readonly publicAddress: string;
  readonly #random: () => number;
  readonly #byKey = new Map<string, Mapping>();
  readonly #byPort = new Map<string, Mapping>();
  /** proto:port -> blocked until (PKS knock or IPS burn). */
  readonly #blockedUntil = new Map<string, number>();
  #nextPort: number;
  /** With `tcpCounter: separate`, TCP's own sequential counter. */
  #nextTcpPort: number;
  #ops = 0;
  /** Leases asked for with PCP or NAT-PMP (issue 20): `proto|internal` and `proto:port` keyed. */
  readonly #leases = new Map<string, StaticLease>();
  readonly #leasesByPort = new Map<string, StaticLease>();

  constructor(init: NatInit) {
    this.behaviour = init.behaviour;
    this.publicAddress = init.publicAddress;
    this.#random = init.random;
    const { min, max } = init.behaviour.portRange;
    this.#nextPort = init.firstPort ?? min + Math.floor(this.#random() * (max - min + 1));
    this.#nextTcpPort =
      init.behaviour.tcpCounter === 'separate'
        ? min + Math.floor(this.#random() * (max - min + 1))
        : this.#nextPort;
  }

  /** A packet from inside to the outside. Creates or refreshes a mapping. */
  outbound(flow: Flow, nowMs: number): OutboundResult {
    this.#maybeSweep(nowMs);
    // A leased port carries its internal endpoint's traffic both ways (RFC 6887 §11.1).
    const lease = this.#liveLease(this.#leases.get(leaseKey(flow.proto, flow.src)), nowMs);
    if (lease)
      return {
        action: 'forward',
        src: { address: this.publicAddress, port: lease.externalPort },
        created: false,
      };
    const key = this.#mappingKey(flow);
    let mapping = this.#live(this.#byKey.get(key), nowMs);
    let created = false;
    if (!mapping) {
      const port = this.#allocate(flow.proto, flow.src.port, nowMs);
      if (port === undefined) return { action: 'drop', reason: 'ports-exhausted' };
      mapping = {
        proto: flow.proto,
        internal: flow.src,
        externalPort: port,
        key,
        sentToAddresses: new Set(),
        sentToEndpoints: new Set(),
        expiresAtMs: 0,
      };
      this.#byKey.set(key, mapping);
      this.#byPort.set(portKey(flow.proto, port), mapping);
      created = true;
    }
    mapping.sentToAddresses.add(flow.dst.address);
    mapping.sentToEndpoints.add(formatEndpoint(flow.dst));
    mapping.expiresAtMs = nowMs + this.#lifetime(flow.proto);
    return { action: 'forward', src: { address: this.publicAddress, port: mapping.externalPort }, created };
  }

  /** A packet from outside addressed to the public address. */
  inbound(flow: Flow, nowMs: number): InboundResult {
    this.#maybeSweep(nowMs);
    const replyIcmp = this.behaviour.unsolicitedReply === 'icmp-port-unreachable';
    // A leased port forwards from anyone: that is what it was asked for.
    const lease = this.#liveLease(this.#leasesByPort.get(portKey(flow.proto, flow.dst.port)), nowMs);
    if (lease) return { action: 'forward', dst: lease.internal };
    const mapping = this.#live(this.#byPort.get(portKey(flow.proto, flow.dst.port)), nowMs);
    if (!mapping) {
      if (this.behaviour.pks) {
        this.#blockedUntil.set(portKey(flow.proto, flow.dst.port), nowMs + this.behaviour.pksBlockMs);
        return { action: 'drop', reason: 'knocked', replyIcmp, knocked: true };
      }
      return { action: 'drop', reason: 'no-mapping', replyIcmp, knocked: false };
    }
    if (!this.#permits(mapping, flow.src)) {
      return { action: 'drop', reason: 'filtered', replyIcmp, knocked: false };
    }
    if (this.behaviour.refreshOnInbound) mapping.expiresAtMs = nowMs + this.#lifetime(flow.proto);
    return { action: 'forward', dst: mapping.internal };
  }

  /**
   * A packet from inside addressed to the NAT's own public address (RFC 4787 REQ-9). The source is
   * translated as for any outbound packet and the destination as for an inbound one, with filtering.
   * A looped-back packet is internal traffic: it never knocks a port, and an ICMP answer to it goes
   * straight back to the internal sender (so it cannot trigger IPS either).
   */
  hairpin(flow: Flow, nowMs: number): HairpinResult {
    if (!this.behaviour.hairpin) return { action: 'drop', reason: 'hairpin-disabled', replyIcmp: false };
    const out = this.outbound(flow, nowMs);
    if (out.action === 'drop') return { action: 'drop', reason: out.reason, replyIcmp: false };
    const replyIcmp = this.behaviour.unsolicitedReply === 'icmp-port-unreachable';
    const mapping = this.#live(this.#byPort.get(portKey(flow.proto, flow.dst.port)), nowMs);
    if (!mapping) return { action: 'drop', reason: 'no-mapping', replyIcmp };
    if (!this.#permits(mapping, out.src)) return { action: 'drop', reason: 'filtered', replyIcmp };
    if (this.behaviour.refreshOnInbound) mapping.expiresAtMs = nowMs + this.#lifetime(flow.proto);
    return { action: 'forward', src: out.src, dst: mapping.internal };
  }

  /**
   * An ICMP error from outside. `original` is the packet it quotes, as that packet left this NAT
   * (src = our public endpoint, dst = the remote). The error is accepted only for a mapping that
   * really sent to that remote (RFC 5508 REQ-4 style check). An IPS NAT closes that mapping and
   * burns its port.
   */
  inboundIcmp(original: Flow, nowMs: number): IcmpInboundResult {
    const mapping = this.#live(this.#byPort.get(portKey(original.proto, original.src.port)), nowMs);
    if (!mapping?.sentToEndpoints.has(formatEndpoint(original.dst))) {
      return { action: 'drop', reason: 'icmp-no-mapping' };
    }
    if (this.behaviour.ips) {
      this.#remove(mapping);
      this.#blockedUntil.set(portKey(mapping.proto, mapping.externalPort), nowMs + this.behaviour.ipsBurnMs);
      return { action: 'forward', internal: mapping.internal, closedMapping: true };
    }
    return { action: 'forward', internal: mapping.internal, closedMapping: false };
  }

  /**
   * An ICMP error from inside. `original` is the quoted packet as the internal host saw it
   * (src = remote, dst = internal endpoint). Returns the public endpoint to quote instead.
   */
  outboundIcmp(original: Flow, nowMs: number): IcmpOutboundResult {
    const reverse: Flow = { proto: original.proto, src: original.dst, dst: original.src };
    const mapping = this.#live(this.#byKey.get(this.#mappingKey(reverse)), nowMs);
    if (!mapping) return { action: 'drop', reason: 'icmp-no-mapping' };
    return { action: 'forward', external: { address: this.publicAddress, port: mapping.externalPort } };
  }

  /** Live mappings at `nowMs`. */
  mappings(nowMs: number): MappingView[] {
    const views: MappingView[] = [];
    for (const mapping of this.#byKey.values()) {
      if (mapping.expiresAtMs <= nowMs) continue;
      views.push({
        proto: mapping.proto,
        internal: mapping.internal,
        external: { address: this.publicAddress, port: mapping.externalPort },
        expiresAtMs: mapping.expiresAtMs,
      });
    }
    return views;
  }

  /**
   * Grants, renews or (lifetime 0) deletes a lease of a public port for `internal` (the PCP MAP
   * and NAT-PMP server's state, nat/port-mapping-server.ts). The suggested port is taken when
   * free; otherwise one is allocated as for any session. Undefined when no port or lease is left.
   */
  lease(
    proto: Protocol,
    internal: Endpoint,
    suggestedPort: number,
    lifetimeMs: number,
    nowMs: number,
  ): { readonly externalPort: number; readonly expiresAtMs: number } | undefined {
    const key = leaseKey(proto, internal);
    const held = this.#liveLease(this.#leases.get(key), nowMs);
    if (lifetimeMs <= 0) {
      if (held) this.#removeLease(held);
      return { externalPort: held?.externalPort ?? 0, expiresAtMs: nowMs };
    }
    if (held) {
      held.expiresAtMs = nowMs + lifetimeMs;
      return { externalPort: held.externalPort, expiresAtMs: held.expiresAtMs };
    }
    if (this.#leases.size >= MAX_LEASES) {
      for (const lease of [...this.#leases.values()]) this.#liveLease(lease, nowMs);
      if (this.#leases.size >= MAX_LEASES) return undefined;
    }
    const { min, max } = this.behaviour.portRange;
    const port =
      suggestedPort >= min && suggestedPort <= max && this.#usable(proto, suggestedPort, nowMs)
        ? suggestedPort
        : this.#allocate(proto, internal.port, nowMs);
    if (port === undefined) return undefined;
    const lease: StaticLease = { proto, internal, externalPort: port, expiresAtMs: nowMs + lifetimeMs };
    this.#leases.set(key, lease);
    this.#leasesByPort.set(portKey(proto, port), lease);
    return { externalPort: port, expiresAtMs: lease.expiresAtMs };
  }

  /** Live leases at `nowMs`. */
  leases(nowMs: number): MappingView[] {
    return [...this.#leases.values()]
      .filter((l) => l.expiresAtMs > nowMs)
      .map((l) => ({
        proto: l.proto,
        internal: l.internal,
        external: { address: this.publicAddress, port: l.externalPort },
        expiresAtMs: l.expiresAtMs,
      }));
  }

  /** A reboot: every mapping and lease is gone (the port-mapping server's epoch restarts too). */
  reboot(): void {
    this.flush();
    this.#leases.clear();
    this.#leasesByPort.clear();
  }

  /** True while a port is knocked (PKS) or burned (IPS). */
  isBlocked(proto: Protocol, port: number, nowMs: number): boolean {
    return (this.#blockedUntil.get(portKey(proto, port)) ?? 0) > nowMs;
  }

  /**
   * Expires every mapping at once (the lab's `flush`), or only those of `proto`: a NAT keeps
   * established TCP sessions for hours (RFC 5382) but UDP mappings for minutes (RFC 4787), so a
   * UDP-only flush is what a media path meets after a timeout. Blocks and the allocation counter stay.
   */
  flush(proto?: Protocol): void {
    if (!proto) {
      this.#byKey.clear();
      this.#byPort.clear();
      return;
    }
    for (const [key, mapping] of this.#byKey) {
      if (mapping.proto !== proto) continue;
      this.#byKey.delete(key);
      this.#byPort.delete(portKey(mapping.proto, mapping.externalPort));
    }
  }

  #mappingKey(flow: Flow): string {
    const internal = `${flow.proto}|${formatEndpoint(flow.src)}`;
    switch (this.behaviour.mapping) {
      case 'endpoint-independent':
        return internal;
      case 'address-dependent':
        return `${internal}|${flow.dst.address}`;
      case 'address-and-port-dependent':
        return `${internal}|${formatEndpoint(flow.dst)}`;
    }
  }

  #permits(mapping: Mapping, remote: Endpoint): boolean {
    switch (this.behaviour.filtering) {
      case 'endpoint-independent':
        return true;
      case 'address-dependent':
        return mapping.sentToAddresses.has(remote.address);
      case 'address-and-port-dependent':
        return mapping.sentToEndpoints.has(formatEndpoint(remote));
    }
  }

  #lifetime(proto: Protocol): number {
    return proto === 'udp' ? this.behaviour.mappingLifetimeMs : this.behaviour.tcpMappingLifetimeMs;
  }

  /** Returns the mapping if it is still live; removes it (freeing its port) if it expired. */
  #live(mapping: Mapping | undefined, nowMs: number): Mapping | undefined {
    if (!mapping) return undefined;
    if (mapping.expiresAtMs > nowMs) return mapping;
    this.#remove(mapping);
    return undefined;
  }

  #remove(mapping: Mapping): void {
    if (this.#byKey.get(mapping.key) === mapping) this.#byKey.delete(mapping.key);
    const pk = portKey(mapping.proto, mapping.externalPort);
    if (this.#byPort.get(pk) === mapping) this.#byPort.delete(pk);
  }

  #usable(proto: Protocol, port: number, nowMs: number): boolean {
    return (
      !this.isBlocked(proto, port, nowMs) &&
      !this.#live(this.#byPort.get(portKey(proto, port)), nowMs) &&
      !this.#liveLease(this.#leasesByPort.get(portKey(proto, port)), nowMs)
    );
  }

  #liveLease(lease: StaticLease | undefined, nowMs: number): StaticLease | undefined {
    if (!lease) return undefined;
    if (lease.expiresAtMs > nowMs) return lease;
    this.#removeLease(lease);
    return undefined;
  }

  #removeLease(lease: StaticLease): void {
    const key = leaseKey(lease.proto, lease.internal);
    if (this.#leases.get(key) === lease) this.#leases.delete(key);
    const pk = portKey(lease.proto, lease.externalPort);
    if (this.#leasesByPort.get(pk) === lease) this.#leasesByPort.delete(pk);
  }

  /**
   * Picks a public port. Sequential allocation keeps one counter for the whole NAT and both
   * protocols (the paper, §3: "for new UDP or TCP session, NAT will configure a new port"), so any
   * internal host's new session moves it. Knocked and burned ports are skipped.
   */
  #allocate(proto: Protocol, internalPort: number, nowMs: number): number | undefined {
    const { min, max } = this.behaviour.portRange;
    const size = max - min + 1;
    const wrap = (port: number): number => min + ((((port - min) % size) + size) % size);
    const allocation = this.behaviour.allocation;
    switch (allocation.type) {
      case 'preserve-if-free': {
        for (let i = 0; i < size; i++) {
          const port = wrap(internalPort + i);
          if (this.#usable(proto, port, nowMs)) return port;
        }
        return undefined;
      }
      case 'sequential': {
        const own = proto === 'tcp' && this.behaviour.tcpCounter === 'separate';
        for (let i = 0; i < size; i++) {
          const port = own ? this.#nextTcpPort : this.#nextPort;
          if (own) this.#nextTcpPort = wrap(port + allocation.delta);
          else this.#nextPort = wrap(port + allocation.delta);
          if (this.#usable(proto, port, nowMs)) return port;
        }
        return undefined;
      }
      case 'random': {
        for (let i = 0; i < 64; i++) {
          const port = min + Math.floor(this.#random() * size);
          if (this.#usable(proto, port, nowMs)) return port;
        }
        // The range is nearly full: fall back to a scan from a random start.
        const start = min + Math.floor(this.#random() * size);
        for (let i = 0; i < size; i++) {
          const port = wrap(start + i);
          if (this.#usable(proto, port, nowMs)) return port;
        }
        return undefined;
      }
    }
  }

  #maybeSweep(nowMs: number): void {
    if (++this.#ops % SWEEP_EVERY_OPS !== 0) return;
    for (const mapping of [...this.#byKey.values()]) this.#live(mapping, nowMs);
    for (const [key, until] of this.#blockedUntil) if (until <= nowMs) this.#blockedUntil.delete(key);
  }
}

interface StaticLease {
  readonly proto: Protocol;
  readonly internal: Endpoint;
  readonly externalPort: number;
  expiresAtMs: number;
}

/** Leases one NAT holds at once: a home router's table is small (miniupnpd has no limit but memory). */
const MAX_LEASES = 1024;

function leaseKey(proto: Protocol, internal: Endpoint): string {
  return `${proto}|${formatEndpoint(internal)}`;
}

function portKey(proto: Protocol, port: number): string {
  return `${proto}:${port}`;
}
