/**
 * Media sources and the ffmpeg arguments that encode them to RTP on loopback: H.264 (zerolatency,
 * SPS/PPS in-band with every keyframe) and Opus or PCMU audio. The gateway owns the punched sockets
 * and forwards what ffmpeg sends; ffmpeg never talks to the network itself.
 */
import { UsageError } from '../util/usage-error.ts';

export type MediaSource =
  | { readonly kind: 'testsrc' }
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'rtsp'; readonly url: string }
  | { readonly kind: 'v4l2'; readonly device: string };

export type AudioCodec = 'opus' | 'pcmu';

export interface EncodeInit {
  readonly source: MediaSource;
  readonly width: number;
  readonly height: number;
  readonly fps: number;
  /** Target video bitrate. Default 1000 kbit/s. */
  readonly videoBitrateKbps: number;
  /** Frames between periodic keyframes (x264 -g). */
  readonly keyframeInterval: number;
  /** `null` sends no audio. */
  readonly audio: AudioCodec | null;
  /** Loopback ports the gateway listens on for ffmpeg's RTP. */
  readonly videoPort: number;
  readonly audioPort?: number;
  /** Stop after this many seconds of media (omit for no limit). */
  readonly durationS?: number;
}

/** Payload types we send (RFC 3551: PCMU is static 0; H.264 and Opus are dynamic). */
export const PAYLOAD_TYPES = { h264: 96, opus: 111, pcmu: 0 } as const;

/** `testsrc`, `file:PATH`, `rtsp://…`, or `v4l2:/dev/videoN`. */
export function parseSource(text: string): MediaSource {
  if (text === 'testsrc' || text === '') return { kind: 'testsrc' };
  if (text.startsWith('file:') && text.length > 5) return { kind: 'file', path: text.slice(5) };
  if (/^rtsps?:\/\/[^\s]+$/.test(text)) return { kind: 'rtsp', url: text };
  if (text.startsWith('v4l2:/dev/')) return { kind: 'v4l2', device: text.slice(5) };
  throw new UsageError(
    `unknown media source '${text}'. Use testsrc, file:PATH, rtsp://HOST/PATH or v4l2:/dev/videoN`,
  );
}

export function describeSource(source: MediaSource): string {
  switch (source.kind) {
    case 'testsrc':
      return 'test pattern (testsrc2 + 1 kHz tone)';
    case 'file':
      return `file ${source.path}`;
    case 'rtsp':
      return `RTSP ${source.url.replace(/\/\/[^@/]*@/, '//***@')}`;
    case 'v4l2':
      return `V4L2 ${source.device}`;
  }
}

function inputArgs(init: EncodeInit): { args: string[]; hasAudioInput: boolean; audioIndex: number } {
  const s = init.source;
  switch (s.kind) {
    case 'testsrc':
      return {
        args: [
          '-re',
          '-f',
          'lavfi',
          '-i',
          `testsrc2=size=${init.width}x${init.height}:rate=${init.fps}`,
          '-re',
          '-f',
          'lavfi',
          '-i',
          'sine=frequency=1000:sample_rate=48000',
        ],
        hasAudioInput: true,
        audioIndex: 1,
      };
    case 'file':
      // Loop the clip for as long as the call lasts.
      return { args: ['-re', '-stream_loop', '-1', '-i', s.path], hasAudioInput: true, audioIndex: 0 };
    case 'rtsp':
      // TCP interleaving gets through camera-side firewalls; the timeout makes an unreachable camera
      // fail in seconds instead of hanging (microseconds, ffmpeg 5 `-timeout`).
      return {
        args: ['-rtsp_transport', 'tcp', '-timeout', '5000000', '-i', s.url],
        // Many cameras have no microphone, and an output with no stream is an ffmpeg error: video only.
        hasAudioInput: false,
        audioIndex: 0,
      };
    case 'v4l2':
      return {
        args: ['-f', 'v4l2', '-framerate', String(init.fps), '-i', s.device],
        hasAudioInput: false,
        audioIndex: 0,
      };
  }
}

/** The full ffmpeg argument list for one sender. */
export function encoderArgs(init: EncodeInit): string[] {
  const input = inputArgs(init);
  const gop = String(init.keyframeInterval);
  const args = [...input.args];
  if (init.durationS !== undefined) args.push('-t', String(init.durationS));
  args.push(
    '-map',
    '0:v:0',
    '-vf',
    `scale=${init.width}:${init.height},fps=${init.fps},format=yuv420p`,
    '-c:v',
    'libx264',
    '-preset',
    'veryfast',
    '-tune',
    'zerolatency',
    '-profile:v',
    'baseline',
    '-b:v',
    `${init.videoBitrateKbps}k`,
    '-maxrate',
    `${init.videoBitrateKbps}k`,
    '-bufsize',
    `${Math.round(init.videoBitrateKbps / 2)}k`,
    '-g',
    gop,
    '-keyint_min',
    gop,
    // SPS/PPS before every keyframe, so a receiver can start (or recover) at any keyframe.
    '-x264-params',
    'repeat-headers=1',
    '-payload_type',
    String(PAYLOAD_TYPES.h264),
    '-f',
    'rtp',
    // connect=1: once the gateway's port is gone, sends fail and ffmpeg exits instead of lingering.
    `rtp://127.0.0.1:${init.videoPort}?pkt_size=1200&connect=1&rtcpport=${init.videoPort}`,
  );
  if (init.audio && init.audioPort !== undefined && input.hasAudioInput) {
    args.push('-map', `${input.audioIndex}:a:0?`);
    if (init.audio === 'opus') args.push('-c:a', 'libopus', '-b:a', '32k', '-ar', '48000', '-ac', '2');
    else args.push('-c:a', 'pcm_mulaw', '-ar', '8000', '-ac', '1');
    args.push(
      '-payload_type',
      String(PAYLOAD_TYPES[init.audio]),
      '-f',
      'rtp',
      `rtp://127.0.0.1:${init.audioPort}?pkt_size=1200&connect=1&rtcpport=${init.audioPort}`,
    );
  }
  return args;
}

/**
 * ffmpeg arguments that pass a camera's H.264 through to RTP without re-encoding (`-c copy`): the
 * camera's own GOP decides the keyframes. SPS/PPS go in-band before each keyframe (a receiver
 * joins at any keyframe): an MP4's avcC is rewritten to Annex B with them, an RTSP stream's
 * parameter sets from the SDP are repeated. Video only: camera audio (AAC, G.711) is not offered.
 */
export function passthroughArgs(source: MediaSource, videoPort: number, durationS?: number): string[] {
  let input: string[];
  let bsf: string;
  switch (source.kind) {
    case 'file':
      input = ['-re', '-stream_loop', '-1', '-i', source.path];
      bsf = 'h264_mp4toannexb';
      break;
    case 'rtsp':
      input = ['-rtsp_transport', 'tcp', '-timeout', '5000000', '-i', source.url];
      bsf = 'dump_extra=freq=keyframe';
      break;
    default:
      throw new UsageError(`a ${source.kind} source has no H.264 to pass through: it must be transcoded`);
  }
  const args = [...input];
  if (durationS !== undefined) args.push('-t', String(durationS));
  args.push(
    '-map',
    '0:v:0',
    '-c:v',
    'copy',
    '-bsf:v',
    bsf,
    '-payload_type',
    String(PAYLOAD_TYPES.h264),
    '-f',
    'rtp',
    `rtp://127.0.0.1:${videoPort}?pkt_size=1200&connect=1&rtcpport=${videoPort}`,
  );
  return args;
}
