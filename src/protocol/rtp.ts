/**
 * The RTP fixed header (RFC 3550 §5.1), read and rewritten in place, and the demultiplexing of one
 * UDP port that carries STUN, RTP and RTCP (RFC 7983 §7, RFC 5761 §4).
 *
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |                           timestamp                           |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |           synchronization source (SSRC) identifier            |
 *    +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
 *
 * The forwarding path only touches these twelve bytes, so it reads and writes them directly instead
 * of building a packet object per datagram (werift-rtp does the RTCP and H.264 work).
 */
import { DecodeError } from './decode-error.ts';

export interface RtpHeaderView {
  readonly payloadType: number;
  readonly marker: boolean;
  readonly sequenceNumber: number;
  readonly timestamp: number;
  readonly ssrc: number;
  /** Where the payload starts (after CSRCs and any header extension). */
  readonly payloadOffset: number;
  /** Where the payload ends (before any padding). */
  readonly payloadEnd: number;
}

/** RFC 7983: first byte 128-191 is RTP or RTCP (0-3 is STUN). */
export function isRtpOrRtcp(data: Uint8Array): boolean {
  return data.byteLength >= 8 && data[0]! >> 6 === 2;
}

/** RFC 5761 §4: RTCP packet types 192-223 fall where RTP payload types 64-95 (with M) would. */
export function isRtcp(data: Uint8Array): boolean {
  return isRtpOrRtcp(data) && data[1]! >= 192 && data[1]! <= 223;
}

export function isRtp(data: Uint8Array): boolean {
  return data.byteLength >= 12 && isRtpOrRtcp(data) && !isRtcp(data);
}

export function decodeRtpHeader(data: Uint8Array): RtpHeaderView {
  if (data.byteLength < 12)
    throw new DecodeError('rtp', 0, `${data.byteLength} bytes is shorter than a header`);
  const b0 = data[0]!;
  if (b0 >> 6 !== 2) throw new DecodeError('rtp', 0, `version ${b0 >> 6}, not 2`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let offset = 12 + 4 * (b0 & 0x0f);
  if (offset > data.byteLength) throw new DecodeError('rtp', 12, 'CSRC list runs past the end');
  if (b0 & 0x10) {
    if (offset + 4 > data.byteLength)
      throw new DecodeError('rtp', offset, 'extension header runs past the end');
    offset += 4 + 4 * view.getUint16(offset + 2);
    if (offset > data.byteLength) throw new DecodeError('rtp', offset, 'extension runs past the end');
  }
  let end = data.byteLength;
  if (b0 & 0x20) {
    const padding = data[end - 1]!;
    if (padding === 0 || end - padding < offset)
      throw new DecodeError('rtp', end - 1, `bad padding ${padding}`);
    end -= padding;
  }
  return {
    payloadType: data[1]! & 0x7f,
    marker: (data[1]! & 0x80) !== 0,
    sequenceNumber: view.getUint16(2),
    timestamp: view.getUint32(4),
    ssrc: view.getUint32(8),
    payloadOffset: offset,
    payloadEnd: end,
  };
}

/** Overwrites sequence number, timestamp and SSRC in place. */
export function rewriteRtpHeader(
  data: Uint8Array,
  fields: { readonly sequenceNumber: number; readonly timestamp: number; readonly ssrc: number },
): void {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  view.setUint16(2, fields.sequenceNumber & 0xffff);
  view.setUint32(4, fields.timestamp >>> 0);
  view.setUint32(8, fields.ssrc >>> 0);
}

/** RFC 3550 §A.1: signed distance from `b` to `a` in 16-bit sequence space. */
export function seqDiff(a: number, b: number): number {
  const d = (a - b) & 0xffff;
  return d >= 0x8000 ? d - 0x10000 : d;
}
