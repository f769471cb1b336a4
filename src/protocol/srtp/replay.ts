/**
 * SRTP replay protection (RFC 3711 §3.3.2) and packet-index estimation (Appendix A), per SSRC.
 * `check` runs before authentication and changes nothing; `commit` runs after, so a forged packet
 * can neither advance the window nor move the rollover counter.
 */

/** Packets behind the highest index still accepted once. RFC 3711 asks for at least 64. */
export const REPLAY_WINDOW = 128;

export class ReplayWindow {
  /** Highest accepted index, -1 before the first packet. */
  #highest = -1;
  /** Bit i set: index `highest - i` was seen. */
  #seen = 0n;

  get highest(): number {
    return this.#highest;
  }

  /** True when `index` is new and inside the window. */
  check(index: number): boolean {
    if (index > this.#highest) return true;
    const behind = this.#highest - index;
    if (behind >= REPLAY_WINDOW) return false;
    return ((this.#seen >> BigInt(behind)) & 1n) === 0n;
  }

  commit(index: number): void {
    const mask = (1n << BigInt(REPLAY_WINDOW)) - 1n;
    if (index > this.#highest) {
      const ahead = this.#highest < 0 ? REPLAY_WINDOW : index - this.#highest;
      this.#seen = ahead >= REPLAY_WINDOW ? 1n : ((this.#seen << BigInt(ahead)) | 1n) & mask;
      this.#highest = index;
    } else this.#seen |= 1n << BigInt(this.#highest - index);
  }
}

/** RFC 3711 Appendix A: the 48-bit index of sequence number `seq` given the highest index seen. */
export function estimateIndex(highest: number, seq: number): number {
  if (highest < 0) return seq;
  const roc = Math.floor(highest / 65536);
  const sl = highest % 65536;
  let v = roc;
  if (sl < 32768) {
    if (seq - sl > 32768) v = roc - 1;
  } else if (sl - 32768 > seq) v = roc + 1;
  return v < 0 ? -1 : v * 65536 + seq;
}
