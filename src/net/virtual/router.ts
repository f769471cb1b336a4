/**
 * Routers on the virtual network. `Router` forwards by longest prefix, decrements TTL and answers
 * with ICMP time-exceeded. `NatRouter` puts a `Nat` (the pure behaviour model) between its inside
 * links and its one outside link.
 */

import type { Nat } from '../../nat/nat.ts';
import { answerPortMapping, type PortMappingServerState } from '../../nat/port-mapping-server.ts';
import { IGD_HTTP_PORT, startIgd } from '../../nat/upnp-igd.ts';
import { resetWire } from '../../protocol/ipv4.ts';
import { PCP_PORT as PORT_MAPPING_PORT } from '../../protocol/portmap/pcp.ts';
import { SSDP_PORT } from '../../protocol/portmap/upnp.ts';
import { type Cidr, cidrContains, type Endpoint, parseCidr } from '../address.ts';
import type { Fabric } from './fabric.ts';
import { VirtualHost } from './host.ts';
import type { Link, LinkEnd } from './link.ts';
import {
  type IcmpPacket,
  icmpError,
  type Packet,
  packetDstAddress,
  packetSrcAddress,
  type StreamSegment,
  type UdpPacket,
} from './packet.ts';

interface Route {
  readonly cidr: Cidr;
  readonly link: Link;
}

export class Router implements LinkEnd {
  readonly #routes: Route[] = [];
  #defaultLink?: Link;

  constructor(
    readonly name: string,
    /** The router's own addresses; the first is the source of the ICMP errors it generates. */
    readonly addresses: readonly string[],
    protected readonly fabric: Fabric,
  ) {}

  addRoute(cidr: string, link: Link): void {
    this.#routes.push({ cidr: parseCidr(cidr), link });
    this.#routes.sort((a, b) => b.cidr.prefixLength - a.cidr.prefixLength);
  }

  setDefaultRoute(link: Link): void {
    this.#defaultLink = link;
  }

  routeFor(address: string): Link | undefined {
    return this.#routes.find((r) => cidrContains(r.cidr, address))?.link ?? this.#defaultLink;
  }

  receive(packet: Packet, from: Link): void {
    if (this.addresses.includes(packetDstAddress(packet))) {
      this.#receiveLocal(packet);
      return;
    }
    this.forward(packet, from);
  }

  /** Decrements TTL and sends toward the destination; answers time-exceeded when TTL runs out. */
  protected forward(packet: Packet, _from: Link): void {
    // Multicast and broadcast stay on the segment they were sent on (SSDP, PCP announcements from
    // a kernel NAT's LAN side): the lab routes unicast only.
    if (!isUnicast(packetDstAddress(packet))) {
      this.fabric.trace(this.name, 'drop', packet, 'multicast or broadcast: not routed');
      return;
    }
    if (packet.ttl <= 1) {
      this.fabric.trace(this.name, 'ttl-exceeded', packet);
      // A router with no address of its own (a kernel NAT's LAN segment) has none to answer from.
      const from = this.addresses[0];
      if (packet.kind !== 'icmp' && from !== undefined)
        this.sendIcmp('time-exceeded', from, packet.src.address, packet);
      return;
    }
    this.sendToward({ ...packet, ttl: packet.ttl - 1 });
  }

  protected sendToward(packet: Packet): void {
    const link = this.routeFor(packetDstAddress(packet));
    if (!link) {
      this.fabric.trace(this.name, 'drop', packet, 'no route');
      return;
    }
    link.send(packet, this);
  }

  protected sendIcmp(
    type: IcmpPacket['type'],
    from: string,
    to: string,
    cause: { kind: 'udp' | 'tcp'; src: Endpoint; dst: Endpoint },
  ): void {
    const icmp = icmpError(this.fabric.nextPacketId(), type, from, to, cause);
    this.fabric.trace(this.name, 'icmp', icmp);
    this.sendToward(icmp);
  }

  #receiveLocal(packet: Packet): void {
    // A router runs no services: UDP to it gets port-unreachable, like a Linux box with no listener.
    this.fabric.trace(this.name, 'deliver', packet);
    if (packet.kind === 'udp')
      this.sendIcmp('port-unreachable', packetDstAddress(packet), packetSrcAddress(packet), packet);
  }
}

export interface NatRouterInit {
  /** Address on the public (outside) side; all mappings use it. */
  readonly publicAddress: string;
  /** The router's address on its inside LAN (gateway, source of its ICMP errors toward the LAN). */
  readonly insideAddress: string;
  readonly nat: Nat;
}

export class NatRouter extends Router {
  readonly nat: Nat;
  readonly publicAddress: string;
  readonly insideAddress: string;
  #outside?: Link;
  readonly #portMapping: PortMappingServerState;
  /** `+upnp`: the UPnP daemon's stack at our inside address (nat/upnp-igd.ts). */
  readonly #igd?: VirtualHost;

  constructor(name: string, init: NatRouterInit, fabric: Fabric) {
    super(name, [init.publicAddress, init.insideAddress], fabric);
    this.nat = init.nat;
    this.publicAddress = init.publicAddress;
    this.insideAddress = init.insideAddress;
    this.#portMapping = { bootedAtMs: fabric.clock.now(), nonces: new Map() };
    if (this.nat.behaviour.portMapping?.includes('upnp')) {
      const igd = new VirtualHost(`${name}:igd`, { addresses: [init.insideAddress] }, fabric);
      igd.attach({ send: (packet) => this.sendToward(packet) });
      this.#igd = igd;
      void startIgd({ network: igd, clock: fabric.clock, nat: this.nat }, init.insideAddress);
    }
  }

  setOutside(link: Link): void {
    this.#outside = link;
    this.setDefaultRoute(link);
  }

  override receive(packet: Packet, from: Link): void {
    if (from === this.#outside) this.#fromOutside(packet);
    else this.#fromInside(packet, from);
  }

  #fromInside(packet: Packet, from: Link): void {
    const now = this.fabric.clock.now();
    if (packet.ttl <= 1) {
      this.fabric.trace(this.name, 'ttl-exceeded', packet);
      if (packet.kind !== 'icmp')
        this.sendIcmp('time-exceeded', this.insideAddress, packet.src.address, packet);
      return;
    }
    const dstAddress = packetDstAddress(packet);
    if (!isUnicast(dstAddress)) {
      // A router keeps multicast on its LAN: SSDP reaches its own UPnP daemon, nothing is NATed.
      if (this.#igd && packet.kind === 'udp' && packet.dst.port === SSDP_PORT)
        this.#igd.receive({ ...packet, dst: { address: this.insideAddress, port: SSDP_PORT } });
      else this.fabric.trace(this.name, 'drop', packet, 'multicast or broadcast: not routed');
      return;
    }
    if (dstAddress === this.insideAddress) {
      if (
        packet.kind === 'udp' &&
        packet.dst.port === PORT_MAPPING_PORT &&
        this.#answerPortMapping(packet, now)
      )
        return;
      if (
        this.#igd &&
        ((packet.kind === 'udp' && packet.dst.port === SSDP_PORT) ||
          (packet.kind === 'tcp' && packet.dst.port === IGD_HTTP_PORT))
      ) {
        this.#igd.receive(packet);
        return;
      }
      super.receive(packet, from);
      return;
    }
    if (dstAddress === this.publicAddress) {
      this.#hairpin(packet, now);
      return;
    }
    if (this.routeFor(dstAddress) !== this.#outside) {
      // LAN to LAN behind the same NAT: plain routing.
      this.sendToward({ ...packet, ttl: packet.ttl - 1 });
      return;
    }
    if (packet.kind === 'icmp') {
      const q = packet.quoted;
      const result = this.nat.outboundIcmp({ proto: q.proto, src: q.src, dst: q.dst }, now);
      if (result.action === 'drop') {
        this.fabric.trace(this.name, 'drop', packet, result.reason);
        return;
      }
      const translated: IcmpPacket = {
        ...packet,
        srcAddress: this.publicAddress,
        ttl: packet.ttl - 1,
        quoted: { ...q, dst: result.external },
      };
      this.fabric.trace(this.name, 'nat-out', translated);
      this.sendToward(translated);
      return;
    }
    const result = this.nat.outbound({ proto: packet.kind, src: packet.src, dst: packet.dst }, now);
    if (result.action === 'drop') {
      this.fabric.trace(this.name, 'drop', packet, result.reason);
      return;
    }
    const translated = { ...packet, src: result.src, ttl: packet.ttl - 1 };
    this.fabric.trace(this.name, 'nat-out', translated, result.created ? 'new mapping' : undefined);
    this.sendToward(translated);
  }

  /** PCP or NAT-PMP to our LAN address, when the NAT's behaviour answers them (issue 20). */
  #answerPortMapping(packet: UdpPacket, now: number): boolean {
    const speaks = this.nat.behaviour.portMapping ?? [];
    if (!speaks.includes('pcp') && !speaks.includes('nat-pmp')) return false;
    this.fabric.trace(this.name, 'deliver', packet);
    const answer = answerPortMapping(this.nat, speaks, this.#portMapping, packet.payload, packet.src, now);
    if (answer)
      this.sendToward({
        kind: 'udp',
        id: this.fabric.nextPacketId(),
        src: { address: this.insideAddress, port: PORT_MAPPING_PORT },
        dst: packet.src,
        ttl: 64,
        payload: answer,
      });
    return true;
  }

  /** A reboot: every mapping and lease is gone and the port-mapping epoch starts again. */
  reboot(): void {
    this.nat.reboot();
    this.#portMapping.bootedAtMs = this.fabric.clock.now();
    this.#portMapping.nonces.clear();
  }

  #hairpin(packet: Packet, now: number): void {
    if (packet.kind === 'icmp') {
      this.fabric.trace(this.name, 'drop', packet, 'icmp hairpin not supported');
      return;
    }
    const result = this.nat.hairpin({ proto: packet.kind, src: packet.src, dst: packet.dst }, now);
    if (result.action === 'drop') {
      this.fabric.trace(this.name, 'drop', packet, `hairpin ${result.reason}`);
      if (result.replyIcmp && packet.kind === 'udp') {
        this.sendIcmp('port-unreachable', this.publicAddress, packet.src.address, packet);
      }
      return;
    }
    const looped = { ...packet, src: result.src, dst: result.dst, ttl: packet.ttl - 1 };
    this.fabric.trace(this.name, 'nat-hairpin', looped);
    this.sendToward(looped);
  }

  /**
   * An unsolicited TCP segment, as the profile says (issue 21): RST from the port it was sent to
   * (never for a RST, RFC 9293 §3.10.7.1), ICMP port unreachable, or nothing.
   */
  #refuseSegment(segment: StreamSegment): void {
    const reply = this.nat.behaviour.unsolicitedTcpReply;
    if (reply === 'icmp-port-unreachable')
      this.sendIcmp('port-unreachable', this.publicAddress, segment.src.address, segment);
    else if (reply === 'rst' && segment.flag !== 'rst')
      this.sendToward({
        kind: 'tcp',
        id: this.fabric.nextPacketId(),
        src: segment.dst,
        dst: segment.src,
        ttl: 64,
        flag: 'rst',
        seq: 0,
        ...(segment.wire ? { wire: resetWire(segment.wire) } : {}),
      });
  }

  #fromOutside(packet: Packet): void {
    const now = this.fabric.clock.now();
    if (packetDstAddress(packet) !== this.publicAddress) {
      this.fabric.trace(this.name, 'drop', packet, 'not addressed to the public address');
      return;
    }
    if (packet.ttl <= 1) {
      this.fabric.trace(this.name, 'ttl-exceeded', packet);
      if (packet.kind !== 'icmp')
        this.sendIcmp('time-exceeded', this.publicAddress, packet.src.address, packet);
      return;
    }
    if (packet.kind === 'icmp') {
      const q = packet.quoted;
      const result = this.nat.inboundIcmp({ proto: q.proto, src: q.src, dst: q.dst }, now);
      if (result.action === 'drop') {
        this.fabric.trace(this.name, 'drop', packet, result.reason);
        return;
      }
      const translated: IcmpPacket = {
        ...packet,
        dstAddress: result.internal.address,
        ttl: packet.ttl - 1,
        quoted: { ...q, src: result.internal },
      };
      this.fabric.trace(
        this.name,
        'nat-in',
        translated,
        result.closedMapping ? 'IPS closed the mapping' : undefined,
      );
      this.sendToward(translated);
      return;
    }
    const result = this.nat.inbound({ proto: packet.kind, src: packet.src, dst: packet.dst }, now);
    if (result.action === 'drop') {
      this.fabric.trace(this.name, 'drop', packet, result.reason);
      if (packet.kind === 'tcp') this.#refuseSegment(packet);
      else if (result.replyIcmp)
        this.sendIcmp('port-unreachable', this.publicAddress, packet.src.address, packet);
      return;
    }
    const translated = { ...packet, dst: result.dst, ttl: packet.ttl - 1 };
    this.fabric.trace(this.name, 'nat-in', translated);
    this.sendToward(translated);
  }
}

/** Not 224.0.0.0/4 (multicast), 240.0.0.0/4 (reserved, with the limited broadcast) or 0.0.0.0/8. */
function isUnicast(address: string): boolean {
  // Every packet passes here: read the first octet without splitting the string.
  const first = Number.parseInt(address, 10);
  return first > 0 && first < 224;
}
