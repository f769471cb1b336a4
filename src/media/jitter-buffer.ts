/**
 * A small reordering buffer for one RTP stream. Packets leave in sequence order; a missing packet
 * is waited for at most `delayMs` after a later one arrived, then counted lost and skipped. Pure:
 * time is passed in, and `release` is called from the owner's timer.
 */
import { seqDiff } from '../protocol/rtp.ts';

export interface BufferedPacket {
  readonly sequenceNumber: number;
  readonly data: Uint8Array;
  readonly arrivedAtMs: number;
}

export interface JitterBufferCounters {
  /** Sequence numbers given up on. */
  lost: number;
  /** Packets that arrived after their place had been passed, or twice. */
  late: number;
  reordered: number;
}

/** More than this many packets ahead of the expected one means the sender restarted its numbering. */
const MAX_GAP = 3000;

/** `P` carries whatever the owner decoded on arrival, so nothing is decoded twice. */
export class JitterBuffer<P extends BufferedPacket = BufferedPacket> {
  readonly counters: JitterBufferCounters = { lost: 0, late: 0, reordered: 0 };
  readonly #held = new Map<number, P>();
  #next?: number;

  constructor(readonly delayMs: number) {}

  /** Adds a packet; returns the packets that can leave now, in order. */
  push(packet: P): P[] {
    if (this.#next === undefined) this.#next = packet.sequenceNumber;
    const ahead = seqDiff(packet.sequenceNumber, this.#next);
    if (ahead < 0 || this.#held.has(packet.sequenceNumber)) {
      this.counters.late++;
      return [];
    }
    if (ahead > MAX_GAP) {
      // A new numbering: flush what we hold and start over at this packet.
      const flushed = this.#drainAll();
      this.#next = packet.sequenceNumber;
      this.#held.set(packet.sequenceNumber, packet);
      return [...flushed, ...this.#drainContiguous()];
    }
    if (ahead > 0 && this.#held.size === 0) this.counters.reordered++;
    this.#held.set(packet.sequenceNumber, packet);
    return this.#drainContiguous();
  }

  /** Gives up on gaps older than `delayMs`; returns what can leave after that. */
  release(nowMs: number): P[] {
    const out: P[] = [];
    while (this.#held.size > 0 && this.#next !== undefined) {
      if (this.#held.has(this.#next)) {
        out.push(...this.#drainContiguous());
        continue;
      }
      const oldest = Math.min(...[...this.#held.values()].map((p) => p.arrivedAtMs));
      if (nowMs - oldest < this.delayMs) break;
      // Skip to the first held packet: everything before it is lost.
      const first = [...this.#held.keys()].reduce((a, b) => (seqDiff(b, a) < 0 ? b : a));
      this.counters.lost += seqDiff(first, this.#next);
      this.#next = first;
    }
    return out;
  }

  get held(): number {
    return this.#held.size;
  }

  #drainContiguous(): P[] {
    const out: P[] = [];
    while (this.#next !== undefined && this.#held.has(this.#next)) {
      out.push(this.#held.get(this.#next)!);
      this.#held.delete(this.#next);
      this.#next = (this.#next + 1) & 0xffff;
    }
    return out;
  }

  #drainAll(): P[] {
    const sorted = [...this.#held.values()].sort((a, b) => seqDiff(a.sequenceNumber, b.sequenceNumber));
    this.#held.clear();
    return sorted;
  }
}
