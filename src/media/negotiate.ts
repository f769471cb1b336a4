/**
 * Media offer/answer (RFC 3264) for the streams we carry: H.264 video and Opus or PCMU audio,
 * bundled on the punched RTP/RTCP pair. Pure.
 */
import type { Codec, MediaDirection, MediaLine } from '../protocol/sdp.ts';
import { PAYLOAD_TYPES } from './source.ts';

export const H264: Codec = { payloadType: PAYLOAD_TYPES.h264, name: 'H264', clockRate: 90_000 };
export const OPUS: Codec = { payloadType: PAYLOAD_TYPES.opus, name: 'opus', clockRate: 48_000, channels: 2 };
export const PCMU: Codec = { payloadType: PAYLOAD_TYPES.pcmu, name: 'PCMU', clockRate: 8000 };

/** What this endpoint does with media: a camera sends, a viewer receives, a phone does both. */
export interface MediaRole {
  readonly send: boolean;
  readonly receive: boolean;
  /** Audio codecs in preference order; empty for video only. */
  readonly audio: readonly Codec[];
  /** Video codecs offered, in preference order. Default H.264, the only one this gateway encodes. */
  readonly video?: readonly Codec[];
}

function direction(role: MediaRole): MediaDirection {
  if (role.send && role.receive) return 'sendrecv';
  if (role.send) return 'sendonly';
  if (role.receive) return 'recvonly';
  return 'inactive';
}

export function offerFor(role: MediaRole): MediaLine[] {
  const lines: MediaLine[] = [
    { kind: 'video', codecs: [...(role.video ?? [H264])], direction: direction(role) },
  ];
  if (role.audio.length > 0)
    lines.push({ kind: 'audio', codecs: [...role.audio], direction: direction(role) });
  return lines;
}

/** RFC 3264 §6.1: what the answerer may do given what the offerer does. */
function answerDirection(offered: MediaDirection, role: MediaRole): MediaDirection {
  const weSend = role.send && (offered === 'sendrecv' || offered === 'recvonly');
  const weReceive = role.receive && (offered === 'sendrecv' || offered === 'sendonly');
  return direction({ send: weSend, receive: weReceive, audio: [] });
}

const sameCodec = (a: Codec, b: Codec): boolean =>
  a.name.toLowerCase() === b.name.toLowerCase() && a.clockRate === b.clockRate;

/**
 * The answer to `offer` for `role`, or the reason it cannot be answered: no common video codec, or
 * no direction that moves media (a camera offered to another camera).
 */
export function answerFor(offer: readonly MediaLine[], role: MediaRole): MediaLine[] | { reason: string } {
  const video = offer.find((line) => line.kind === 'video');
  if (!video) return { reason: 'the offer has no video stream' };
  const codec = video.codecs.find((c) => sameCodec(c, H264));
  if (!codec) {
    return {
      reason: `no common video codec: the offer has ${video.codecs.map((c) => c.name).join(', ') || 'none'}, we do H264`,
    };
  }
  // A traversal-only call (QA runs) offers inactive media: accept it, nothing flows.
  if (video.direction === 'inactive') return [{ kind: 'video', codecs: [codec], direction: 'inactive' }];
  const videoDirection = answerDirection(video.direction, role);
  if (videoDirection === 'inactive') {
    return {
      reason: `no media would flow: the offer is ${video.direction} and this endpoint ${role.send ? 'only sends' : 'only receives'}`,
    };
  }
  // Keep the offerer's payload type (RFC 3264 §6.1 lets the answer reuse it).
  const lines: MediaLine[] = [{ kind: 'video', codecs: [codec], direction: videoDirection }];
  const audio = offer.find((line) => line.kind === 'audio');
  const audioCodec =
    audio && role.audio.length > 0
      ? audio.codecs.find((c) => role.audio.some((ours) => sameCodec(c, ours)))
      : undefined;
  if (audio && audioCodec)
    lines.push({ kind: 'audio', codecs: [audioCodec], direction: answerDirection(audio.direction, role) });
  return lines;
}

/** From our side of an agreed call: what we send and receive, and with which payload types. */
export interface AgreedMedia {
  readonly sendVideo: boolean;
  readonly receiveVideo: boolean;
  readonly video: Codec;
  readonly audio?: { readonly codec: Codec; readonly send: boolean; readonly receive: boolean };
}

/** Reads the answer (`ours` for the answerer, the peer's for the offerer) from our point of view. */
export function agreed(answer: readonly MediaLine[], weAnswered: boolean): AgreedMedia {
  const flip = (d: MediaDirection): { send: boolean; receive: boolean } => {
    const sends = d === 'sendrecv' || d === 'sendonly';
    const receives = d === 'sendrecv' || d === 'recvonly';
    return weAnswered ? { send: sends, receive: receives } : { send: receives, receive: sends };
  };
  const video = answer.find((l) => l.kind === 'video')!;
  const audio = answer.find((l) => l.kind === 'audio');
  const v = flip(video.direction);
  return {
    sendVideo: v.send,
    receiveVideo: v.receive,
    video: video.codecs[0]!,
    audio: audio?.codecs[0] ? { codec: audio.codecs[0], ...flip(audio.direction) } : undefined,
  };
}
