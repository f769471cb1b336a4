/**
 * Issue 23: the checksum differences the eBPF kernel path's routes carry (bpf-offload.ts). The
 * program applies them as the kernel's `inet_proto_csum_replace_by_diff` does, to checksum words
 * read in the host's byte order; here a datagram's checksums are computed from scratch before and
 * after the rewrite, and the difference applied to the old ones must give the new ones.
 */
import { endianness } from 'node:os';
import { describe, expect, it } from 'vitest';
import { routeKey, routeValue } from '../../src/relay/bpf-offload.ts';

function onesSum(bytes: Buffer): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += bytes.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** An IPv4 header and a UDP datagram with both checksums computed. */
function datagram(
  src: string,
  sport: number,
  dst: string,
  dport: number,
  ttl: number,
  payload: Buffer,
): Buffer {
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(28 + payload.length, 2);
  ip[8] = ttl;
  ip[9] = 17;
  Buffer.from(src.split('.').map(Number)).copy(ip, 12);
  Buffer.from(dst.split('.').map(Number)).copy(ip, 16);
  ip.writeUInt16BE(~onesSum(ip) & 0xffff, 10);
  const udp = Buffer.alloc(8 + payload.length);
  udp.writeUInt16BE(sport, 0);
  udp.writeUInt16BE(dport, 2);
  udp.writeUInt16BE(udp.length, 4);
  payload.copy(udp, 8);
  const pseudo = Buffer.concat([ip.subarray(12, 20), Buffer.from([0, 17]), udp.subarray(4, 6)]);
  const padded = udp.length % 2 ? Buffer.concat([udp, Buffer.alloc(1)]) : udp;
  const check = ~onesSum(Buffer.concat([pseudo, padded])) & 0xffff;
  udp.writeUInt16BE(check === 0 ? 0xffff : check, 6);
  return Buffer.concat([ip, udp]);
}

const read16 = (b: Buffer, at: number) => (endianness() === 'LE' ? b.readUInt16LE(at) : b.readUInt16BE(at));

/** What the kernel does with a difference: the checksum word as the host reads it, updated. */
function applyDiff(check: number, diff: number): number {
  let sum = diff + (~check & 0xffff);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

describe('eBPF kernel path: route values (issue 23)', () => {
  const cases = [
    { peer: ['198.18.7.1', 5000], relayed: ['198.18.7.2', 40_000], client: ['198.18.7.3', 6000] },
    { peer: ['203.0.113.200', 65_535], relayed: ['198.18.0.10', 1], client: ['10.255.255.254', 49_152] },
    { peer: ['1.2.3.4', 443], relayed: ['255.255.255.254', 3478], client: ['198.19.255.255', 2] },
  ] as const;

  it.each(cases)('the differences turn the old checksums into those of the rewritten datagram (%o)', (c) => {
    for (const size of [0, 1, 100, 1201]) {
      const payload = Buffer.from(Array.from({ length: size }, (_, i) => (i * 37 + size) & 0xff));
      const before = datagram(c.peer[0], c.peer[1], c.relayed[0], c.relayed[1], 61, payload);
      const after = datagram(c.relayed[0], c.relayed[1], c.client[0], c.client[1], 61, payload);
      const value = routeValue(
        {
          peer: { address: c.peer[0], port: c.peer[1] },
          relayed: { address: c.relayed[0], port: c.relayed[1] },
          client: { address: c.client[0], port: c.client[1] },
        },
        7,
        c.client[0],
        3,
      );
      const addrDiff = read16(value, 18);
      const portDiff = read16(value, 20);
      // The IP header: the addresses' difference (the TTL is the program's own, unchanged here).
      expect(applyDiff(read16(before, 10), addrDiff)).toBe(read16(after, 10));
      // UDP: the pseudo-header's addresses, then the ports. (0 and 0xffff are one number.)
      const udp = applyDiff(applyDiff(read16(before, 26), addrDiff), portDiff);
      expect(udp === 0 ? 0xffff : udp).toBe(read16(after, 26));
    }
  });

  it('lays the route out as relay.bpf.c reads it', () => {
    const value = routeValue(
      {
        peer: { address: '198.18.7.1', port: 5000 },
        relayed: { address: '198.18.7.2', port: 40_000 },
        client: { address: '198.18.9.1', port: 6001 },
      },
      0x0102_0304,
      '198.18.7.1',
      9,
    );
    expect(value).toHaveLength(36);
    expect([...value.subarray(0, 6)]).toEqual([198, 18, 7, 1, 0x13, 0x88]); // peer, port 5000
    expect([...value.subarray(6, 8)]).toEqual([0x9c, 0x40]); // relayed port 40000
    expect([...value.subarray(8, 16)]).toEqual([198, 18, 7, 2, 198, 18, 9, 1]);
    expect([...value.subarray(16, 18)]).toEqual([0x17, 0x71]); // client port 6001
    expect([...value.subarray(22, 24)]).toEqual([0, 0]);
    const u32 = (at: number) => (endianness() === 'LE' ? value.readUInt32LE(at) : value.readUInt32BE(at));
    expect(u32(24)).toBe(0x0102_0304);
    expect([...value.subarray(28, 32)]).toEqual([198, 18, 7, 1]);
    expect(u32(32)).toBe(9);
    expect([...routeKey({ address: '198.18.7.2', port: 40_000 })]).toEqual([198, 18, 7, 2, 0x9c, 0x40, 0, 0]);
  });

  it('refuses what is not an address before it becomes bytes', () => {
    const bad = { address: '198.18.7.3; flush ruleset', port: 1 };
    expect(() => routeKey(bad)).toThrow(/not an IPv4 host address/);
    expect(() =>
      routeValue({ peer: bad, relayed: { address: '198.18.7.2', port: 1 }, client: bad }, 1, '198.18.7.1', 0),
    ).toThrow(/not an IPv4 host address/);
  });
});
