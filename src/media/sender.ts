/**
 * The sending side of a call: ffmpeg encodes the source to RTP on loopback, and this forwards each
 * packet out through the punched socket under our own SSRC, sequence and timestamp space, so the
 * stream stays continuous when ffmpeg is restarted. It sends an RTCP SR per stream every interval,
 * reads the peer's RR (loss, jitter, RTT) and answers PLI/FIR with a keyframe.
 *
 * ffmpeg (5.1) cannot be told to make a keyframe while it runs, so a keyframe request restarts the
 * encoder: its first frame is an IDR with SPS/PPS. Requests within `keyframeMinGapMs` of the last
 * keyframe are ignored (that keyframe is still on its way).
 */
import { type Clock, every, type Timer } from '../net/clock.ts';
import type { Network, UdpSocket } from '../net/types.ts';
import { startsKeyframe } from '../protocol/h264.ts';
import { decodeRtcp, encodeDlrr, encodeSr, msToNtp, ntpMiddle, roundTripMs } from '../protocol/rtcp.ts';
import { decodeRtpHeader, isRtcp, isRtp, rewriteRtpHeader } from '../protocol/rtp.ts';
import type { Codec } from '../protocol/sdp.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import { type FfmpegComponents, FfmpegProcess } from './ffmpeg.ts';
import { emptyCounters, type MediaPath, randomSsrc, rtcpOf, type StreamCounters } from './path.ts';
import { type EncodeInit, encoderArgs } from './source.ts';

export interface SenderComponents {
  readonly clock: Clock;
  /** Binds the loopback sockets ffmpeg sends to. */
  readonly network: Network;
  readonly ffmpeg: FfmpegComponents;
}

export interface SenderInit {
  readonly path: MediaPath;
  readonly encode: Omit<EncodeInit, 'videoPort' | 'audioPort' | 'audio'>;
  /** The negotiated codecs (their payload types go on the wire). */
  readonly video: Codec;
  readonly audio?: { readonly codec: Codec; readonly kind: 'opus' | 'pcmu' };
  /** RTCP report interval. RFC 3550 §6.2 allows less than 5 s for a two-party session. Default 1000 ms. */
  readonly rtcpIntervalMs?: number;
  /** Ignore keyframe requests this soon after a keyframe. Default 1000 ms. */
  readonly keyframeMinGapMs?: number;
  /**
   * No ffmpeg: an external encoder (a hardware encoder, a benchmark's generator) sends RTP to
   * `inputPorts`. Keyframe requests are then only counted.
   */
  readonly externalEncoder?: boolean;
  /** With an external encoder: asked for a keyframe (a request past `keyframeMinGapMs`). */
  readonly onKeyframeRequest?: () => void;
}

export interface SenderStats {
  readonly video: StreamCounters;
  readonly audio: StreamCounters;
  /** Fraction lost the peer last reported, 0-1. */
  readonly remoteFractionLost: number | null;
  readonly remoteJitterMs: number | null;
  readonly rttMs: number | null;
  readonly keyframeRequests: number;
  readonly encoderRestarts: number;
  /** Malformed packets from ffmpeg or RTCP from the peer that were dropped. */
  readonly dropped: number;
  readonly lastRtcpAtMs: number | null;
}

export type SenderEvents = {
  /** The encoder died on its own (crash, unreachable source): the call cannot go on. */
  failed: [reason: string];
  /** The peer's receiver report on our video arrived: what was sent so far has reached it. */
  report: [];
};

interface Outbound {
  readonly ssrc: number;
  readonly clockRate: number;
  readonly payloadType: number;
  readonly socket: UdpSocket;
  readonly counters: StreamCounters;
  nextSeq: number;
  /** ffmpeg's SSRC we map from; a new one means a new encoder process. */
  inSsrc?: number;
  tsOffset: number;
  lastOutTs: number;
  lastOutAtMs: number;
}

export class MediaSender extends TypedEmitter<SenderEvents> {
  #ffmpeg?: FfmpegProcess;
  #timer?: Timer;
  #closed = false;
  #restarting = false;
  #keyframeRequests = 0;
  #restarts = 0;
  #dropped = 0;
  #lastKeyframeAtMs = Number.NEGATIVE_INFINITY;
  #remote = {
    fractionLost: null as number | null,
    jitterMs: null as number | null,
    rttMs: null as number | null,
  };
  #lastRtcpAtMs: number | null = null;
  /** The peer's last XR RRTR, echoed in a DLRR block so a receive-only peer can measure RTT. */
  #lastRrtr?: { ssrc: number; ntpMid: number; atMs: number };
  readonly #offRtcp: () => void;

  private constructor(
    private readonly c: SenderComponents,
    private readonly init: SenderInit,
    private readonly video: Outbound,
    private readonly audio: Outbound | undefined,
  ) {
    super();
    for (const out of [video, audio]) {
      out?.socket.on('message', (data) => this.#fromEncoder(out, data));
    }
    const rtcp = rtcpOf(init.path);
    this.#offRtcp = rtcp.socket.on('message', (data) => {
      if (isRtcp(data)) this.#onRtcp(data);
    });
  }

  static async start(c: SenderComponents, init: SenderInit): Promise<MediaSender> {
    const outbound = async (codec: Codec): Promise<Outbound> => ({
      ssrc: randomSsrc(),
      clockRate: codec.clockRate,
      payloadType: codec.payloadType,
      socket: await c.network.bindUdp({ address: '127.0.0.1' }),
      counters: emptyCounters(),
      nextSeq: Math.floor(Math.random() * 0x10000),
      tsOffset: 0,
      lastOutTs: Math.floor(Math.random() * 0xffffffff),
      lastOutAtMs: c.clock.now(),
    });
    const video = await outbound(init.video);
    const audio = init.audio ? await outbound(init.audio.codec) : undefined;
    const sender = new MediaSender(c, init, video, audio);
    if (!init.externalEncoder) sender.#spawn();
    sender.#timer = every(c.clock, init.rtcpIntervalMs ?? 1000, () => sender.#sendReports());
    return sender;
  }

  /** The running encoder's process id. */
  get encoderPid(): number | undefined {
    return this.#ffmpeg?.pid;
  }

  /** The loopback ports the encoder sends its RTP to. */
  get inputPorts(): { video: number; audio?: number } {
    return { video: this.video.socket.local.port, audio: this.audio?.socket.local.port };
  }

  get ssrcs(): { video: number; audio?: number } {
    return { video: this.video.ssrc, audio: this.audio?.ssrc };
  }

  stats(): SenderStats {
    return {
      video: { ...this.video.counters },
      audio: { ...(this.audio?.counters ?? emptyCounters()) },
      remoteFractionLost: this.#remote.fractionLost,
      remoteJitterMs: this.#remote.jitterMs,
      rttMs: this.#remote.rttMs,
      keyframeRequests: this.#keyframeRequests,
      encoderRestarts: this.#restarts,
      dropped: this.#dropped,
      lastRtcpAtMs: this.#lastRtcpAtMs,
    };
  }

  /** A PLI/FIR arrived (or the caller wants one): restart the encoder unless a keyframe just left. */
  requestKeyframe(): void {
    this.#keyframeRequests++;
    if (this.#closed || this.#restarting) return;
    if (this.c.clock.now() - this.#lastKeyframeAtMs < (this.init.keyframeMinGapMs ?? 1000)) return;
    if (this.init.externalEncoder) {
      this.init.onKeyframeRequest?.();
      return;
    }
    this.#restarting = true;
    this.#restarts++;
    const old = this.#ffmpeg;
    void (async () => {
      await old?.stop(300);
      this.#restarting = false;
      if (!this.#closed) this.#spawn();
    })();
  }

  /** Idempotent: stops ffmpeg (and waits for it) and the reports; the path sockets stay open. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#timer?.clear();
    this.#offRtcp();
    await this.#ffmpeg?.stop(1000);
    this.video.socket.close();
    this.audio?.socket.close();
  }

  #spawn(): void {
    const audio = this.init.audio;
    const ffmpeg = new FfmpegProcess(
      this.c.ffmpeg,
      encoderArgs({
        ...this.init.encode,
        audio: audio?.kind ?? null,
        videoPort: this.video.socket.local.port,
        audioPort: this.audio?.socket.local.port,
      }),
    );
    this.#ffmpeg = ffmpeg;
    ffmpeg.on('exit', (code, signal, expected) => {
      if (expected || this.#closed || this.#ffmpeg !== ffmpeg) return;
      this.emit(
        'failed',
        `the encoder (ffmpeg) exited ${signal ? `on ${signal}` : `with code ${code}`}: ${ffmpeg.lastLines || 'no output'}`,
      );
    });
  }

  #fromEncoder(out: Outbound, data: Uint8Array): void {
    if (this.#closed || !isRtp(data)) return; // ffmpeg's own RTCP is not forwarded
    let header: ReturnType<typeof decodeRtpHeader>;
    try {
      header = decodeRtpHeader(data);
    } catch {
      this.#dropped++;
      return;
    }
    const now = this.c.clock.now();
    if (out.inSsrc !== header.ssrc) {
      // A new encoder: continue our timestamps from where the old one stopped, plus the time since.
      out.inSsrc = header.ssrc;
      const elapsed = Math.round(((now - out.lastOutAtMs) * out.clockRate) / 1000);
      out.tsOffset = (out.lastOutTs + Math.max(1, elapsed) - header.timestamp) >>> 0;
    }
    const timestamp = (header.timestamp + out.tsOffset) >>> 0;
    rewriteRtpHeader(data, { sequenceNumber: out.nextSeq, timestamp, ssrc: out.ssrc });
    data[1] = (header.marker ? 0x80 : 0) | out.payloadType;
    out.nextSeq = (out.nextSeq + 1) & 0xffff;
    out.lastOutTs = timestamp;
    out.lastOutAtMs = now;
    out.counters.packets++;
    out.counters.bytes += data.byteLength;
    if (header.marker) out.counters.frames++;
    if (out === this.video && startsKeyframe(data.subarray(header.payloadOffset, header.payloadEnd))) {
      // SPS and IDR of one keyframe come in consecutive packets: count the keyframe once.
      if (now - this.#lastKeyframeAtMs > 50) out.counters.keyframes++;
      this.#lastKeyframeAtMs = now;
    }
    this.init.path.socket.send(data, this.init.path.remote);
  }

  #sendReports(): void {
    const now = this.c.clock.now();
    const rtcp = rtcpOf(this.init.path);
    for (const out of [this.video, this.audio]) {
      if (!out || out.counters.packets === 0) continue;
      const rtpTimestamp = out.lastOutTs + Math.round(((now - out.lastOutAtMs) * out.clockRate) / 1000);
      const sr = encodeSr({
        ssrc: out.ssrc,
        ntp: msToNtp(now),
        rtpTimestamp,
        packetCount: out.counters.packets,
        octetCount: out.counters.bytes,
      });
      const rrtr = this.#lastRrtr;
      const dlrr = rrtr
        ? encodeDlrr(out.ssrc, [
            { ssrc: rrtr.ssrc, lrr: rrtr.ntpMid, dlrr: Math.round(((now - rrtr.atMs) * 65536) / 1000) },
          ])
        : new Uint8Array(0);
      const compound = new Uint8Array(sr.byteLength + dlrr.byteLength);
      compound.set(sr, 0);
      compound.set(dlrr, sr.byteLength);
      rtcp.socket.send(compound, rtcp.remote);
    }
  }

  #onRtcp(data: Uint8Array): void {
    let summary: ReturnType<typeof decodeRtcp>;
    try {
      summary = decodeRtcp(data);
    } catch {
      this.#dropped++;
      return;
    }
    this.#lastRtcpAtMs = this.c.clock.now();
    if (summary.rrtr) this.#lastRrtr = { ...summary.rrtr, atMs: this.#lastRtcpAtMs };
    const video = summary.reports.find((r) => r.ssrc === this.video.ssrc);
    if (video) this.emit('report');
    if (video) {
      this.#remote.fractionLost = video.fractionLost / 256;
      this.#remote.jitterMs = (video.jitter * 1000) / this.video.clockRate;
      const rtt = roundTripMs(ntpMiddle(msToNtp(this.c.clock.now())), video.lsr, video.dlsr);
      if (rtt !== null) this.#remote.rttMs = rtt;
    }
    if (summary.keyframeRequests.includes(this.video.ssrc)) this.requestKeyframe();
  }
}
