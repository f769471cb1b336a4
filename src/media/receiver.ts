/**
 * The receiving side of a call: RTP from the punched socket goes through a jitter buffer per stream
 * and on to a sink (the recorder), starting at the first keyframe so the recording decodes from its
 * first frame. It keeps RFC 3550 statistics (loss, interarrival jitter per §A.8), sends RR with XR
 * RRTR every interval (RTT for a receive-only endpoint, RFC 3611), and asks for a keyframe (PLI,
 * RFC 4585) when video is lost or has not started.
 */
import { type Clock, every, type Timer } from '../net/clock.ts';
import { startsKeyframe } from '../protocol/h264.ts';
import {
  decodeRtcp,
  encodePli,
  encodeRr,
  encodeRrtr,
  msToNtp,
  ntpMiddle,
  type ReportBlock,
  roundTripMs,
} from '../protocol/rtcp.ts';
import { decodeRtpHeader, isRtcp, isRtp, type RtpHeaderView, seqDiff } from '../protocol/rtp.ts';
import type { Codec } from '../protocol/sdp.ts';
import { type BufferedPacket, JitterBuffer } from './jitter-buffer.ts';
import { emptyCounters, type MediaPath, randomSsrc, rtcpOf, type StreamCounters } from './path.ts';

export type MediaKind = 'video' | 'audio';

export interface ReceiverInit {
  readonly path: MediaPath;
  readonly video: Codec;
  readonly audio?: Codec;
  /** Where ordered packets go, from the first keyframe on. */
  readonly sink: (kind: MediaKind, data: Uint8Array) => void;
  /** How long a gap is waited for. Default 60 ms: above a LAN's reordering, far below a frame's display time. */
  readonly jitterMs?: number;
  readonly rtcpIntervalMs?: number;
  /** At most one PLI this often. Default 1000 ms. */
  readonly pliMinGapMs?: number;
}

export interface ReceiverStreamStats extends StreamCounters {
  readonly lost: number;
  readonly late: number;
  readonly jitterMs: number;
  /** Over the last second. */
  readonly bitrateKbps: number;
  readonly fps: number;
  /** From the first packet to the last: the basis of call averages. */
  readonly activeMs: number;
}

export interface ReceiverStats {
  readonly video: ReceiverStreamStats;
  readonly audio: ReceiverStreamStats;
  readonly rttMs: number | null;
  readonly plisSent: number;
  readonly dropped: number;
  readonly lastPacketAtMs: number | null;
  /** True once a keyframe arrived and media flows to the sink. */
  readonly started: boolean;
}

/** A buffered packet with the header decoded on arrival. */
interface ArrivedPacket extends BufferedPacket {
  readonly header: RtpHeaderView;
}

interface Inbound {
  readonly kind: MediaKind;
  readonly clockRate: number;
  readonly buffer: JitterBuffer<ArrivedPacket>;
  readonly counters: StreamCounters;
  ssrc?: number;
  baseSeq?: number;
  maxSeq?: number;
  cycles: number;
  transitPrev?: number;
  jitter: number;
  expectedPrior: number;
  receivedPrior: number;
  lastSr?: { ntpMid: number; atMs: number };
  lastTimestamp?: number;
  /** (arrival ms, bytes) in the last second, and frame completion times. */
  recent: [number, number][];
  frameTimes: number[];
  /** Buffer losses already answered with a PLI. */
  lostSeen: number;
  keyframeTs?: number;
  firstAtMs?: number;
  lastAtMs?: number;
}

const inbound = (kind: MediaKind, codec: Codec, jitterMs: number): Inbound => ({
  kind,
  clockRate: codec.clockRate,
  buffer: new JitterBuffer<ArrivedPacket>(jitterMs),
  counters: emptyCounters(),
  cycles: 0,
  jitter: 0,
  expectedPrior: 0,
  receivedPrior: 0,
  recent: [],
  frameTimes: [],
  lostSeen: 0,
});

export class MediaReceiver {
  readonly ssrc = randomSsrc();
  readonly #streams: Map<number, Inbound>;
  readonly #timer: Timer;
  readonly #releaseTimer: Timer;
  readonly #off: (() => void)[] = [];
  #started = false;
  #plis = 0;
  #lastPliAtMs = Number.NEGATIVE_INFINITY;
  #dropped = 0;
  #lastPacketAtMs: number | null = null;
  #rttMs: number | null = null;
  #closed = false;

  constructor(
    private readonly c: { readonly clock: Clock },
    private readonly init: ReceiverInit,
  ) {
    const jitterMs = init.jitterMs ?? 60;
    this.#streams = new Map([[init.video.payloadType, inbound('video', init.video, jitterMs)]]);
    if (init.audio) this.#streams.set(init.audio.payloadType, inbound('audio', init.audio, jitterMs));
    this.#off.push(init.path.socket.on('message', (data) => this.#onPacket(data)));
    if (init.path.rtcp) {
      this.#off.push(init.path.rtcp.socket.on('message', (data) => isRtcp(data) && this.#onRtcp(data)));
    }
    this.#timer = every(c.clock, init.rtcpIntervalMs ?? 1000, () => this.#sendReports());
    this.#releaseTimer = every(c.clock, 10, () => {
      for (const stream of this.#streams.values())
        this.#deliver(stream, stream.buffer.release(c.clock.now()));
    });
  }

  stats(): ReceiverStats {
    const now = this.c.clock.now();
    const of = (kind: MediaKind): ReceiverStreamStats => {
      const s = [...this.#streams.values()].find((x) => x.kind === kind);
      if (!s)
        return { ...emptyCounters(), lost: 0, late: 0, jitterMs: 0, bitrateKbps: 0, fps: 0, activeMs: 0 };
      const bytes = s.recent.filter(([at]) => now - at <= 1000).reduce((a, [, b]) => a + b, 0);
      return {
        ...s.counters,
        lost: Math.max(0, this.#expected(s) - s.counters.packets),
        late: s.buffer.counters.late,
        jitterMs: (s.jitter * 1000) / s.clockRate,
        bitrateKbps: (bytes * 8) / 1000,
        fps: s.frameTimes.filter((at) => now - at <= 1000).length,
        activeMs: s.firstAtMs === undefined ? 0 : (s.lastAtMs ?? s.firstAtMs) - s.firstAtMs,
      };
    };
    return {
      video: of('video'),
      audio: of('audio'),
      rttMs: this.#rttMs,
      plisSent: this.#plis,
      dropped: this.#dropped,
      lastPacketAtMs: this.#lastPacketAtMs,
      started: this.#started,
    };
  }

  /** Idempotent; the path sockets stay open. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#timer.clear();
    this.#releaseTimer.clear();
    for (const off of this.#off) off();
  }

  #onPacket(data: Uint8Array): void {
    if (this.#closed) return;
    if (isRtcp(data)) {
      this.#onRtcp(data);
      return;
    }
    if (!isRtp(data)) return; // STUN checks and keepalives belong to the puncher
    let header: ReturnType<typeof decodeRtpHeader>;
    try {
      header = decodeRtpHeader(data);
    } catch {
      this.#dropped++;
      return;
    }
    const stream = this.#streams.get(header.payloadType);
    if (!stream) {
      this.#dropped++;
      return;
    }
    const now = this.c.clock.now();
    this.#lastPacketAtMs = now;
    if (stream.ssrc !== header.ssrc) {
      stream.ssrc = header.ssrc;
      stream.baseSeq = header.sequenceNumber;
      stream.maxSeq = header.sequenceNumber;
      stream.cycles = 0;
      stream.transitPrev = undefined;
    }
    this.#track(stream, header.sequenceNumber, header.timestamp, now);
    stream.counters.packets++;
    stream.counters.bytes += data.byteLength;
    stream.recent.push([now, data.byteLength]);
    stream.firstAtMs ??= now;
    stream.lastAtMs = now;
    if (stream.recent.length > 4000) stream.recent.splice(0, 2000);
    // The socket may reuse its buffer: keep a copy while it waits in the buffer.
    const copy = Uint8Array.from(data);
    this.#deliver(
      stream,
      stream.buffer.push({ sequenceNumber: header.sequenceNumber, data: copy, arrivedAtMs: now, header }),
    );
  }

  /** RFC 3550 §A.1 extended sequence numbers and §A.8 interarrival jitter. */
  #track(s: Inbound, seq: number, timestamp: number, nowMs: number): void {
    if (s.maxSeq !== undefined && seqDiff(seq, s.maxSeq) > 0) {
      if (seq < s.maxSeq) s.cycles += 0x10000;
      s.maxSeq = seq;
    }
    const arrival = (nowMs * s.clockRate) / 1000;
    const transit = arrival - timestamp;
    if (s.transitPrev !== undefined && s.lastTimestamp !== timestamp) {
      const d = Math.abs(transit - s.transitPrev);
      s.jitter += (d - s.jitter) / 16;
    }
    s.transitPrev = transit;
    s.lastTimestamp = timestamp;
  }

  #expected(s: Inbound): number {
    if (s.baseSeq === undefined || s.maxSeq === undefined) return 0;
    return s.cycles + s.maxSeq - s.baseSeq + 1;
  }

  #deliver(stream: Inbound, packets: readonly ArrivedPacket[]): void {
    // Lost video means broken references until the next keyframe: ask for one.
    if (stream.kind === 'video' && stream.buffer.counters.lost > stream.lostSeen) this.#pli(stream);
    stream.lostSeen = stream.buffer.counters.lost;
    for (const { data, header } of packets) {
      if (stream.kind === 'video') {
        const payload = data.subarray(header.payloadOffset, header.payloadEnd);
        if (startsKeyframe(payload)) {
          this.#started = true;
          // SPS, PPS and the IDR slices of one keyframe share its timestamp.
          if (stream.keyframeTs !== header.timestamp) stream.counters.keyframes++;
          stream.keyframeTs = header.timestamp;
        }
        if (!this.#started) {
          this.#pli(stream);
          continue;
        }
        if (header.marker) {
          stream.counters.frames++;
          stream.frameTimes.push(this.c.clock.now());
          if (stream.frameTimes.length > 240) stream.frameTimes.splice(0, 120);
        }
      } else if (!this.#started) continue;
      this.init.sink(stream.kind, data);
    }
  }

  /** Asks the sender for a keyframe (PLI), within the same rate limit as loss-driven ones. */
  requestKeyframe(): void {
    for (const stream of this.#streams.values()) if (stream.kind === 'video') this.#pli(stream);
  }

  #pli(stream: Inbound): void {
    const now = this.c.clock.now();
    if (stream.ssrc === undefined || now - this.#lastPliAtMs < (this.init.pliMinGapMs ?? 1000)) return;
    this.#lastPliAtMs = now;
    this.#plis++;
    const rtcp = rtcpOf(this.init.path);
    rtcp.socket.send(encodePli(this.ssrc, stream.ssrc), rtcp.remote);
  }

  #onRtcp(data: Uint8Array): void {
    let summary: ReturnType<typeof decodeRtcp>;
    try {
      summary = decodeRtcp(data);
    } catch {
      this.#dropped++;
      return;
    }
    const now = this.c.clock.now();
    if (summary.sr) {
      const stream = [...this.#streams.values()].find((s) => s.ssrc === summary.sr!.ssrc);
      if (stream) stream.lastSr = { ntpMid: summary.sr.ntpMid, atMs: now };
    }
    for (const item of summary.dlrr) {
      if (item.ssrc !== this.ssrc) continue;
      const rtt = roundTripMs(ntpMiddle(msToNtp(now)), item.lrr, item.dlrr);
      if (rtt !== null) this.#rttMs = rtt;
    }
  }

  #sendReports(): void {
    const now = this.c.clock.now();
    const blocks: ReportBlock[] = [];
    for (const s of this.#streams.values()) {
      if (s.ssrc === undefined || s.maxSeq === undefined) continue;
      const expected = this.#expected(s);
      const expectedInterval = expected - s.expectedPrior;
      const receivedInterval = s.counters.packets - s.receivedPrior;
      s.expectedPrior = expected;
      s.receivedPrior = s.counters.packets;
      const lostInterval = expectedInterval - receivedInterval;
      blocks.push({
        ssrc: s.ssrc,
        fractionLost:
          expectedInterval > 0 && lostInterval > 0 ? Math.floor((lostInterval * 256) / expectedInterval) : 0,
        packetsLost: Math.max(0, expected - s.counters.packets),
        highestSequence: (s.cycles + s.maxSeq) >>> 0,
        jitter: Math.round(s.jitter),
        lsr: s.lastSr?.ntpMid ?? 0,
        dlsr: s.lastSr ? Math.round(((now - s.lastSr.atMs) * 65536) / 1000) : 0,
      });
    }
    if (blocks.length === 0) return;
    const rr = encodeRr(this.ssrc, blocks);
    const rrtr = encodeRrtr(this.ssrc, msToNtp(now));
    const compound = new Uint8Array(rr.byteLength + rrtr.byteLength);
    compound.set(rr, 0);
    compound.set(rrtr, rr.byteLength);
    const rtcp = rtcpOf(this.init.path);
    rtcp.socket.send(compound, rtcp.remote);
  }
}
