/**
 * The media of one established call: a sender when we send (camera, phone), a receiver and an
 * optional recorder when we receive (viewer, phone). It watches for the two ways a call dies under
 * it, an encoder that fails and a peer that goes silent, and reports them once through `failed`.
 * `close()` is idempotent and leaves no ffmpeg running.
 */
import { type Clock, every, type Timer } from '../net/clock.ts';
import type { Network } from '../net/types.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import type { FfmpegComponents } from './ffmpeg.ts';
import type { LiveView } from './live-view.ts';
import type { AgreedMedia } from './negotiate.ts';
import type { MediaPath } from './path.ts';
import { MediaReceiver, type ReceiverStats } from './receiver.ts';
import { Recorder } from './recorder.ts';
import { MediaSender, type SenderInit, type SenderStats } from './sender.ts';
import type { FeedSubscription, SourceFeed } from './source-hub.ts';

export interface SessionComponents {
  readonly clock: Clock;
  readonly network: Network;
  readonly ffmpeg: FfmpegComponents;
}

export interface SessionInit {
  readonly path: MediaPath;
  readonly agreed: AgreedMedia;
  /** Encoder settings when we send. */
  readonly encode?: SenderInit['encode'];
  /**
   * A shared source (a camera several viewers watch): we send what it pulls instead of running an
   * encoder of our own. `encode` still names the source.
   */
  readonly feed?: SourceFeed;
  /** MP4 to record what we receive; omit to receive without recording. */
  readonly recordPath?: string;
  /** Where decoded frames go for a live view (MJPEG over HTTP). */
  readonly live?: Pick<LiveView, 'push'>;
  /**
   * Every ordered video RTP packet from the first keyframe on, untouched: the browser console
   * remuxes them to fMP4 (issue 22) without an ffmpeg.
   */
  readonly videoTap?: (packet: Uint8Array) => void;
  /** Frames per second decoded for the live view. Default 10. */
  readonly liveFps?: number;
  /** No RTP (receiving) or RTCP (sending) from the peer for this long ends the call. Default 5000 ms. */
  readonly peerTimeoutMs?: number;
  readonly jitterMs?: number;
}

export interface SessionStats {
  readonly sent?: SenderStats;
  readonly received?: ReceiverStats;
  readonly recording?: { readonly path: string; readonly packetsWritten: number };
}

export type SessionEvents = {
  failed: [reason: string];
  /** The peer reported receiving our video (RTCP RR): media sent so far arrived. */
  'peer-report': [];
};

export class MediaSession extends TypedEmitter<SessionEvents> {
  #watch?: Timer;
  #closed = false;
  #failed = false;
  readonly #startedAtMs: number;

  private constructor(
    private readonly c: SessionComponents,
    private readonly init: SessionInit,
    readonly sender: MediaSender | undefined,
    readonly receiver: MediaReceiver | undefined,
    readonly recorder: Recorder | undefined,
    private readonly subscription?: FeedSubscription,
  ) {
    super();
    this.#startedAtMs = c.clock.now();
    sender?.on('failed', (reason) => this.#fail(reason));
    sender?.on('report', () => this.emit('peer-report'));
    recorder?.on('failed', (reason) => this.#fail(reason));
    this.#watch = every(c.clock, 250, () => this.#checkPeer());
  }

  static async start(c: SessionComponents, init: SessionInit): Promise<MediaSession> {
    const { agreed } = init;
    let recorder: Recorder | undefined;
    let receiver: MediaReceiver | undefined;
    let sender: MediaSender | undefined;
    let subscription: FeedSubscription | undefined;
    let failedEarly: string | undefined;
    let session: MediaSession | undefined;
    try {
      const audioIn = agreed.audio?.receive ? agreed.audio.codec : undefined;
      if (agreed.receiveVideo) {
        if (init.recordPath || init.live) {
          recorder = await Recorder.start(c, {
            path: init.recordPath,
            liveFps: init.live ? (init.liveFps ?? 10) : undefined,
            video: agreed.video,
            audio: audioIn,
          });
          const live = init.live;
          if (live) recorder.on('frame', (jpeg) => live.push(jpeg));
        }
        const sink = recorder;
        const tap = init.videoTap;
        receiver = new MediaReceiver(c, {
          path: init.path,
          video: agreed.video,
          audio: audioIn,
          jitterMs: init.jitterMs,
          sink: (kind, data) => {
            sink?.write(kind, data);
            if (kind === 'video') tap?.(data);
          },
        });
      }
      if (agreed.sendVideo) {
        if (!init.encode) throw new Error('this endpoint has no media source to send');
        const audio = agreed.audio?.send ? agreed.audio.codec : undefined;
        const audioKind = audio && (audio.name.toUpperCase() === 'PCMU' ? 'pcmu' : 'opus');
        const feed = init.feed;
        sender = await MediaSender.start(c, {
          path: init.path,
          encode: init.encode,
          video: agreed.video,
          audio: audio && audioKind && { codec: audio, kind: audioKind },
          externalEncoder: feed !== undefined,
          onKeyframeRequest: () => subscription?.requestKeyframe(),
        });
        if (feed) {
          const ports = sender.inputPorts;
          subscription = feed.subscribe(
            { video: ports.video, audio: ports.audio, audioCodec: audioKind ?? null },
            (reason) => {
              if (session) session.#fail(reason);
              else failedEarly = reason;
            },
          );
        }
      }
    } catch (error) {
      subscription?.close();
      receiver?.close();
      await Promise.all([sender?.close(), recorder?.close()]);
      throw error;
    }
    session = new MediaSession(c, init, sender, receiver, recorder, subscription);
    if (failedEarly) {
      await session.close();
      throw new Error(failedEarly);
    }
    return session;
  }

  stats(): SessionStats {
    return {
      sent: this.sender?.stats(),
      received: this.receiver?.stats(),
      recording:
        this.recorder && this.init.recordPath
          ? { path: this.init.recordPath, packetsWritten: this.recorder.packetsWritten }
          : undefined,
    };
  }

  /** Stops everything and finishes the recording. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#watch?.clear();
    this.subscription?.close();
    // The receiver stops first: the recorder's input then goes quiet and ffmpeg finishes the file.
    this.receiver?.close();
    await Promise.all([this.sender?.close(), this.recorder?.close()]);
  }

  #fail(reason: string): void {
    if (this.#failed || this.#closed) return;
    this.#failed = true;
    this.emit('failed', reason);
  }

  #checkPeer(): void {
    const now = this.c.clock.now();
    const limit = this.init.peerTimeoutMs ?? 5000;
    if (now - this.#startedAtMs < limit) return;
    const heard = this.receiver
      ? this.receiver.stats().lastPacketAtMs
      : (this.sender?.stats().lastRtcpAtMs ?? null);
    if (heard === null || now - heard > limit) {
      this.#fail(
        `nothing from the peer for ${Math.round((now - (heard ?? this.#startedAtMs)) / 1000)} s: it disappeared or the path died`,
      );
    }
  }
}
