/**
 * The RTCP we use (RFC 3550 §6.4 SR/RR, RFC 4585 §6.3.1 PLI, RFC 5104 §4.3.1 FIR, RFC 3611 §4.4-4.5
 * XR RRTR/DLRR so a receive-only viewer can measure RTT too). SR, RR and the feedback messages are
 * werift-rtp's; the two XR blocks are ours (werift-rtp has none):
 *
 *    XR:   |V=2|P|reserved |   PT=XR=207   |             length            |
 *          |                              SSRC                             |
 *    RRTR: |     BT=4      |   reserved    |       block length = 2        |
 *          |              NTP timestamp, most significant word             |
 *          |             NTP timestamp, least significant word             |
 *    DLRR: |     BT=5      |   reserved    |         block length          |
 *          |                 SSRC_1 | last RR (LRR) | delay since last RR (DLRR)
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import {
  PictureLossIndication,
  RtcpPacketConverter,
  RtcpPayloadSpecificFeedback,
  RtcpReceiverInfo,
  RtcpRrPacket,
  RtcpSenderInfo,
  RtcpSrPacket,
} from 'werift-rtp';
import { DecodeError } from './decode-error.ts';

export interface ReportBlock {
  readonly ssrc: number;
  /** Fraction lost since the last report, 0-255 (/256). */
  readonly fractionLost: number;
  readonly packetsLost: number;
  readonly highestSequence: number;
  /** Interarrival jitter in timestamp units. */
  readonly jitter: number;
  /** Middle 32 bits of the last SR's NTP time, and the delay since, in 1/65536 s. */
  readonly lsr: number;
  readonly dlsr: number;
}

export interface RtcpSummary {
  readonly sr?: {
    readonly ssrc: number;
    readonly ntpMid: number;
    readonly rtpTimestamp: number;
    readonly packetCount: number;
    readonly octetCount: number;
  };
  readonly reports: readonly ReportBlock[];
  /** SSRCs a PLI or FIR asks a keyframe of. */
  readonly keyframeRequests: readonly number[];
  readonly rrtr?: { readonly ssrc: number; readonly ntpMid: number };
  readonly dlrr: readonly { readonly ssrc: number; readonly lrr: number; readonly dlrr: number }[];
}

const XR = 207;

/** The middle 32 bits of a 64-bit NTP time (RFC 3550 §4): 16.16 fixed-point seconds. */
export function ntpMiddle(ntp: bigint): number {
  return Number((ntp >> 16n) & 0xffffffffn);
}

/** Milliseconds on any steady timebase to a 64-bit NTP-format time. */
export function msToNtp(ms: number): bigint {
  const seconds = Math.floor(ms / 1000);
  const fraction = Math.floor(((ms % 1000) / 1000) * 2 ** 32);
  return (BigInt(seconds) << 32n) | BigInt(fraction);
}

/** RFC 3550 §6.4.1: RTT = A - LSR - DLSR, all in 1/65536 s; returned in ms, or null if no echo. */
export function roundTripMs(nowNtpMid: number, lsr: number, dlsr: number): number | null {
  if (lsr === 0) return null;
  const units = (nowNtpMid - lsr - dlsr) >>> 0;
  // A negative difference wraps to a huge value: clock steps or a stale echo. Ignore above 60 s.
  return units > 65536 * 60 ? null : (units * 1000) / 65536;
}

export function encodeSr(init: {
  ssrc: number;
  ntp: bigint;
  rtpTimestamp: number;
  packetCount: number;
  octetCount: number;
  reports?: readonly ReportBlock[];
}): Uint8Array {
  return new RtcpSrPacket({
    ssrc: init.ssrc,
    senderInfo: new RtcpSenderInfo({
      ntpTimestamp: init.ntp,
      rtpTimestamp: init.rtpTimestamp >>> 0,
      packetCount: init.packetCount >>> 0,
      octetCount: init.octetCount >>> 0,
    }),
    reports: (init.reports ?? []).map((r) => new RtcpReceiverInfo({ ...r })),
  }).serialize();
}

export function encodeRr(ssrc: number, reports: readonly ReportBlock[]): Uint8Array {
  return new RtcpRrPacket({ ssrc, reports: reports.map((r) => new RtcpReceiverInfo({ ...r })) }).serialize();
}

export function encodePli(senderSsrc: number, mediaSsrc: number): Uint8Array {
  return new RtcpPayloadSpecificFeedback({
    feedback: new PictureLossIndication({ senderSsrc, mediaSsrc }),
  }).serialize();
}

export function encodeRrtr(ssrc: number, ntp: bigint): Uint8Array {
  const out = new Uint8Array(20);
  const view = new DataView(out.buffer);
  view.setUint8(0, 0x80);
  view.setUint8(1, XR);
  view.setUint16(2, 4);
  view.setUint32(4, ssrc >>> 0);
  view.setUint8(8, 4);
  view.setUint16(10, 2);
  view.setBigUint64(12, ntp);
  return out;
}

export function encodeDlrr(
  ssrc: number,
  items: readonly { ssrc: number; lrr: number; dlrr: number }[],
): Uint8Array {
  const out = new Uint8Array(12 + 12 * items.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, 0x80);
  view.setUint8(1, XR);
  view.setUint16(2, out.byteLength / 4 - 1);
  view.setUint32(4, ssrc >>> 0);
  view.setUint8(8, 5);
  view.setUint16(10, 3 * items.length);
  items.forEach((item, i) => {
    view.setUint32(12 + 12 * i, item.ssrc >>> 0);
    view.setUint32(16 + 12 * i, item.lrr >>> 0);
    view.setUint32(20 + 12 * i, item.dlrr >>> 0);
  });
  return out;
}

function decodeXr(
  packet: Uint8Array,
  into: { rrtr?: RtcpSummary['rrtr']; dlrr: { ssrc: number; lrr: number; dlrr: number }[] },
): void {
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  if (packet.byteLength < 8) throw new DecodeError('rtcp-xr', 0, 'shorter than its header');
  const ssrc = view.getUint32(4);
  let offset = 8;
  while (offset + 4 <= packet.byteLength) {
    const blockType = view.getUint8(offset);
    const words = view.getUint16(offset + 2);
    const end = offset + 4 + 4 * words;
    if (end > packet.byteLength)
      throw new DecodeError('rtcp-xr', offset, `block of ${words} words runs past the end`);
    if (blockType === 4 && words === 2)
      into.rrtr = { ssrc, ntpMid: ntpMiddle(view.getBigUint64(offset + 4)) };
    if (blockType === 5) {
      for (let at = offset + 4; at + 12 <= end; at += 12) {
        into.dlrr.push({
          ssrc: view.getUint32(at),
          lrr: view.getUint32(at + 4),
          dlrr: view.getUint32(at + 8),
        });
      }
    }
    offset = end;
  }
}

/** Every packet of a compound RTCP datagram we understand; throws `DecodeError` on a bad length. */
export function decodeRtcp(data: Uint8Array): RtcpSummary {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const reports: ReportBlock[] = [];
  const keyframeRequests: number[] = [];
  const xr: { rrtr?: RtcpSummary['rrtr']; dlrr: { ssrc: number; lrr: number; dlrr: number }[] } = {
    dlrr: [],
  };
  let sr: RtcpSummary['sr'];
  let offset = 0;
  while (offset + 4 <= data.byteLength) {
    if (view.getUint8(offset) >> 6 !== 2) throw new DecodeError('rtcp', offset, 'version is not 2');
    const type = view.getUint8(offset + 1);
    const end = offset + 4 + 4 * view.getUint16(offset + 2);
    if (end > data.byteLength) throw new DecodeError('rtcp', offset, 'packet length runs past the datagram');
    const packet = data.subarray(offset, end);
    if (type === XR) decodeXr(packet, xr);
    else {
      let packets: ReturnType<typeof RtcpPacketConverter.deSerialize>;
      try {
        packets = RtcpPacketConverter.deSerialize(Buffer.from(packet));
      } catch (error) {
        // werift-rtp reads past short packets with Node's buffer methods (RangeError).
        throw new DecodeError(
          'rtcp',
          offset,
          `undecodable packet of type ${type}: ${(error as Error).message}`,
        );
      }
      for (const p of packets) {
        if (p instanceof RtcpSrPacket) {
          sr = {
            ssrc: p.ssrc,
            ntpMid: ntpMiddle(p.senderInfo.ntpTimestamp),
            rtpTimestamp: p.senderInfo.rtpTimestamp,
            packetCount: p.senderInfo.packetCount,
            octetCount: p.senderInfo.octetCount,
          };
          reports.push(...p.reports);
        } else if (p instanceof RtcpRrPacket) reports.push(...p.reports);
        else if (p instanceof RtcpPayloadSpecificFeedback) {
          if (p.feedback instanceof PictureLossIndication) keyframeRequests.push(p.feedback.mediaSsrc);
          // FIR (RFC 5104 §4.3.1); werift-rtp does not export its class.
          else if (p.feedback && typeof p.feedback === 'object' && 'fir' in p.feedback)
            keyframeRequests.push(...(p.feedback.fir as { ssrc: number }[]).map((entry) => entry.ssrc));
        }
      }
    }
    offset = end;
  }
  if (offset !== data.byteLength)
    throw new DecodeError('rtcp', offset, 'trailing bytes after the last packet');
  return { sr, reports, keyframeRequests, rrtr: xr.rrtr, dlrr: xr.dlrr };
}

/**
 * RTCP APP (RFC 3550 §6.7) named `SC2R`: "my relayed address is now this". A gateway whose NAT
 * dropped its mappings re-allocates on the relay and says so in band, over the relay path that
 * still works, because its signaling connection may have died with the same mappings. The
 * application data ends in an HMAC-SHA256 (first 12 bytes) over the rest under the sender's call
 * password (its SDP `ice-pwd`): without it, any user of the same TURN server could redirect a call
 * (issue 16).
 *   |V=2|P| subtype |   PT=204    |          length = 7           |
 *   |                           SSRC                              |
 *   |                       name 'SC2R'                           |
 *   |                   IPv4 relayed address                      |
 *   |         relayed port          |           (zero)            |
 *   |                  HMAC-SHA256 tag (12 bytes)                 |
 */
const SC2R_BYTES = 32;
const SC2R_SIGNED = 20;

export function encodeRelayMoved(
  ssrc: number,
  relayed: { address: string; port: number },
  key: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(SC2R_BYTES);
  const view = new DataView(out.buffer);
  out[0] = 0x80;
  out[1] = 204;
  view.setUint16(2, SC2R_BYTES / 4 - 1);
  view.setUint32(4, ssrc >>> 0);
  out.set(new TextEncoder().encode('SC2R'), 8);
  relayed.address.split('.').forEach((octet, i) => {
    out[12 + i] = Number(octet);
  });
  view.setUint16(16, relayed.port);
  out.set(relayMovedTag(out, key), SC2R_SIGNED);
  return out;
}

function relayMovedTag(packet: Uint8Array, key: Uint8Array): Uint8Array {
  return new Uint8Array(
    createHmac('sha256', key).update(packet.subarray(0, SC2R_SIGNED)).digest().subarray(0, 12),
  );
}

/** Is this an `SC2R` APP packet (signed or not)? */
export function isRelayMoved(data: Uint8Array): boolean {
  return (
    data.byteLength >= 12 &&
    data[1] === 204 &&
    (data[0]! & 0xc0) === 0x80 &&
    data[8] === 0x53 && // S
    data[9] === 0x43 && // C
    data[10] === 0x32 && // 2
    data[11] === 0x52 // R
  );
}

/**
 * The relayed address in an `SC2R` packet whose tag verifies under `key` (the peer's call
 * password), or undefined for anything else: a forged or truncated one included.
 */
export function decodeRelayMoved(
  data: Uint8Array,
  key: Uint8Array,
): { address: string; port: number } | undefined {
  if (data.byteLength !== SC2R_BYTES || !isRelayMoved(data)) return undefined;
  if (!timingSafeEqual(relayMovedTag(data, key), data.subarray(SC2R_SIGNED))) return undefined;
  const port = (data[16]! << 8) | data[17]!;
  if (port === 0) return undefined;
  return { address: [...data.subarray(12, 16)].join('.'), port };
}
