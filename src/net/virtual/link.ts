/**
 * A point-to-point link with per-direction one-way latency, jitter and loss, drawn from a seeded
 * RNG. Stream segments are never lost: the stream model stands for TCP after retransmission.
 */

import type { Rng } from '../../util/rng.ts';
import type { Clock } from '../clock.ts';
import { type Packet, packetSize } from './packet.ts';
import type { TraceSink } from './trace.ts';

export interface LinkDirectionInit {
  /** One-way latency. Default 0. */
  readonly latencyMs?: number;
  /** Extra delay drawn uniformly from [0, jitterMs). Default 0. Jitter can reorder UDP. */
  readonly jitterMs?: number;
  /** Probability in [0, 1] that a UDP or ICMP packet is dropped. Default 0. */
  readonly loss?: number;
  /**
   * Tampering, as an on-path attacker would: every Nth UDP datagram that looks like RTP (version
   * 2) and carries at least 100 bytes gets the lowest bit of its middle byte flipped, past any RTP
   * header. Default off.
   */
  readonly corruptEvery?: number;
}

export interface LinkInit extends LinkDirectionInit {
  /** Overrides for the downstream -> upstream direction. */
  readonly up?: LinkDirectionInit;
  /** Overrides for the upstream -> downstream direction. */
  readonly down?: LinkDirectionInit;
}

export interface LinkCounters {
  packets: number;
  bytes: number;
  lostPackets: number;
  /** Datagrams whose payload `corruptEvery` changed. */
  corruptedPackets: number;
  /**
   * Of `packets`/`bytes` (IP bytes), the UDP datagrams that look like RTP or RTCP (version 2, RFC
   * 3550) and those that look like TURN ChannelData (first byte 0x40-0x4F, RFC 8656 §12): media
   * direct and media through a relay, classified the way a monitoring probe on the wire would.
   */
  rtpPackets: number;
  rtpBytes: number;
  channelDataPackets: number;
  channelDataBytes: number;
}

const emptyCounters = (): LinkCounters => ({
  packets: 0,
  bytes: 0,
  lostPackets: 0,
  corruptedPackets: 0,
  rtpPackets: 0,
  rtpBytes: 0,
  channelDataPackets: 0,
  channelDataBytes: 0,
});

/** Something a link delivers to. */
export interface LinkEnd {
  readonly name: string;
  receive(packet: Packet, from: Link): void;
}

interface Direction {
  readonly latencyMs: number;
  readonly jitterMs: number;
  readonly loss: number;
  readonly corruptEvery: number;
  readonly counters: LinkCounters;
}

function direction(base: LinkDirectionInit, override: LinkDirectionInit | undefined): Direction {
  const merged = { ...base, ...override };
  const latencyMs = merged.latencyMs ?? 0;
  const jitterMs = merged.jitterMs ?? 0;
  const loss = merged.loss ?? 0;
  if (!(latencyMs >= 0) || !(jitterMs >= 0)) throw new RangeError('link latencyMs and jitterMs must be >= 0');
  if (!(loss >= 0 && loss <= 1)) throw new RangeError('link loss must be within [0, 1]');
  const corruptEvery = merged.corruptEvery ?? 0;
  if (!(Number.isInteger(corruptEvery) && corruptEvery >= 0))
    throw new RangeError('link corruptEvery must be a whole number');
  return { latencyMs, jitterMs, loss, corruptEvery, counters: emptyCounters() };
}

export class Link {
  /** Sees every packet that enters the link and is not lost (the lab's pcap writer). */
  tap?: (packet: Packet, direction: 'up' | 'down') => void;
  readonly #up: Direction;
  readonly #down: Direction;

  constructor(
    readonly downstream: LinkEnd,
    readonly upstream: LinkEnd,
    init: LinkInit,
    private readonly clock: Clock,
    private readonly rng: Rng,
    private readonly trace?: TraceSink,
  ) {
    this.#up = direction(init, init.up);
    this.#down = direction(init, init.down);
  }

  get name(): string {
    return `${this.downstream.name}<->${this.upstream.name}`;
  }

  /** Counters for traffic going up (downstream -> upstream) and down. */
  counters(): { up: Readonly<LinkCounters>; down: Readonly<LinkCounters> } {
    return { up: { ...this.#up.counters }, down: { ...this.#down.counters } };
  }

  /** Sends `packet` from `from` to the other end. */
  send(given: Packet, from: LinkEnd): void {
    let packet = given;
    const goingUp = from === this.downstream;
    const dir = goingUp ? this.#up : this.#down;
    const to = goingUp ? this.upstream : this.downstream;
    const size = packetSize(packet);
    dir.counters.packets++;
    dir.counters.bytes += size;
    if (packet.kind === 'udp' && packet.payload.byteLength >= 4) {
      const first = packet.payload[0]!;
      if ((first & 0xc0) === 0x80) {
        dir.counters.rtpPackets++;
        dir.counters.rtpBytes += size;
        if (
          dir.corruptEvery > 0 &&
          packet.payload.byteLength >= 100 &&
          dir.counters.rtpPackets % dir.corruptEvery === 0
        ) {
          const payload = packet.payload.slice();
          payload[payload.byteLength >> 1]! ^= 0x01;
          packet = { ...packet, payload };
          dir.counters.corruptedPackets++;
        }
      } else if (first >= 0x40 && first <= 0x4f) {
        dir.counters.channelDataPackets++;
        dir.counters.channelDataBytes += size;
      }
    }
    // Always draw, so one packet's loss decision does not shift every later draw with the traffic mix.
    const lossDraw = this.rng.next();
    const jitterDraw = this.rng.next();
    if (packet.kind !== 'tcp' && lossDraw < dir.loss) {
      dir.counters.lostPackets++;
      this.trace?.({ timeMs: this.clock.now(), node: this.name, event: 'loss', packet });
      return;
    }
    const delayMs = dir.latencyMs + jitterDraw * dir.jitterMs;
    this.tap?.(packet, goingUp ? 'up' : 'down');
    // A zero-delay hop (a LAN cable) should not cost a timer tick: on a real clock that is ~1 ms.
    if (delayMs === 0) queueMicrotask(() => to.receive(packet, this));
    else this.clock.setTimeout(() => to.receive(packet, this), delayMs);
  }
}
