/**
 * H.264 RTP depacketization (RFC 6184 §5.6-5.8): payloads in sequence order become whole NAL units,
 * and NAL units with one RTP timestamp become one access unit (a frame). Single NAL unit packets,
 * STAP-A and FU-A (packetization-mode 1, what our encoder and any camera in non-interleaved mode
 * send); STAP-B, MTAP and FU-B (interleaved mode) are dropped and counted. Pure: no I/O, no timers.
 *
 *   FU-A:  [F|NRI|28] [S|E|R|type] fragment...      STAP-A: [F|NRI|24] (size16 NAL)...
 */

const STAP_A = 24;
const FU_A = 28;
/** A NAL unit larger than this is not one we will buffer: a 4K IDR slice stays well under 4 MiB. */
export const MAX_NAL_BYTES = 4 << 20;
/** An access unit of more NAL units than this is garbage (slices per frame are a few dozen at most). */
const MAX_NALS_PER_UNIT = 256;
/** An access unit larger than this (all its NAL units) is garbage: a 4K IDR frame is a few MiB. */
export const MAX_UNIT_BYTES = 8 << 20;

export interface AccessUnit {
  /** RTP timestamp (90 kHz for video, RFC 6184 §5.1). */
  readonly timestamp: number;
  readonly nals: readonly Uint8Array[];
  /** True when one of its NAL units is an IDR slice (type 5). */
  readonly keyframe: boolean;
}

export interface DepacketizerCounters {
  /** FU-A fragments dropped: a start was missing (loss) or a fragment arrived out of its unit. */
  fragmentsDropped: number;
  /** Packets of a type we do not take (interleaved mode) or too short to read. */
  unsupported: number;
  /** NAL units dropped because they grew past `MAX_NAL_BYTES`. */
  oversized: number;
}

export const nalType = (nal: Uint8Array): number => (nal[0] ?? 0) & 0x1f;

/**
 * Feed payloads in sequence order with `push`; whole access units come back from `push` when a
 * packet's marker bit ends one or a new timestamp starts the next (a lost marker packet).
 */
export class H264Depacketizer {
  readonly counters: DepacketizerCounters = { fragmentsDropped: 0, unsupported: 0, oversized: 0 };
  #nals: Uint8Array[] = [];
  /** Bytes held in `#nals`: bounded by `MAX_UNIT_BYTES`, not only by the NAL count. */
  #unitBytes = 0;
  #timestamp?: number;
  #fragments: Uint8Array[] = [];
  #fragmentBytes = 0;
  #inFragment = false;

  /**
   * One RTP payload. `lostBefore` says a sequence gap preceded it: a half-built fragment is then
   * dropped rather than spliced to the wrong data. Returns the access units it completed (0-2).
   */
  push(payload: Uint8Array, timestamp: number, marker: boolean, lostBefore = false): AccessUnit[] {
    const done: AccessUnit[] = [];
    if (lostBefore && this.#inFragment) this.#dropFragment();
    if (this.#timestamp !== undefined && timestamp !== this.#timestamp) {
      // A new frame began without the last one's marker (it was lost): close what we have.
      if (this.#inFragment) this.#dropFragment();
      const unit = this.#flush();
      if (unit) done.push(unit);
    }
    this.#timestamp = timestamp;
    this.#take(payload);
    if (marker) {
      if (this.#inFragment) this.#dropFragment();
      const unit = this.#flush();
      if (unit) done.push(unit);
    }
    return done;
  }

  #take(payload: Uint8Array): void {
    if (payload.byteLength < 1) {
      this.counters.unsupported++;
      return;
    }
    const type = payload[0]! & 0x1f;
    if (type >= 1 && type <= 23) {
      this.#nal(payload);
      return;
    }
    if (type === STAP_A) {
      let offset = 1;
      while (offset + 2 <= payload.byteLength) {
        const size = (payload[offset]! << 8) | payload[offset + 1]!;
        offset += 2;
        if (size === 0 || offset + size > payload.byteLength) {
          this.counters.unsupported++;
          return;
        }
        this.#nal(payload.subarray(offset, offset + size));
        offset += size;
      }
      return;
    }
    if (type === FU_A && payload.byteLength >= 3) {
      const fu = payload[1]!;
      const start = (fu & 0x80) !== 0;
      const end = (fu & 0x40) !== 0;
      if (start) {
        if (this.#inFragment) this.#dropFragment();
        this.#inFragment = true;
        // The reconstructed header: F and NRI from the indicator, the type from the FU header.
        this.#fragments = [Uint8Array.of((payload[0]! & 0xe0) | (fu & 0x1f))];
        this.#fragmentBytes = 1;
      } else if (!this.#inFragment) {
        this.counters.fragmentsDropped++;
        return;
      }
      const part = payload.subarray(2);
      this.#fragmentBytes += part.byteLength;
      if (this.#fragmentBytes > MAX_NAL_BYTES) {
        this.counters.oversized++;
        this.#fragments = [];
        this.#fragmentBytes = 0;
        this.#inFragment = false;
        return;
      }
      this.#fragments.push(part);
      if (end) {
        this.#inFragment = false;
        this.#nal(concat(this.#fragments, this.#fragmentBytes));
        this.#fragments = [];
        this.#fragmentBytes = 0;
      }
      return;
    }
    this.counters.unsupported++;
  }

  #nal(nal: Uint8Array): void {
    if (this.#nals.length >= MAX_NALS_PER_UNIT || this.#unitBytes + nal.byteLength > MAX_UNIT_BYTES) {
      this.counters.unsupported++;
      return;
    }
    // A copy: the payload's buffer belongs to the socket and is reused.
    this.#nals.push(Uint8Array.from(nal));
    this.#unitBytes += nal.byteLength;
  }

  #dropFragment(): void {
    this.counters.fragmentsDropped++;
    this.#fragments = [];
    this.#fragmentBytes = 0;
    this.#inFragment = false;
  }

  #flush(): AccessUnit | undefined {
    const nals = this.#nals;
    const timestamp = this.#timestamp;
    this.#nals = [];
    this.#unitBytes = 0;
    this.#timestamp = undefined;
    if (nals.length === 0 || timestamp === undefined) return undefined;
    return { timestamp, nals, keyframe: nals.some((n) => nalType(n) === 5) };
  }
}

function concat(parts: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}
