/** Media for `sc2c gateway` and `sc2c call`: roles, the session of each established call, stats lines. */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { CallOutcome, Gateway } from '../gateway/gateway.ts';
import { CLIP_PATH, ensureClip } from '../media/clip.ts';
import { type FfmpegComponents, locateFfmpeg } from '../media/ffmpeg.ts';
import type { LiveView } from '../media/live-view.ts';
import { agreed, type MediaRole, OPUS, PCMU } from '../media/negotiate.ts';
import { MediaSession, type SessionStats } from '../media/session.ts';
import { parseSource } from '../media/source.ts';
import type { SourceFeed } from '../media/source-hub.ts';
import type { Clock } from '../net/clock.ts';
import type { Network } from '../net/types.ts';
import { DEFAULT_MEDIA } from '../protocol/sdp.ts';
import { UsageError } from '../util/usage-error.ts';
import type { GatewayConfig } from './configs.ts';

export type MediaConfig = GatewayConfig['media'];

export function mediaRole(config: MediaConfig, send: boolean, receive: boolean): MediaRole {
  const audio = config.audio === 'none' ? [] : config.audio === 'pcmu' ? [PCMU, OPUS] : [OPUS, PCMU];
  return { send, receive, audio };
}

export function encodeInit(config: MediaConfig, sourceOverride?: string) {
  return {
    source: parseSource(sourceOverride ?? config.source),
    width: config.width,
    height: config.height,
    fps: config.fps,
    videoBitrateKbps: config.videoBitrateKbps,
    keyframeInterval: Math.max(1, Math.round(config.keyframeIntervalS * config.fps)),
  };
}

/** ffmpeg is looked up when a call first needs it, so traversal-only use works without it. */
export interface MediaComponents {
  readonly clock: Clock;
  readonly network: Network;
  readonly ffmpeg: () => FfmpegComponents;
}

/** ffmpeg for this process; throws a clear error when there is none. */
export function ffmpegComponents(): FfmpegComponents {
  return { spawn, binary: locateFfmpeg() };
}

/** Starts the media of an established call, from the answer's point of view of this side. */
export async function startCallMedia(
  c: MediaComponents,
  outcome: CallOutcome,
  config: MediaConfig,
  options: {
    source?: string;
    recordPath?: string;
    live?: Pick<LiveView, 'push'>;
    feed?: SourceFeed;
    /** Issue 22: the console's fMP4 remuxer takes the video RTP here. */
    videoTap?: (packet: Uint8Array) => void;
  },
): Promise<MediaSession | undefined> {
  if (!outcome.ok || !outcome.path) throw new Error('no direct path to carry media');
  const weAnswered = outcome.role === 'callee';
  const answer = (weAnswered ? outcome.local?.media : outcome.remote?.media) ?? DEFAULT_MEDIA;
  const media = agreed(answer, weAnswered);
  if (!media.sendVideo && !media.receiveVideo) return undefined;
  if (options.recordPath && media.receiveVideo) mkdirSync(dirname(options.recordPath), { recursive: true });
  const encode = encodeInit(config, options.source);
  if (
    media.sendVideo &&
    !options.feed &&
    encode.source.kind === 'file' &&
    resolve(encode.source.path) === CLIP_PATH
  )
    await ensureClip(c.ffmpeg().binary);
  return MediaSession.start(
    { clock: c.clock, network: c.network, ffmpeg: c.ffmpeg() },
    {
      path: outcome.path,
      agreed: media,
      encode,
      feed: options.feed,
      recordPath: options.recordPath,
      live: media.receiveVideo ? options.live : undefined,
      videoTap: media.receiveVideo ? options.videoTap : undefined,
      peerTimeoutMs: config.peerTimeoutMs,
      jitterMs: config.jitterMs,
    },
  );
}

/** A compact summary of session stats for JSON output and the demo. */
export function summarizeMedia(stats: SessionStats) {
  const r = stats.received;
  const s = stats.sent;
  return {
    sent: s && {
      packets: s.video.packets + s.audio.packets,
      bytes: s.video.bytes + s.audio.bytes,
      frames: s.video.frames,
      keyframes: s.video.keyframes,
      keyframeRequests: s.keyframeRequests,
      encoderRestarts: s.encoderRestarts,
      remoteLossPercent: s.remoteFractionLost === null ? null : round(100 * s.remoteFractionLost),
      rttMs: s.rttMs === null ? null : round(s.rttMs),
    },
    received: r && {
      packets: r.video.packets + r.audio.packets,
      bytes: r.video.bytes + r.audio.bytes,
      frames: r.video.frames,
      lost: r.video.lost + r.audio.lost,
      lossPercent: round(
        (100 * (r.video.lost + r.audio.lost)) /
          Math.max(1, r.video.packets + r.audio.packets + r.video.lost + r.audio.lost),
      ),
      jitterMs: round(r.video.jitterMs),
      bitrateKbps: round(r.video.bitrateKbps + r.audio.bitrateKbps),
      fps: r.video.fps,
      averageBitrateKbps: round(
        perSecond(r.video.bytes * 8, r.video.activeMs) / 1000 +
          perSecond(r.audio.bytes * 8, r.audio.activeMs) / 1000,
      ),
      averageFps: round(perSecond(r.video.frames, r.video.activeMs)),
      rttMs: r.rttMs === null ? null : round(r.rttMs),
      plisSent: r.plisSent,
    },
    recording: stats.recording,
  };
}

const round = (v: number): number => Math.round(v * 10) / 10;
const perSecond = (count: number, ms: number): number => (ms > 0 ? (count * 1000) / ms : 0);

/** One progress line: the last second's rates while live, the call's averages when `final`. */
export function progressLine(stats: SessionStats, elapsedS: number, final = false): string {
  const m = summarizeMedia(stats);
  const parts = [`${elapsedS.toFixed(0)} s`];
  if (m.received) {
    const r = m.received;
    const rates = final
      ? `avg ${r.averageFps} fps ${r.averageBitrateKbps} kbit/s`
      : `${r.fps} fps ${r.bitrateKbps} kbit/s`;
    parts.push(
      `rx ${rates}, ${r.frames} frames, loss ${r.lossPercent} %, jitter ${r.jitterMs} ms, rtt ${r.rttMs ?? '-'} ms`,
    );
  }
  if (m.sent) {
    parts.push(
      `tx ${m.sent.frames} frames ${Math.round(m.sent.bytes / 1024)} KiB, peer loss ${m.sent.remoteLossPercent ?? '-'} %, rtt ${m.sent.rttMs ?? '-'} ms`,
    );
  }
  return parts.join(' | ');
}

/**
 * Runs media for every call `gateway` answers, until the call ends. A failure (the encoder, a
 * silent peer) hangs up with the reason, so both ends see it.
 */
export function serveMedia(
  c: MediaComponents,
  gateway: Gateway,
  config: MediaConfig,
  options: {
    source?: string;
    recordPattern?: string;
    live?: LiveView;
    feed?: SourceFeed;
    /** The peer's receiver report on a call's video arrived (accounting takes what it confirms). */
    onPeerReport?: (callId: string) => void;
  },
  report: (event: Record<string, unknown>, line: string) => void,
): { close(): Promise<void> } {
  const sessions = new Map<string, MediaSession>();
  const outcomes = new Map<string, CallOutcome>();
  const finish = async (callId: string, reason: string): Promise<void> => {
    const session = sessions.get(callId);
    const outcome = outcomes.get(callId);
    outcomes.delete(callId);
    if (!session) return;
    sessions.delete(callId);
    await session.close();
    report(
      {
        event: 'media-ended',
        callId,
        reason,
        ...summarizeMedia(session.stats()),
        encryption: outcome?.encryption ?? 'none',
        srtpAuthFailures: outcome?.secure?.counters.authFailures ?? 0,
      },
      `call ${callId}: media ended (${reason})`,
    );
  };
  gateway.on('call', (outcome) => {
    if (!outcome.ok) return;
    outcomes.set(outcome.callId, outcome);
    const recordPath = options.recordPattern?.replace('{call}', outcome.callId.replace(/[^\w-]/g, ''));
    startCallMedia(c, outcome, config, {
      source: options.source,
      recordPath,
      live: options.live,
      feed: options.feed,
    })
      .then((session) => {
        if (!session) return;
        sessions.set(outcome.callId, session);
        session.on('peer-report', () => options.onPeerReport?.(outcome.callId));
        session.on('failed', (reason) => {
          gateway.hangup(outcome.callId, reason);
          void finish(outcome.callId, reason);
        });
        report({ event: 'media-started', callId: outcome.callId }, `call ${outcome.callId}: media flowing`);
      })
      .catch((error: Error) => {
        gateway.hangup(outcome.callId, `media failed to start: ${error.message}`);
        report(
          { event: 'media-failed', callId: outcome.callId, reason: error.message },
          `call ${outcome.callId}: media failed to start: ${error.message}`,
        );
      });
  });
  gateway.on('ended', (callId, reason) => void finish(callId, reason));
  gateway.on('closed', (callId) => {
    if (!sessions.has(callId)) outcomes.delete(callId);
  });
  return {
    close: async () => {
      await Promise.all([...sessions.keys()].map((id) => finish(id, 'gateway stopped')));
    },
  };
}

/** `--live [port]`: commander gives `true` when no port follows. */
export function livePort(value: string | boolean | undefined): number | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return 8090;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new UsageError(`--live takes a TCP port (0-65535), not '${value}'`);
  return port;
}
