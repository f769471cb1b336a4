/** `sc2c clip`: makes the shipped test clip, `media/clip.mp4`, with the local ffmpeg. */
import type { Command } from 'commander';
import { CLIP_PATH, ensureClip } from '../media/clip.ts';
import { FfmpegMissingError, locateFfmpeg } from '../media/ffmpeg.ts';

export function registerClip(program: Command): void {
  program
    .command('clip')
    .description('make the test clip the camera can loop (source file:media/clip.mp4), with the local ffmpeg')
    .option('--out <file>', 'where to write it', CLIP_PATH)
    .option('--if-ffmpeg', 'do nothing (exit 0) when there is no ffmpeg, as the install step does')
    .option('--json', 'print machine-readable JSON')
    .action(async (options: { out: string; ifFfmpeg?: boolean; json?: boolean }) => {
      let binary: ReturnType<typeof locateFfmpeg>;
      try {
        binary = locateFfmpeg();
      } catch (error) {
        if (options.ifFfmpeg && error instanceof FfmpegMissingError) {
          process.stdout.write(
            `sc2c clip: no ffmpeg yet, so no clip; the first call that needs it makes it\n`,
          );
          return;
        }
        throw error;
      }
      const { made } = await ensureClip(binary, options.out);
      if (options.json) process.stdout.write(`${JSON.stringify({ path: options.out, made })}\n`);
      else process.stdout.write(made ? `made ${options.out}\n` : `${options.out} already exists\n`);
    });
}
