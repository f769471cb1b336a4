/** Packets on the virtual network: IPv4 with UDP, a TCP-like stream segment, or an ICMP error. */
import { type Endpoint, formatEndpoint } from '../address.ts';
import type { IcmpErrorType } from '../types.ts';

/** Linux's default IP TTL (net.ipv4.ip_default_ttl). */
export const DEFAULT_TTL = 64;

export interface UdpPacket {
  readonly kind: 'udp';
  readonly id: number;
  readonly src: Endpoint;
  readonly dst: Endpoint;
  readonly ttl: number;
  readonly payload: Uint8Array;
}

export type SegmentFlag = 'syn' | 'syn-ack' | 'data' | 'fin' | 'rst';

export interface StreamSegment {
  readonly kind: 'tcp';
  readonly id: number;
  readonly src: Endpoint;
  readonly dst: Endpoint;
  readonly ttl: number;
  readonly flag: SegmentFlag;
  /** Per-direction sequence number of this segment, so the receiver can restore order. */
  readonly seq: number;
  readonly payload?: Uint8Array;
  /**
   * The real TCP header and payload, when the segment came from a kernel (the lab). Routers and
   * NATs only change addresses and ports; the lab re-encodes the header around them.
   */
  readonly wire?: Uint8Array;
}

/** The header of the packet an ICMP error quotes (RFC 792: IP header + first 8 bytes). */
export interface QuotedHeader {
  readonly proto: 'udp' | 'tcp';
  readonly src: Endpoint;
  readonly dst: Endpoint;
}

export interface IcmpPacket {
  readonly kind: 'icmp';
  readonly id: number;
  readonly srcAddress: string;
  readonly dstAddress: string;
  readonly ttl: number;
  readonly type: IcmpErrorType;
  readonly quoted: QuotedHeader;
}

export type Packet = UdpPacket | StreamSegment | IcmpPacket;

export function packetDstAddress(packet: Packet): string {
  return packet.kind === 'icmp' ? packet.dstAddress : packet.dst.address;
}

export function packetSrcAddress(packet: Packet): string {
  return packet.kind === 'icmp' ? packet.srcAddress : packet.src.address;
}

/** Bytes on the wire: IPv4 (20) + UDP (8) / TCP (20) / ICMP (8 + quoted 28). */
export function packetSize(packet: Packet): number {
  switch (packet.kind) {
    case 'udp':
      return 28 + packet.payload.byteLength;
    case 'tcp':
      return 40 + (packet.payload?.byteLength ?? 0);
    case 'icmp':
      return 56;
  }
}

export function describePacket(packet: Packet): string {
  switch (packet.kind) {
    case 'udp':
      return `udp ${formatEndpoint(packet.src)} > ${formatEndpoint(packet.dst)} ttl=${packet.ttl} len=${packet.payload.byteLength}`;
    case 'tcp':
      return `tcp ${formatEndpoint(packet.src)} > ${formatEndpoint(packet.dst)} ${packet.flag} seq=${packet.seq} len=${packet.payload?.byteLength ?? 0}`;
    case 'icmp':
      return `icmp ${packet.type} ${packet.srcAddress} > ${packet.dstAddress} quoting ${packet.quoted.proto} ${formatEndpoint(packet.quoted.src)} > ${formatEndpoint(packet.quoted.dst)}`;
  }
}

/** An ICMP error from `from` to `to` quoting `cause` (RFC 792). */
export function icmpError(
  id: number,
  type: IcmpErrorType,
  from: string,
  to: string,
  cause: { readonly kind: 'udp' | 'tcp'; readonly src: Endpoint; readonly dst: Endpoint },
): IcmpPacket {
  return {
    kind: 'icmp',
    id,
    srcAddress: from,
    dstAddress: to,
    ttl: DEFAULT_TTL,
    type,
    quoted: { proto: cause.kind, src: cause.src, dst: cause.dst },
  };
}
