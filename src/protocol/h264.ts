/**
 * The one thing the gateway needs to know about an H.264 RTP payload (RFC 6184 §5.2-5.8): does it
 * start a keyframe (an IDR slice, or SPS, which our encoder sends right before every IDR)? Pure.
 */
const SPS = 7;
const IDR = 5;
const STAP_A = 24;
const FU_A = 28;

export function startsKeyframe(payload: Uint8Array): boolean {
  if (payload.byteLength < 1) return false;
  const type = payload[0]! & 0x1f;
  if (type === SPS || type === IDR) return true;
  if (type === STAP_A) {
    // STAP-A: [header][size16][nal]... look at each aggregated unit's type.
    let offset = 1;
    while (offset + 3 <= payload.byteLength) {
      const size = (payload[offset]! << 8) | payload[offset + 1]!;
      const inner = payload[offset + 2]! & 0x1f;
      if (inner === SPS || inner === IDR) return true;
      offset += 2 + size;
    }
    return false;
  }
  if (type === FU_A && payload.byteLength >= 2) {
    const fuHeader = payload[1]!;
    return (fuHeader & 0x80) !== 0 && (fuHeader & 0x1f) === IDR;
  }
  return false;
}
