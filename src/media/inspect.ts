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
