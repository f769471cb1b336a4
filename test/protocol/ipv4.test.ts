import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Packet } from '../../src/net/virtual/packet.ts';
import { DecodeError } from '../../src/protocol/decode-error.ts';
import { decodeIpv4, encodeIpv4, internetChecksum } from '../../src/protocol/ipv4.ts';

const hex = (text: string): Uint8Array => new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'hex'));

describe('IPv4 codec', () => {
  it('computes the RFC 1071 example checksum', () => {
    // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement 220d).
    expect(internetChecksum(hex('0001 f203 f4f5 f6f7'))).toBe(0x220d);
  });

  it('decodes a hand-built UDP datagram (golden bytes)', () => {
    // 10.0.1.2:40000 -> 198.18.0.10:9000, payload "ping"; built by hand in the layout Linux sends
    // (DF set, TTL 64), header checksum left 0 because the lab does not verify it on read.
    const bytes = hex('4500 0020 1c46 4000 4011 0000 0a00 0102 c612 000a 9c40 2328 000c 0000 7069 6e67');
    const packet = decodeIpv4(bytes, 1);
    expect(packet).toMatchObject({
      kind: 'udp',
      ttl: 64,
      src: { address: '10.0.1.2', port: 40000 },
      dst: { address: '198.18.0.10', port: 9000 },
      payload: new TextEncoder().encode('ping'),
    });
  });

  it('encodes headers whose checksums verify, and decodes them back', () => {
    const udp: Packet = {
      kind: 'udp',
      id: 7,
      ttl: 63,
      src: { address: '198.18.1.1', port: 20000 },
      dst: { address: '198.18.0.10', port: 3478 },
      payload: new Uint8Array([1, 2, 3]),
    };
    const bytes = encodeIpv4(udp);
    expect(internetChecksum(bytes.subarray(0, 20))).toBe(0);
    expect(decodeIpv4(bytes, 7)).toEqual(udp);
  });

  it('round-trips UDP, TCP and ICMP errors', () => {
    const endpoint = fc.record({ address: fc.ipV4(), port: fc.integer({ min: 1, max: 65535 }) });
    const udp = fc.record({
      kind: fc.constant('udp' as const),
      id: fc.constant(1),
      ttl: fc.integer({ min: 1, max: 255 }),
      src: endpoint,
      dst: endpoint,
      payload: fc.uint8Array({ maxLength: 1400 }),
    });
    const icmp = fc.record({
      kind: fc.constant('icmp' as const),
      id: fc.constant(1),
      ttl: fc.integer({ min: 1, max: 255 }),
      srcAddress: fc.ipV4(),
      dstAddress: fc.ipV4(),
      type: fc.constantFrom(
        'port-unreachable' as const,
        'time-exceeded' as const,
        'host-unreachable' as const,
      ),
      quoted: fc.record({
        proto: fc.constantFrom('udp' as const, 'tcp' as const),
        src: endpoint,
        dst: endpoint,
      }),
    });
    fc.assert(
      fc.property(fc.oneof(udp, icmp), (packet) => {
        expect(decodeIpv4(encodeIpv4(packet), 1)).toEqual(packet);
      }),
    );
    // TCP keeps its wire bytes; the NAT rewrites only the ports and the checksum follows.
    const syn = new Uint8Array(20);
    syn[12] = 5 << 4;
    syn[13] = 0x02;
    const tcp = decodeIpv4(
      encodeIpv4({
        kind: 'tcp',
        id: 1,
        ttl: 64,
        src: { address: '10.0.1.2', port: 5555 },
        dst: { address: '198.18.0.10', port: 5060 },
        flag: 'syn',
        seq: 0,
        wire: syn,
      }),
      1,
    );
    expect(tcp).toMatchObject({ kind: 'tcp', flag: 'syn', src: { port: 5555 }, dst: { port: 5060 } });
  });

  it('rejects anything else with DecodeError only', () => {
    expect(() => decodeIpv4(hex('6000 0000'), 1)).toThrow(DecodeError);
    expect(() =>
      decodeIpv4(hex('4500 0020 0000 2000 4011 0000 0a00 0102 c612 000a 9c40 2328 000c 0000 7069 6e67'), 1),
    ).toThrow(/fragments/);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (bytes) => {
        if (bytes.byteLength > 0) bytes[0] = 0x45;
        try {
          decodeIpv4(bytes, 1);
        } catch (error) {
          expect(error).toBeInstanceOf(DecodeError);
        }
      }),
      { numRuns: 3000 },
    );
  });
});
