/**
 * The clip shipped under `media/`: generated locally by ffmpeg from its own test sources, never
 * downloaded. The build (`npm ci` → `prepare`) makes it when ffmpeg is present, and a call that
 * names the clip makes it on first use otherwise.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FfmpegBinary } from './ffmpeg.ts';

/** `media/clip.mp4` in the project, wherever the command runs from. */
export const CLIP_PATH = resolve(dirname(fileURLToPath(import.meta.url)), '../../media/clip.mp4');

/** 10 s, 640x360 at 30 fps, H.264 with a 440 Hz AAC tone: small (about 1 MB) and loopable. */
export function clipArgs(path: string): string[] {
  return [
    '-y',
    '-loglevel',
    'error',
    '-f',
    'lavfi',
    '-i',
    'smptehdbars=size=640x360:rate=30,drawtext=text=sc2c clip %{pts\\:hms}:x=20:y=20:fontsize=28:fontcolor=white:box=1:boxcolor=black',
    '-f',
    'lavfi',
    '-i',
    'sine=frequency=440:sample_rate=48000',
    '-t',
    '10',
    '-c:v',
    'libx264',
    '-preset',
    'veryfast',
    '-pix_fmt',
    'yuv420p',
    '-g',
    '60',
    '-b:v',
    '800k',
    '-c:a',
    'aac',
    '-b:a',
    '64k',
    '-movflags',
    '+faststart',
    path,
  ];
}

/** Without a font, drawtext fails: the same clip without the running clock. */
const withoutText = (args: string[]): string[] => args.map((a) => a.replace(/,drawtext=.*$/, ''));

function run(binary: string, args: string[]): Promise<void> {
  return new Promise((done, fail) => {
    execFile(binary, args, { timeout: 60_000 }, (error, _stdout, stderr) =>
      error ? fail(new Error(`ffmpeg could not make the clip: ${stderr.trim() || error.message}`)) : done(),
    );
  });
}

/** Makes the clip at `path` unless it exists; written to a temporary name, so never half a file. */
export async function ensureClip(ffmpeg: FfmpegBinary, path = CLIP_PATH): Promise<{ made: boolean }> {
  if (existsSync(path)) return { made: false };
  mkdirSync(dirname(path), { recursive: true });
  const partial = `${path}.partial.mp4`;
  try {
    await run(ffmpeg.path, clipArgs(partial)).catch(() => run(ffmpeg.path, withoutText(clipArgs(partial))));
    renameSync(partial, path);
  } finally {
    rmSync(partial, { force: true });
  }
  return { made: true };
}
