/** What a recording holds, from ffprobe, and a PNG snapshot of one decoded frame, from ffmpeg. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface RecordingInfo {
  readonly videoCodec: string | null;
  readonly videoFrames: number;
  readonly audioCodec: string | null;
  readonly width: number | null;
  readonly height: number | null;
}

/** Counts frames by decoding (`-count_frames`), so a file that does not decode reports 0. */
export async function probeRecording(ffprobe: string, path: string): Promise<RecordingInfo> {
  const { stdout } = await run(
    ffprobe,
    [
      '-v',
      'error',
      '-count_frames',
      '-show_entries',
      'stream=codec_type,codec_name,nb_read_frames,width,height',
      '-of',
      'json',
      path,
    ],
    { timeout: 60_000 },
  );
  const streams = (JSON.parse(stdout) as { streams?: Record<string, string | number>[] }).streams ?? [];
  const video = streams.find((s) => s.codec_type === 'video');
  const audio = streams.find((s) => s.codec_type === 'audio');
  return {
    videoCodec: video ? String(video.codec_name) : null,
    videoFrames: video ? Number(video.nb_read_frames ?? 0) : 0,
    audioCodec: audio ? String(audio.codec_name) : null,
    width: video ? Number(video.width) : null,
    height: video ? Number(video.height) : null,
  };
}

/** Decodes one frame `atS` seconds in and writes it as PNG. */
export async function snapshot(ffmpeg: string, path: string, pngPath: string, atS = 1): Promise<void> {
  await run(
    ffmpeg,
    ['-v', 'error', '-y', '-ss', String(atS), '-i', path, '-frames:v', '1', '-update', '1', pngPath],
    {
      timeout: 60_000,
    },
  );
}

/**
 * The longest gap between consecutive video frames of a recording, in seconds, from the packet
 * timestamps (the recorder copies RTP timestamps, so frames lost on the way leave a gap).
 */
export async function longestVideoGap(ffprobe: string, path: string): Promise<number> {
  const { stdout } = await run(
    ffprobe,
    ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', path],
    { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
  );
  const times = stdout
    .split('\n')
    .map((line) => Number.parseFloat(line))
    .filter((t) => Number.isFinite(t))
    .sort((a, b) => a - b);
  let longest = 0;
  for (let i = 1; i < times.length; i++) longest = Math.max(longest, times[i]! - times[i - 1]!);
  return longest;
}
