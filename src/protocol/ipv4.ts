/**
 * IPv4 codec for the kernel lab (RFC 791, UDP RFC 768, TCP RFC 9293, ICMP RFC 792): real packets
 * read from a TUN device become the virtual network's `Packet`s, and back.
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   |Version|  IHL  |Type of Service|          Total Length         |
 *   |         Identification        |Flags|      Fragment Offset    |
 *   |  Time to Live |    Protocol   |         Header Checksum       |
 *   |                       Source Address                          |
 *   |                    Destination Address                        |
 *
 * Only what the lab routes is decoded: UDP, TCP, and ICMP destination-unreachable and
 * time-exceeded errors. Anything else (fragments, options we do not need, ICMP echo) is a
 * DecodeError, which the lab counts and drops.
 */
import { intToIpv4, ipv4ToInt } from '../net/address.ts';
import type { IcmpErrorType } from '../net/types.ts';
import type { IcmpPacket, Packet, QuotedHeader, StreamSegment, UdpPacket } from '../net/virtual/packet.ts';
import { DecodeError } from './decode-error.ts';

const PROTO_ICMP = 1;
const PROTO_TCP = 6;
const PROTO_UDP = 17;

const ICMP_TYPES: Record<string, IcmpErrorType> = {
  '3:3': 'port-unreachable',
  '3:1': 'host-unreachable',
  '11:0': 'time-exceeded',
};
const ICMP_CODES: Record<IcmpErrorType, [number, number]> = {
  'port-unreachable': [3, 3],
  'host-unreachable': [3, 1],
  'time-exceeded': [11, 0],
};

/** Internet checksum (RFC 1071) over `bytes`, starting from a partial sum. */
export function internetChecksum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  const even = bytes.byteLength & ~1;
  for (let i = 0; i < even; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.byteLength & 1) sum += bytes[bytes.byteLength - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function pseudoHeaderSum(src: string, dst: string, proto: number, length: number): number {
  const s = ipv4ToInt(src);
  const d = ipv4ToInt(dst);
  return (s >>> 16) + (s & 0xffff) + (d >>> 16) + (d & 0xffff) + proto + length;
}

function u16(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! << 8) | bytes[offset + 1]!;
}

function u32(bytes: Uint8Array, offset: number): number {
  return (
    ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>>
    0
  );
}

export function decodeIpv4(bytes: Uint8Array, id: number): Packet {
  if (bytes.byteLength < 20)
    throw new DecodeError('ipv4', 0, `packet shorter than 20 bytes (${bytes.byteLength})`);
  if (bytes[0]! >> 4 !== 4) throw new DecodeError('ipv4', 0, `not IPv4 (version ${bytes[0]! >> 4})`);
  const headerLength = (bytes[0]! & 0x0f) * 4;
  if (headerLength < 20 || headerLength > bytes.byteLength)
    throw new DecodeError('ipv4', 0, `bad header length ${headerLength}`);
  const totalLength = u16(bytes, 2);
  if (totalLength < headerLength || totalLength > bytes.byteLength) {
    throw new DecodeError('ipv4', 2, `total length ${totalLength} does not fit ${bytes.byteLength} bytes`);
  }
  if ((u16(bytes, 6) & 0x3fff) !== 0) throw new DecodeError('ipv4', 6, 'fragments are not routed by the lab');
  const ttl = bytes[8]!;
  const proto = bytes[9]!;
  const srcAddress = intToIpv4(u32(bytes, 12));
  const dstAddress = intToIpv4(u32(bytes, 16));
  const body = bytes.subarray(headerLength, totalLength);
  switch (proto) {
    case PROTO_UDP: {
      if (body.byteLength < 8) throw new DecodeError('udp', headerLength, 'UDP header truncated');
      const length = u16(body, 4);
      if (length < 8 || length > body.byteLength)
        throw new DecodeError('udp', headerLength + 4, `bad UDP length ${length}`);
      return {
        kind: 'udp',
        id,
        ttl,
        src: { address: srcAddress, port: u16(body, 0) },
        dst: { address: dstAddress, port: u16(body, 2) },
        payload: body.slice(8, length),
      } satisfies UdpPacket;
    }
    case PROTO_TCP: {
      if (body.byteLength < 20) throw new DecodeError('tcp', headerLength, 'TCP header truncated');
      const dataOffset = (body[12]! >> 4) * 4;
      if (dataOffset < 20 || dataOffset > body.byteLength)
        throw new DecodeError('tcp', headerLength + 12, `bad data offset ${dataOffset}`);
      const flags = body[13]!;
      const flag =
        flags & 0x04
          ? 'rst'
          : flags & 0x02
            ? flags & 0x10
              ? 'syn-ack'
              : 'syn'
            : flags & 0x01
              ? 'fin'
              : 'data';
      return {
        kind: 'tcp',
        id,
        ttl,
        src: { address: srcAddress, port: u16(body, 0) },
        dst: { address: dstAddress, port: u16(body, 2) },
        flag,
        seq: u32(body, 4),
        wire: body.slice(),
      } satisfies StreamSegment;
    }
    case PROTO_ICMP: {
      if (body.byteLength < 8 + 20 + 8)
        throw new DecodeError('icmp', headerLength, 'not an ICMP error with a quoted header');
      const type = ICMP_TYPES[`${body[0]}:${body[1]}`];
      if (!type)
        throw new DecodeError(
          'icmp',
          headerLength,
          `ICMP type ${body[0]} code ${body[1]} is not routed by the lab`,
        );
      const quoted = body.subarray(8);
      const quotedHeaderLength = (quoted[0]! & 0x0f) * 4;
      if (quoted[0]! >> 4 !== 4 || quotedHeaderLength < 20 || quoted.byteLength < quotedHeaderLength + 8) {
        throw new DecodeError('icmp', headerLength + 8, 'quoted packet is not IPv4 with 8 transport bytes');
      }
      const quotedProto = quoted[9];
      if (quotedProto !== PROTO_UDP && quotedProto !== PROTO_TCP) {
        throw new DecodeError('icmp', headerLength + 17, `quoted protocol ${quotedProto} is not UDP or TCP`);
      }
      const header: QuotedHeader = {
        proto: quotedProto === PROTO_UDP ? 'udp' : 'tcp',
        src: { address: intToIpv4(u32(quoted, 12)), port: u16(quoted, quotedHeaderLength) },
        dst: { address: intToIpv4(u32(quoted, 16)), port: u16(quoted, quotedHeaderLength + 2) },
      };
      return { kind: 'icmp', id, ttl, srcAddress, dstAddress, type, quoted: header } satisfies IcmpPacket;
    }
    default:
      throw new DecodeError('ipv4', 9, `protocol ${proto} is not routed by the lab`);
  }
}

function ipHeader(out: Uint8Array, proto: number, ttl: number, src: string, dst: string, id: number): void {
  const view = new DataView(out.buffer, out.byteOffset, 20);
  view.setUint8(0, 0x45);
  view.setUint16(2, out.byteLength);
  view.setUint16(4, id & 0xffff);
  view.setUint16(6, 0x4000); // don't fragment, as Linux sets for UDP with PMTU discovery
  view.setUint8(8, ttl);
  view.setUint8(9, proto);
  view.setUint32(12, ipv4ToInt(src));
  view.setUint32(16, ipv4ToInt(dst));
  view.setUint16(10, internetChecksum(out.subarray(0, 20)));
}

export function encodeIpv4(packet: Packet): Uint8Array {
  switch (packet.kind) {
    case 'udp': {
      const length = 8 + packet.payload.byteLength;
      const out = new Uint8Array(20 + length);
      const view = new DataView(out.buffer);
      view.setUint16(20, packet.src.port);
      view.setUint16(22, packet.dst.port);
      view.setUint16(24, length);
      out.set(packet.payload, 28);
      const sum = internetChecksum(
        out.subarray(20),
        pseudoHeaderSum(packet.src.address, packet.dst.address, PROTO_UDP, length),
      );
      view.setUint16(26, sum === 0 ? 0xffff : sum);
      ipHeader(out, PROTO_UDP, packet.ttl, packet.src.address, packet.dst.address, packet.id);
      return out;
    }
    case 'tcp': {
      if (!packet.wire) throw new RangeError('a TCP segment needs its wire bytes to be encoded');
      const out = new Uint8Array(20 + packet.wire.byteLength);
      out.set(packet.wire, 20);
      const view = new DataView(out.buffer);
      view.setUint16(20, packet.src.port);
      view.setUint16(22, packet.dst.port);
      view.setUint16(36, 0);
      view.setUint16(
        36,
        internetChecksum(
          out.subarray(20),
          pseudoHeaderSum(packet.src.address, packet.dst.address, PROTO_TCP, packet.wire.byteLength),
        ),
      );
      ipHeader(out, PROTO_TCP, packet.ttl, packet.src.address, packet.dst.address, packet.id);
      return out;
    }
    case 'icmp': {
      // ICMP header (8) + quoted IPv4 header (20) + the quoted transport's first 8 bytes.
      const out = new Uint8Array(20 + 8 + 28);
      const view = new DataView(out.buffer);
      const [type, code] = ICMP_CODES[packet.type];
      view.setUint8(20, type);
      view.setUint8(21, code);
      const quoted = out.subarray(28);
      const q = packet.quoted;
      ipHeader(quoted, q.proto === 'udp' ? PROTO_UDP : PROTO_TCP, 1, q.src.address, q.dst.address, 0);
      const qv = new DataView(quoted.buffer, quoted.byteOffset);
      qv.setUint16(20, q.src.port);
      qv.setUint16(22, q.dst.port);
      if (q.proto === 'udp') qv.setUint16(24, 8);
      view.setUint16(22, internetChecksum(out.subarray(20)));
      ipHeader(out, PROTO_ICMP, packet.ttl, packet.srcAddress, packet.dstAddress, packet.id);
      return out;
    }
  }
}

/**
 * The TCP header of a reset answering `wire` (a real segment's TCP header and payload), as RFC
 * 9293 §3.10.7.1 builds it for a closed port: a segment carrying ACK is answered with SEQ = its
 * ACK number; otherwise SEQ 0 with ACK = its SEQ plus its length (a SYN counts one). Ports are
 * left to the encoder, as for every segment crossing a NAT.
 */
export function resetWire(wire: Uint8Array): Uint8Array {
  if (wire.byteLength < 20) throw new RangeError('a TCP header is at least 20 bytes');
  const out = new Uint8Array(20);
  const view = new DataView(out.buffer);
  const flags = wire[13]!;
  const dataOffset = (wire[12]! >> 4) * 4;
  if (flags & 0x10) {
    view.setUint32(4, u32(wire, 8));
    out[13] = 0x04;
  } else {
    const length =
      Math.max(0, wire.byteLength - dataOffset) + (flags & 0x02 ? 1 : 0) + (flags & 0x01 ? 1 : 0);
    view.setUint32(8, (u32(wire, 4) + length) >>> 0);
    out[13] = 0x14;
  }
  out[12] = 5 << 4;
  return out;
}
