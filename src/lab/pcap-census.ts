/**
 * What an eavesdropper on a lab link sees of a call's video (issue 17): reads a pcap the lab wrote
 * (LINKTYPE_RAW IPv4) and counts the RTP packets of one payload type whose payload starts like an
 * H.264 NAL unit (RFC 6184 §5.3: F bit 0; types 1, 5, 7, 8 for slices and parameter sets, 24 and
 * 28 for STAP-A and FU-A). In clear RTP nearly every video packet does; under SRTP the payload is
 * ciphertext and a byte passes the test at random, with probability 1/2 · 6/32 ≈ 9.4 %.
 */
import { readFileSync } from 'node:fs';
import { decodeIpv4 } from '../protocol/ipv4.ts';

/** The share of random first bytes that look like one of the NAL headers below. */
export const RANDOM_NAL_RATE = (1 / 2) * (6 / 32);
const NAL_TYPES = new Set([1, 5, 7, 8, 24, 28]);

export interface NalCensus {
  /** UDP packets in the capture. */
  readonly udpPackets: number;
  /** RTP packets (version 2) of the payload type asked for. */
  readonly rtpPackets: number;
  /** Of those, packets whose first payload byte is a plausible H.264 NAL header. */
  readonly nalLike: number;
  readonly nalLikeFraction: number;
}

/** IPv4 packets of a pcap file, each with its bytes; undecodable records are skipped. */
export function* pcapPackets(path: string): Generator<Uint8Array> {
  const file = readFileSync(path);
  if (file.byteLength < 24 || file.readUInt32LE(0) !== 0xa1b2c3d4)
    throw new Error(`${path} is not a little-endian pcap file`);
  let at = 24;
  while (at + 16 <= file.byteLength) {
    const length = file.readUInt32LE(at + 8);
    const start = at + 16;
    if (start + length > file.byteLength) break; // the writer was stopped mid-record
    yield file.subarray(start, start + length);
    at = start + length;
  }
}

export function nalCensus(path: string, payloadType: number): NalCensus {
  let udpPackets = 0;
  let rtpPackets = 0;
  let nalLike = 0;
  let id = 0;
  for (const bytes of pcapPackets(path)) {
    let packet: ReturnType<typeof decodeIpv4>;
    try {
      packet = decodeIpv4(bytes, id++);
    } catch {
      continue;
    }
    if (packet.kind !== 'udp') continue;
    udpPackets++;
    const p = packet.payload;
    if (p.byteLength < 13 || p[0]! >> 6 !== 2 || (p[1]! & 0x7f) !== payloadType) continue;
    let offset = 12 + 4 * (p[0]! & 0x0f);
    if (p[0]! & 0x10)
      offset += p.byteLength >= offset + 4 ? 4 + 4 * ((p[offset + 2]! << 8) | p[offset + 3]!) : 0;
    if (offset >= p.byteLength) continue;
    rtpPackets++;
    const nal = p[offset]!;
    if ((nal & 0x80) === 0 && NAL_TYPES.has(nal & 0x1f)) nalLike++;
  }
  return { udpPackets, rtpPackets, nalLike, nalLikeFraction: rtpPackets ? nalLike / rtpPackets : 0 };
}
