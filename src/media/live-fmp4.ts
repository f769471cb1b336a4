/**
 * A call's received video as fragmented MP4 for browsers (issue 22): ordered RTP from the receiver
 * goes through the H.264 depacketizer and the fMP4 muxer, and each watcher gets the init segment,
 * then frames from the next keyframe on. No ffmpeg, no decoding: the camera's encoder is the only
 * one on the path.
 *
 * Watchers are bounded: a watcher whose socket holds more than `maxBufferedBytes` unsent skips
 * frames until the next keyframe instead of growing memory, and at most `maxWatchers` attach.
 */
import { type AccessUnit, H264Depacketizer } from '../protocol/h264-depacketize.ts';
import type { SpsInfo } from '../protocol/h264-sps.ts';
import { decodeRtpHeader, seqDiff } from '../protocol/rtp.ts';
import { Fmp4Muxer } from './fmp4.ts';

/** Where a watcher's bytes go: an HTTP response, a WebSocket, a file. */
export interface Fmp4Sink {
  write(bytes: Uint8Array): void;
  /** Bytes queued and not yet sent (Node's `writableLength`). */
  readonly writableLength: number;
}

export interface LiveFmp4Init {
  /** Default 2 MiB: about 16 s of a 1 Mbit/s camera. */
  readonly maxBufferedBytes?: number;
  /** Default 8. */
  readonly maxWatchers?: number;
  /** Called when a watcher attaches and must wait for a keyframe: ask the camera for one (PLI). */
  readonly onKeyframeWanted?: () => void;
}

interface Watcher {
  readonly sink: Fmp4Sink;
  /** False until a keyframe was sent, and again after frames were skipped. */
  inSync: boolean;
}

export interface LiveFmp4Stats {
  readonly framesWritten: number;
  readonly framesSkipped: number;
  readonly watchers: number;
  readonly mime: string | null;
  readonly width: number | null;
  readonly height: number | null;
  readonly droppedForSlowWatchers: number;
}

export class LiveFmp4 {
  readonly #depacketizer = new H264Depacketizer();
  readonly #muxer = new Fmp4Muxer();
  readonly #watchers = new Set<Watcher>();
  #init?: { bytes: Uint8Array; mime: string; info: SpsInfo };
  #lastSeq?: number;
  #dropped = 0;
  #closed = false;

  constructor(private readonly init: LiveFmp4Init = {}) {}

  /** One ordered video RTP packet (the receiver's sink). Malformed packets are dropped. */
  writeRtp(packet: Uint8Array): void {
    if (this.#closed) return;
    let header: ReturnType<typeof decodeRtpHeader>;
    try {
      header = decodeRtpHeader(packet);
    } catch {
      return;
    }
    const lost = this.#lastSeq !== undefined && seqDiff(header.sequenceNumber, this.#lastSeq) !== 1;
    this.#lastSeq = header.sequenceNumber;
    const payload = packet.subarray(header.payloadOffset, header.payloadEnd);
    for (const unit of this.#depacketizer.push(payload, header.timestamp, header.marker, lost))
      this.#frame(unit);
  }

  /** The `mime` to give `MediaSource.addSourceBuffer`, once the first keyframe arrived. */
  get mime(): string | undefined {
    return this.#init?.mime;
  }

  /** Attaches a watcher; returns its detach function, or `undefined` when `maxWatchers` are on. */
  attach(sink: Fmp4Sink): (() => void) | undefined {
    if (this.#closed || this.#watchers.size >= (this.init.maxWatchers ?? 8)) return undefined;
    const watcher: Watcher = { sink, inSync: false };
    this.#watchers.add(watcher);
    if (this.#init) sink.write(this.#init.bytes);
    this.init.onKeyframeWanted?.();
    return () => this.#watchers.delete(watcher);
  }

  stats(): LiveFmp4Stats {
    return {
      framesWritten: this.#muxer.framesWritten,
      framesSkipped: this.#muxer.framesSkipped,
      watchers: this.#watchers.size,
      mime: this.#init?.mime ?? null,
      width: this.#init?.info.width ?? null,
      height: this.#init?.info.height ?? null,
      droppedForSlowWatchers: this.#dropped,
    };
  }

  /** Idempotent: stops taking packets and forgets the watchers (their owners end them). */
  close(): void {
    this.#closed = true;
    this.#watchers.clear();
  }

  #frame(unit: AccessUnit): void {
    const limit = this.init.maxBufferedBytes ?? 2 << 20;
    for (const out of this.#muxer.push(unit)) {
      if (out.init) {
        this.#init = out.init;
        // A new SPS: every watcher needs the new init segment before the next keyframe.
        for (const w of this.#watchers) {
          w.sink.write(out.init.bytes);
          w.inSync = false;
        }
      }
      if (!out.segment) continue;
      for (const w of this.#watchers) {
        if (!w.inSync && !out.keyframe) continue;
        if (w.sink.writableLength > limit) {
          w.inSync = false;
          this.#dropped++;
          continue;
        }
        w.inSync = true;
        w.sink.write(out.segment);
      }
    }
  }
}
