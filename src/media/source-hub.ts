/**
 * One camera source pulled once and fanned out to every viewer (issue 18). The first viewer starts
 * one ffmpeg (transcoding, or passing the camera's H.264 through with `-c copy`), which sends RTP
 * to the hub on loopback; the hub copies each packet to every viewer's sender, which puts it out
 * under that call's own SSRC, sequence and timestamps (and SRTP). The last viewer leaving stops it.
 *
 * A viewer joins at the next keyframe: video before it would not decode. A keyframe request from
 * any viewer restarts a transcoding encoder (its first frame is an IDR; at most one restart per
 * `keyframeMinGapMs` for all viewers together); a passed-through camera keeps its own GOP.
 */
import type { Clock } from '../net/clock.ts';
import type { Network, UdpSocket } from '../net/types.ts';
import { startsKeyframe } from '../protocol/h264.ts';
import { decodeRtpHeader, isRtp } from '../protocol/rtp.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import { type FfmpegComponents, FfmpegProcess } from './ffmpeg.ts';
import { type AudioCodec, type EncodeInit, encoderArgs, passthroughArgs } from './source.ts';

export interface SourceHubComponents {
  readonly clock: Clock;
  readonly network: Network;
  readonly ffmpeg: () => FfmpegComponents;
}

export interface SourceHubInit {
  /** The camera's name, for messages and metrics. */
  readonly name: string;
  readonly encode: Omit<EncodeInit, 'videoPort' | 'audioPort' | 'audio'>;
  /** Audio the hub encodes (transcoding only); viewers that agreed on another codec get none. */
  readonly audio: AudioCodec | null;
  /** Pass the source's H.264 through (`-c copy`) instead of encoding it. */
  readonly passthrough: boolean;
  /** Restarts of a transcoding encoder for keyframe requests at most this often. Default 1000 ms. */
  readonly keyframeMinGapMs?: number;
  /** Viewers at once. Default 16 (a gateway's `maxCalls`). */
  readonly maxViewers?: number;
}

/** Where a viewer's sender takes RTP on loopback, and what it wants. */
export interface FeedTarget {
  readonly video: number;
  readonly audio?: number;
  readonly audioCodec: AudioCodec | null;
}

/** One viewer's share of the source. */
export interface FeedSubscription {
  requestKeyframe(): void;
  /** Idempotent; the last one stops the pull. */
  close(): void;
}

/** What a call's media session needs from a shared source. */
export interface SourceFeed {
  subscribe(target: FeedTarget, onFailed: (reason: string) => void): FeedSubscription;
}

export interface SourceHubStats {
  /** ffmpeg processes started for this source (one per pull; restarts for keyframes included). */
  readonly pulls: number;
  readonly keyframeRestarts: number;
  readonly viewers: number;
  readonly packetsIn: number;
  readonly packetsOut: number;
  readonly running: boolean;
}

export type SourceHubEvents = {
  /** The pull failed while viewers watched (camera gone, encoder crash): they were told. */
  failed: [reason: string];
};

interface Viewer {
  readonly target: FeedTarget;
  readonly onFailed: (reason: string) => void;
  /** Video waits for a keyframe; audio flows from the start. */
  joined: boolean;
}

/** One running pull: its loopback sockets and its ffmpeg. Stopped once, never restarted. */
interface Pull {
  out?: UdpSocket;
  video?: UdpSocket;
  audio?: UdpSocket;
  ffmpeg?: FfmpegProcess;
  stopped: boolean;
}

export class SourceHub extends TypedEmitter<SourceHubEvents> implements SourceFeed {
  readonly #viewers = new Set<Viewer>();
  #pull?: Pull;
  #restarting = false;
  #lastKeyframeAtMs = Number.NEGATIVE_INFINITY;
  #closed = false;
  readonly #stats = { pulls: 0, keyframeRestarts: 0, packetsIn: 0, packetsOut: 0 };

  constructor(
    private readonly c: SourceHubComponents,
    readonly init: SourceHubInit,
  ) {
    super();
  }

  stats(): SourceHubStats {
    return { ...this.#stats, viewers: this.#viewers.size, running: this.#pull?.ffmpeg?.running === true };
  }

  subscribe(target: FeedTarget, onFailed: (reason: string) => void): FeedSubscription {
    if (this.#closed) throw new Error(`source ${this.init.name} is closed`);
    if (this.#viewers.size >= (this.init.maxViewers ?? 16))
      throw new Error(`source ${this.init.name} already feeds ${this.#viewers.size} viewers`);
    const viewer: Viewer = { target, onFailed, joined: false };
    this.#viewers.add(viewer);
    if (!this.#pull) {
      const pull: Pull = { stopped: false };
      this.#pull = pull;
      this.#open(pull).catch((error: Error) => {
        if (this.#pull === pull) this.#fail(`source ${this.init.name}: ${error.message}`);
      });
    }
    let closed = false;
    return {
      requestKeyframe: () => {
        if (!closed) this.#requestKeyframe();
      },
      close: () => {
        if (closed) return;
        closed = true;
        this.#viewers.delete(viewer);
        if (this.#viewers.size === 0) void this.#stop();
      },
    };
  }

  /** Stops the pull and refuses new viewers. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#viewers.clear();
    await this.#stop();
  }

  async #open(pull: Pull): Promise<void> {
    const bind = async (): Promise<UdpSocket> => {
      const socket = await this.c.network.bindUdp({ address: '127.0.0.1' });
      // Stopped while binding: this socket is closed here, the earlier ones by #stop.
      if (pull.stopped) socket.close();
      return socket;
    };
    pull.out = await bind();
    pull.video = await bind();
    pull.video.on('message', (data) => this.#onVideo(pull, data));
    if (!this.init.passthrough && this.init.audio) {
      pull.audio = await bind();
      pull.audio.on('message', (data) => this.#onAudio(pull, data));
    }
    if (!pull.stopped) this.#spawn(pull);
  }

  #spawn(pull: Pull): void {
    const video = pull.video!.local.port;
    const args = this.init.passthrough
      ? passthroughArgs(this.init.encode.source, video, this.init.encode.durationS)
      : encoderArgs({
          ...this.init.encode,
          audio: this.init.audio,
          videoPort: video,
          audioPort: pull.audio?.local.port,
        });
    const ffmpeg = new FfmpegProcess(this.c.ffmpeg(), args);
    pull.ffmpeg = ffmpeg;
    this.#stats.pulls++;
    ffmpeg.on('exit', (code, signal, expected) => {
      if (expected || pull.stopped || pull.ffmpeg !== ffmpeg) return;
      this.#fail(
        `source ${this.init.name}: ffmpeg exited ${signal ? `on ${signal}` : `with code ${code}`}: ${ffmpeg.lastLines || 'no output'}`,
      );
    });
  }

  #requestKeyframe(): void {
    const pull = this.#pull;
    const old = pull?.ffmpeg;
    if (this.init.passthrough || this.#restarting || !pull || !old) return;
    if (this.c.clock.now() - this.#lastKeyframeAtMs < (this.init.keyframeMinGapMs ?? 1000)) return;
    this.#restarting = true;
    this.#stats.keyframeRestarts++;
    void (async () => {
      await old.stop(300);
      this.#restarting = false;
      if (!pull.stopped && pull.ffmpeg === old) this.#spawn(pull);
    })();
  }

  #onVideo(pull: Pull, data: Uint8Array): void {
    if (pull.stopped || !isRtp(data)) return; // ffmpeg's own RTCP is not forwarded
    let keyframe = false;
    try {
      const header = decodeRtpHeader(data);
      keyframe = startsKeyframe(data.subarray(header.payloadOffset, header.payloadEnd));
    } catch {
      return;
    }
    this.#stats.packetsIn++;
    if (keyframe) this.#lastKeyframeAtMs = this.c.clock.now();
    for (const viewer of this.#viewers) {
      if (!viewer.joined && !keyframe) continue;
      viewer.joined = true;
      this.#send(pull, data, viewer.target.video);
    }
  }

  #onAudio(pull: Pull, data: Uint8Array): void {
    if (pull.stopped || !isRtp(data)) return;
    this.#stats.packetsIn++;
    for (const viewer of this.#viewers) {
      const { audio, audioCodec } = viewer.target;
      if (audio !== undefined && audioCodec === this.init.audio) this.#send(pull, data, audio);
    }
  }

  #send(pull: Pull, data: Uint8Array, port: number): void {
    this.#stats.packetsOut++;
    pull.out?.send(data, { address: '127.0.0.1', port });
  }

  #fail(reason: string): void {
    const viewers = [...this.#viewers];
    this.#viewers.clear();
    void this.#stop();
    for (const viewer of viewers) viewer.onFailed(reason);
    this.emit('failed', reason);
  }

  async #stop(): Promise<void> {
    const pull = this.#pull;
    this.#pull = undefined;
    if (!pull || pull.stopped) return;
    pull.stopped = true;
    await pull.ffmpeg?.stop(1000);
    for (const socket of [pull.out, pull.video, pull.audio]) socket?.close();
  }
}
