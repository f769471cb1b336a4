/**
 * RFC 4571 framing: RTP, RTCP (and here STUN and DTLS too, as RFC 6544 §3 does for ICE-TCP) over a
 * connection-oriented transport. Each datagram travels behind a 16-bit big-endian length; a zero
 * length is legal and carries nothing. Pure: no I/O.
 */
import { DecodeError } from './decode-error.ts';
import { concat } from './dtls/reader.ts';

/** The largest datagram a 16-bit length can carry. */
export const MAX_FRAMED_DATAGRAM = 0xffff;

const EMPTY = new Uint8Array(0);

/** One datagram behind its length field. */
export function frame(datagram: Uint8Array): Uint8Array {
  if (datagram.byteLength > MAX_FRAMED_DATAGRAM)
    throw new RangeError(
      `an RFC 4571 frame carries at most ${MAX_FRAMED_DATAGRAM} bytes, got ${datagram.byteLength}`,
    );
  const out = new Uint8Array(2 + datagram.byteLength);
  out[0] = datagram.byteLength >> 8;
  out[1] = datagram.byteLength & 0xff;
  out.set(datagram, 2);
  return out;
}

/**
 * Turns a byte stream back into datagrams. Holds at most one partial frame (at most
 * `2 + maxDatagram` bytes); a length above `maxDatagram` is an error, since a peer announcing more
 * than any datagram we accept would make us buffer it all.
 */
export class Deframer {
  #buffer: Uint8Array = EMPTY;
  /** Bytes of the stream consumed so far, for error offsets. */
  #consumed = 0;

  constructor(readonly maxDatagram = MAX_FRAMED_DATAGRAM) {
    if (!Number.isInteger(maxDatagram) || maxDatagram < 1 || maxDatagram > MAX_FRAMED_DATAGRAM)
      throw new RangeError(`maxDatagram must be 1..${MAX_FRAMED_DATAGRAM}`);
  }

  /** Bytes held for a frame not yet complete. */
  get pendingBytes(): number {
    return this.#buffer.byteLength;
  }

  /** The datagrams completed by `chunk`, in order. Throws `DecodeError` on an oversized length. */
  push(chunk: Uint8Array): Uint8Array[] {
    const data = this.#buffer.byteLength === 0 ? chunk : concat(this.#buffer, chunk);
    const out: Uint8Array[] = [];
    let at = 0;
    while (data.byteLength - at >= 2) {
      const length = (data[at]! << 8) | data[at + 1]!;
      if (length > this.maxDatagram)
        throw new DecodeError(
          'rfc4571',
          this.#consumed + at,
          `frame of ${length} bytes exceeds ${this.maxDatagram}`,
        );
      if (data.byteLength - at - 2 < length) break;
      if (length > 0) out.push(data.slice(at + 2, at + 2 + length));
      at += 2 + length;
    }
    this.#consumed += at;
    // Keep only the partial frame, copied so the caller's chunk is not retained (most chunks end
    // on a frame boundary: nothing to keep, nothing to allocate).
    this.#buffer = at === data.byteLength ? EMPTY : data.slice(at);
    return out;
  }
}
